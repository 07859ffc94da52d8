//! `OtlpReceiverConfig`: the YAML shape of the `otlp` receiver, its defaults and its
//! validation.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use tracecast_config::{ByteSize, Duration, FieldError, Validate};

pub use crate::protocols::{
    GrpcProtocol, HttpProtocol, Listen, Protocol, Protocols, DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT, DEFAULT_PATH,
};

/// Config of the OTLP traces receiver. Two shapes: the Collector's
/// (`protocols: {http: {...}, grpc: {...}}`, each protocol with its own `endpoint`, a
/// protocol left out is off) and the flat shorthand for OTLP/HTTP alone (`endpoint`,
/// `path`). The limits and `api_keys` below apply to both protocols.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    /// Flat form: the OTLP/HTTP listen address as `host:port` (`127.0.0.1:4318`,
    /// `0.0.0.0:4318`, `[::1]:4318`). Loopback by default so a fresh install does not accept
    /// spans from the network. With `protocols`, use `protocols.http.endpoint` instead.
    pub endpoint: String,
    /// Flat form: URL path that accepts `POST` export requests; the OTLP default is
    /// `/v1/traces`. With `protocols`, use `protocols.http.traces_url_path` instead.
    pub path: String,
    /// The Collector's shape: which protocols listen, and where. When set, only the
    /// protocols it names are on.
    pub protocols: Option<Protocols>,
    /// Largest accepted request body, enforced on the received (compressed) size and again
    /// on the decompressed size, so a small gzip bomb cannot inflate in memory.
    pub max_request_body_size: ByteSize,
    /// Named ingest keys. When non-empty, every request needs `Authorization: Bearer
    /// <token>` matching one of them; the key's name (never the token) travels with its
    /// spans and fills `{apiKeyName}` in S3 paths. Empty: no authentication.
    pub api_keys: Vec<ApiKey>,
    /// Requests handled at once; further requests get 503 with `Retry-After` instead of
    /// queueing in memory.
    pub max_concurrent_requests: usize,
    /// Time allowed to receive a whole request body once its headers arrived; a slow or
    /// stalled client gets 408 instead of holding a request slot forever.
    pub read_timeout: Duration,
    /// Time allowed to receive a request's headers on a connection (slowloris guard).
    pub header_read_timeout: Duration,
    /// Most spans one request may hold. Counted on the protobuf wire before decoding (and
    /// while decoding JSON), so a few KB of gzip cannot become millions of spans in memory;
    /// over it the request gets 413.
    pub max_spans_per_request: u64,
    /// Most memory one decoded request may take (an estimate: the size of every decoded
    /// span, attribute, event and value plus their text, counted before decoding), and the
    /// bound on a resource's attributes times the ScopeSpans that repeat them. Unset: 8 x
    /// `max_request_body_size` (128 MiB by default), room for any realistic request.
    pub max_decoded_size: Option<ByteSize>,
    /// Longest custom trace id (the `trace_id` of the `trace` attribute, `trace.trace_id`,
    /// or `tracecast.custom_trace_id`). Long ids are still stored (file names shorten
    /// them); this only stops absurd ones, with 413.
    pub max_custom_trace_id_length: u64,
    /// Most trace metadata one span or resource may carry (the encoded `trace` attribute
    /// plus its flattened `trace.*` attributes). The `metadata` processor applies it to
    /// every span of the request, so it is bounded where ordinary attributes (prompts of
    /// many MB) are not; over it the request gets 413.
    pub max_trace_metadata_size: ByteSize,
    /// Most decompressed bytes all requests together may hold while they inflate, so that
    /// many small gzip bombs at once cannot take the daemon's memory up with them: a
    /// request that would go past it gets 503 with `Retry-After`. Unset: 8 x
    /// `max_request_body_size` (128 MiB by default: eight bodies at the limit at once).
    pub max_decompressing_size: Option<ByteSize>,
    /// Most decoded request memory all requests together may hold until they are answered
    /// (each request's pre-scan estimate; for JSON 64 x its body, at most
    /// `max_decoded_size`), so many requests just under `max_decoded_size` at once cannot
    /// take the daemon's memory up: beyond it a request gets 503 with `Retry-After` before
    /// it is decoded. Unset: 2 x `max_decoded_size` (256 MiB by default).
    pub max_decoding_size: Option<ByteSize>,
}

/// `max_decoded_size` when unset, as a multiple of `max_request_body_size`: protobuf
/// decodes to a few times its size, so 8x admits every realistic request and refuses
/// bodies built to explode (16 MB of empty spans would be ~2 GB).
pub const DECODED_SIZE_FACTOR: u64 = 8;

/// `max_decompressing_size` when unset, as a multiple of `max_request_body_size`: eight
/// requests at the body limit can inflate at once (about 128 MiB at the defaults).
pub const DECOMPRESSING_SIZE_FACTOR: u64 = 8;

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        Self {
            endpoint: DEFAULT_HTTP_ENDPOINT.to_string(),
            path: DEFAULT_PATH.to_string(),
            protocols: None,
            max_request_body_size: ByteSize::mib(16),
            api_keys: Vec::new(),
            max_concurrent_requests: 128,
            read_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_spans_per_request: 100_000,
            max_decoded_size: None,
            max_custom_trace_id_length: 4096,
            max_trace_metadata_size: ByteSize(64 * 1024),
            max_decompressing_size: None,
            max_decoding_size: None,
        }
    }
}

