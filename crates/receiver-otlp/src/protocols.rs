//! The Collector's receiver shape, `protocols: {http: {...}, grpc: {...}}`, and its
//! resolution together with the flat shorthand into the settings each listener runs with
//! ([`Listen`]).
//!
//! A protocol key present with no body (`grpc:`), as the Collector's documentation writes
//! it, turns that protocol on with its defaults; a protocol left out is off.

use serde::{Deserialize, Deserializer};
use tracecast_config::{ByteSize, FieldError};

use crate::config::{check_endpoint, check_path, OtlpReceiverConfig};
use crate::cors::CorsConfig;
use crate::tls::TlsServerConfig;

/// The OTLP/HTTP listen address when none is given (the OTLP default port, loopback).
pub const DEFAULT_HTTP_ENDPOINT: &str = "127.0.0.1:4318";
/// The OTLP/gRPC listen address when none is given (the OTLP default port, loopback).
pub const DEFAULT_GRPC_ENDPOINT: &str = "127.0.0.1:4317";
/// The OTLP/HTTP traces path.
pub const DEFAULT_PATH: &str = "/v1/traces";

/// `protocols`: the listeners of one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/HTTP (`POST /v1/traces`, protobuf or JSON).
    #[serde(deserialize_with = "present")]
    pub http: Option<HttpProtocol>,
    /// OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
    #[serde(deserialize_with = "present")]
    pub grpc: Option<GrpcProtocol>,
}

/// `protocols.http`, with the Collector's key names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpProtocol {
    /// Listen address, `host:port`; default `127.0.0.1:4318`.
    pub endpoint: String,
    /// URL path of export requests (the Collector's key; `path` is accepted too).
    #[serde(alias = "path")]
    pub traces_url_path: String,
    /// Overrides the receiver's `max_request_body_size` for OTLP/HTTP.
    pub max_request_body_size: Option<ByteSize>,
    /// CORS for browser exporters (see `cors.rs`); unset or no `allowed_origins`: off.
    pub cors: Option<CorsConfig>,
    /// TLS (see `tls.rs`); unset: plain TCP.
    pub tls: Option<TlsServerConfig>,
}

/// `protocols.grpc`, with the Collector's key names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcProtocol {
    /// Listen address, `host:port`; default `127.0.0.1:4317`.
    pub endpoint: String,
    /// `tcp`, the only transport served (the Collector also knows `unix`).
    pub transport: Option<String>,
    /// Largest accepted message in MiB (the Collector's key), checked on the received
    /// and on the decompressed size as HTTP bodies are. Unset: the receiver's
    /// `max_request_body_size`.
    pub max_recv_msg_size_mib: Option<u64>,
    /// Streams (requests) one HTTP/2 connection may carry at once. Unset: 100.
    pub max_concurrent_streams: Option<u32>,
    /// TLS (see `tls.rs`); unset: plain TCP (h2c).
    pub tls: Option<TlsServerConfig>,
}

impl Default for HttpProtocol {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_HTTP_ENDPOINT.to_string(),
            traces_url_path: DEFAULT_PATH.to_string(),
            max_request_body_size: None,
            cors: None,
            tls: None,
        }
    }
}

impl Default for GrpcProtocol {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_GRPC_ENDPOINT.to_string(),
            transport: None,
            max_recv_msg_size_mib: None,
            max_concurrent_streams: None,
            tls: None,
        }
    }
}

/// A key that is present turns its protocol on, even with no body (`grpc:` is `null`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(
        Option::<T>::deserialize(deserializer)?.unwrap_or_default(),
    ))
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "OTLP/HTTP",
            Protocol::Grpc => "OTLP/gRPC",
        }
    }
}

/// One listener's resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub protocol: Protocol,
    /// `host:port`.
    pub endpoint: String,
    /// The HTTP path of export requests (OTLP/HTTP only).
    pub path: String,
    /// Largest request body / gRPC message, received and decompressed.
    pub max_body: u64,
    /// HTTP/2 streams per connection (gRPC).
    pub max_concurrent_streams: u32,
    /// CORS settings (OTLP/HTTP only).
    pub cors: Option<CorsConfig>,
    /// TLS settings; `None`: plain TCP.
    pub tls: Option<TlsServerConfig>,
    /// Where its settings sit in the YAML (`protocols.http.` or `` for the flat form), for
    /// messages.
    pub key: &'static str,
}

impl OtlpReceiverConfig {
    /// The listeners this config asks for, OTLP/HTTP first.
    pub fn listeners(&self) -> Vec<Listen> {
        let Some(protocols) = &self.protocols else {
            return vec![Listen {
                protocol: Protocol::Http,
                endpoint: self.endpoint.clone(),
                path: self.path.clone(),
                max_body: self.max_request_body_size.get(),
                max_concurrent_streams: 100,
                cors: None,
                tls: None,
                key: "",
            }];
        };
        let mut out = Vec::new();
        if let Some(http) = &protocols.http {
            out.push(Listen {
                protocol: Protocol::Http,
                endpoint: http.endpoint.clone(),
                path: http.traces_url_path.clone(),
                max_body: http
                    .max_request_body_size
                    .unwrap_or(self.max_request_body_size)
                    .get(),
                max_concurrent_streams: 100,
                cors: http.cors.clone(),
                tls: http.tls.clone(),
                key: "protocols.http.",
            });
        }
        if let Some(grpc) = &protocols.grpc {
            out.push(Listen {
                protocol: Protocol::Grpc,
                endpoint: grpc.endpoint.clone(),
                path: String::new(),
                max_body: grpc
                    .max_recv_msg_size_mib
                    .map_or(self.max_request_body_size.get(), |m| {
                        m.saturating_mul(1024 * 1024)
                    }),
                max_concurrent_streams: grpc.max_concurrent_streams.unwrap_or(100),
                cors: None,
                tls: grpc.tls.clone(),
                key: "protocols.grpc.",
            });
        }
        out
    }