impl OtlpReceiverConfig {
    /// `max_decoded_size`, or its default derived from `max_request_body_size`.
    pub fn decoded_size_limit(&self) -> u64 {
        match self.max_decoded_size {
            Some(size) => size.get(),
            None => self.largest_body().saturating_mul(DECODED_SIZE_FACTOR),
        }
    }

    /// `max_decoding_size`, or its default: 2 x `max_decoded_size`.
    pub fn decoding_size_limit(&self) -> u64 {
        match self.max_decoding_size {
            Some(size) => size.get(),
            None => self.decoded_size_limit().saturating_mul(2),
        }
    }

    /// `max_decompressing_size`, or its default derived from `max_request_body_size`.
    pub fn decompressing_size_limit(&self) -> u64 {
        match self.max_decompressing_size {
            Some(size) => size.get(),
            None => self
                .largest_body()
                .saturating_mul(DECOMPRESSING_SIZE_FACTOR),
        }
    }
}

/// One named ingest key.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Name recorded with the spans sent with this key (e.g. `prod-gateway`).
    pub name: String,
    /// The bearer token clients send. Never logged; `Debug` prints it redacted.
    pub token: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Validate for OtlpReceiverConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        crate::protocols::validate(self, &mut errors);
        if self.max_request_body_size.get() == 0 {
            errors.push(FieldError::new(
                "max_request_body_size",
                "must be greater than 0, like 16MiB",
            ));
        }
        if self.max_concurrent_requests == 0 {
            errors.push(FieldError::new(
                "max_concurrent_requests",
                "must be at least 1, like 128",
            ));
        }
        if self.read_timeout.get().is_zero() {
            errors.push(FieldError::new(
                "read_timeout",
                "must be greater than 0, like 30s",
            ));
        }
        if self.header_read_timeout.get().is_zero() {
            errors.push(FieldError::new(
                "header_read_timeout",
                "must be greater than 0, like 10s",
            ));
        }
        if self.max_spans_per_request == 0 {
            errors.push(FieldError::new(
                "max_spans_per_request",
                "must be at least 1, like 100000",
            ));
        }
        if self.max_decoded_size.is_some_and(|s| s.get() == 0) {
            errors.push(FieldError::new(
                "max_decoded_size",
                "must be greater than 0, like 128MiB (or leave it unset for 8 x max_request_body_size)",
            ));
        }
        if let Some(size) = self.max_decoding_size {
            if size.get() < self.decoded_size_limit() {
                errors.push(FieldError::new(
                    "max_decoding_size",
                    format!(
                        "{size} is below max_decoded_size ({} bytes): a request at that limit could never be decoded",
                        self.decoded_size_limit()
                    ),
                ));
            }
        }
        if let Some(size) = self.max_decompressing_size {
            if size.get() < self.largest_body() {
                errors.push(FieldError::new(
                    "max_decompressing_size",
                    format!(
                        "{size} is below max_request_body_size ({}): a compressed request at the body limit could never be decompressed",
                        ByteSize(self.largest_body())
                    ),
                ));
            }
        }
        if self.max_custom_trace_id_length == 0 {
            errors.push(FieldError::new(
                "max_custom_trace_id_length",
                "must be at least 1, like 4096",
            ));
        }
        if self.max_trace_metadata_size.get() == 0 {
            errors.push(FieldError::new(
                "max_trace_metadata_size",
                "must be greater than 0, like 64KiB",
            ));
        }
        validate_keys(&self.api_keys, &mut errors);
        errors
    }
}

fn validate_keys(keys: &[ApiKey], errors: &mut Vec<FieldError>) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut tokens: HashMap<&str, usize> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        if key.name.trim().is_empty() {
            errors.push(FieldError::new(
                format!("api_keys[{i}].name"),
                "must not be empty: the name identifies the key in S3 paths and logs",
            ));
        } else if let Some(first) = names.insert(&key.name, i) {
            errors.push(FieldError::new(
                format!("api_keys[{i}].name"),
                format!(
                    "duplicate key name {:?} (also used by api_keys[{first}]); give every key its own name",
                    key.name
                ),
            ));
        }
        if key.token.is_empty() {
            errors.push(FieldError::new(
                format!("api_keys[{i}].token"),
                "must not be empty (if it comes from ${env:...}, check that the variable is set)",
            ));
        } else if key
            .token
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            errors.push(FieldError::new(
                format!("api_keys[{i}].token"),
                "must be printable ASCII without spaces, as a bearer token sent in an HTTP header",
            ));
        } else if let Some(first) = tokens.insert(&key.token, i) {
            // Message deliberately omits the token.
            errors.push(FieldError::new(
                format!("api_keys[{i}].token"),
                format!(
                    "same token as api_keys[{first}]; each key needs its own token, else the key name of a request is ambiguous"
                ),
            ));
        }
    }
}

/// Checks an export path: absolute, without spaces, query or fragment.
pub(crate) fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/', like /v1/traces"));
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "{path:?} must be a plain URL path without spaces, '?' or '#', like /v1/traces"
        ));
    }
    Ok(())
}

/// Checks `host:port` without resolving the host (validation does no I/O).
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let hint = "expected host:port, like 127.0.0.1:4318, 0.0.0.0:4318 or [::1]:4318";
    if endpoint.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(format!("{endpoint:?} has no port; {hint}"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("{endpoint:?} has an invalid port {port:?}; {hint}"));
    }
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let valid_name = !bare_host.is_empty()
        && !host.contains(':')
        && bare_host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid_name {
        return Err(format!("{endpoint:?} has an invalid host {host:?}; {hint}"));
    }
    Ok(())
}