    /// The URL of the OTLP/HTTP listener as configured (`https://` with TLS), for tools
    /// that post to a running daemon (re-sending quarantined entries); `None` when OTLP/HTTP
    /// is off. The host is the configured one (`0.0.0.0` listens everywhere, so it is
    /// reached as `127.0.0.1`).
    pub fn http_url(&self) -> Option<String> {
        let http = self
            .listeners()
            .into_iter()
            .find(|l| l.protocol == Protocol::Http)?;
        let scheme = if http.tls.is_some() { "https" } else { "http" };
        let endpoint = match http.endpoint.rsplit_once(':') {
            Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
            Some(("[::]", port)) => format!("[::1]:{port}"),
            _ => http.endpoint.clone(),
        };
        Some(format!("{scheme}://{endpoint}{}", http.path))
    }

    /// The largest body any listener takes (what the shared decode budgets derive from).
    pub fn largest_body(&self) -> u64 {
        self.listeners()
            .iter()
            .map(|l| l.max_body)
            .max()
            .unwrap_or(self.max_request_body_size.get())
    }
}

/// Checks `protocols` and that the flat keys are not mixed with it.
pub(crate) fn validate(config: &OtlpReceiverConfig, errors: &mut Vec<FieldError>) {
    let Some(protocols) = &config.protocols else {
        if let Err(message) = check_endpoint(&config.endpoint) {
            errors.push(FieldError::new("endpoint", message));
        }
        if let Err(message) = check_path(&config.path) {
            errors.push(FieldError::new("path", message));
        }
        return;
    };
    for (key, value, default, instead) in [
        (
            "endpoint",
            &config.endpoint,
            DEFAULT_HTTP_ENDPOINT,
            "protocols.http.endpoint",
        ),
        (
            "path",
            &config.path,
            DEFAULT_PATH,
            "protocols.http.traces_url_path",
        ),
    ] {
        if value != default {
            errors.push(FieldError::new(
                key,
                format!("is the flat shorthand for OTLP/HTTP and cannot be combined with `protocols`; set {instead} instead"),
            ));
        }
    }
    if protocols.http.is_none() && protocols.grpc.is_none() {
        errors.push(FieldError::new(
            "protocols",
            "enables no protocol; add `http:`, `grpc:` or both (a protocol left out is off)",
        ));
    }
    if let Some(http) = &protocols.http {
        if let Err(message) = check_endpoint(&http.endpoint) {
            errors.push(FieldError::new("protocols.http.endpoint", message));
        }
        if let Err(message) = check_path(&http.traces_url_path) {
            errors.push(FieldError::new("protocols.http.traces_url_path", message));
        }
        if http.max_request_body_size.is_some_and(|s| s.get() == 0) {
            errors.push(FieldError::new(
                "protocols.http.max_request_body_size",
                "must be greater than 0, like 16MiB",
            ));
        }
        if let Some(cors) = &http.cors {
            errors.extend(cors.validate_at("protocols.http.cors"));
        }
        if let Some(tls) = &http.tls {
            errors.extend(tls.validate_at("protocols.http.tls"));
        }
    }
    if let Some(grpc) = &protocols.grpc {
        if let Err(message) = check_endpoint(&grpc.endpoint) {
            errors.push(FieldError::new("protocols.grpc.endpoint", message));
        }
        if grpc.transport.as_deref().is_some_and(|t| t != "tcp") {
            errors.push(FieldError::new(
                "protocols.grpc.transport",
                format!(
                    "{:?} is not supported; tracecast listens on tcp only",
                    grpc.transport.as_deref().unwrap_or_default()
                ),
            ));
        }
        if grpc.max_recv_msg_size_mib == Some(0) {
            errors.push(FieldError::new(
                "protocols.grpc.max_recv_msg_size_mib",
                "must be at least 1, like 16",
            ));
        }
        if let Some(tls) = &grpc.tls {
            errors.extend(tls.validate_at("protocols.grpc.tls"));
        }
        if grpc.max_concurrent_streams == Some(0) {
            errors.push(FieldError::new(
                "protocols.grpc.max_concurrent_streams",
                "must be at least 1, like 100",
            ));
        }
    }
    if let (Some(http), Some(grpc)) = (&protocols.http, &protocols.grpc) {
        if http.endpoint == grpc.endpoint {
            errors.push(FieldError::new(
                "protocols.grpc.endpoint",
                format!(
                    "{:?} is also protocols.http.endpoint; give each protocol its own port (the OTLP defaults are 4317 for gRPC, 4318 for HTTP)",
                    grpc.endpoint
                ),
            ));
        }
    }
}
