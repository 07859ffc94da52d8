//! `OtlpExporterConfig`: the `exporters.otlp[/name]` section, its defaults, and its
//! validation into [`ValidOtlpExporterConfig`] (URL, headers and TLS files parsed once).

use std::collections::BTreeMap;
use std::path::PathBuf;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tracecast_config::exporter::{
    validate_dead_letter_dir, validate_timeout, ValidClientTls, DEFAULT_DEAD_LETTER_MAX_SIZE,
};
pub use tracecast_config::exporter::{ClientTls, Compression, RetryOnFailure};
use tracecast_config::{ByteSize, Duration, FieldError, ValidateInto};

/// Config of the `otlp` exporter (the OTLP/HTTP forwarder).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// The full traces URL, e.g. `https://api.axiom.co/v1/traces` (nothing is appended).
    pub endpoint: String,
    /// Body encoding: `json` (the default, as the gateway itself sends) or `protobuf`.
    pub encoding: Encoding,
    /// Body compression (shared setting): `gzip` (default) or `none`.
    pub compression: Compression,
    /// gzip level, 1 (fastest) to 9 (smallest). The default, 2, gives on gateway payloads
    /// about 1.18x the bytes of level 6 for a fifth of its CPU (measured in the README's
    /// Performance section); raise it where bandwidth costs more than CPU.
    pub compression_level: u32,
    /// Timeout of one request, from connect to the end of the response (shared setting).
    /// Default 10s.
    pub timeout: Duration,
    /// Headers sent with every request (authentication, dataset). Values are never logged.
    pub headers: BTreeMap<String, String>,
    /// Backoff for retryable failures (429/502/503/504, connection errors, timeouts); the
    /// shared setting, see [`RetryOnFailure`].
    pub retry_on_failure: RetryOnFailure,
    /// In-memory queue between the pipeline and the senders (the durable queue sits in
    /// front of the pipeline).
    pub sending_queue: SendingQueue,
    /// TLS settings for `https://` endpoints (shared setting, see [`ClientTls`]). System
    /// roots are always trusted.
    pub tls: ClientTls,
    /// Folder for batches the backend rejected for good or that ran out of retries
    /// (`<unix_nanos>-<n>.pb` plus `.pb.reason.txt`); default
    /// `./tracecast-data/dead-letter/<exporter id>` (`/` in the id becomes `_`).
    pub dead_letter_dir: Option<PathBuf>,
    /// Bound of the dead-letter folder: past it the oldest files are removed (logged, and
    /// counted in `tracecast_spool_files_removed_total`), so an expired token cannot fill
    /// the disk and take the durable queue down with it. `0`: no bound. Default 256 MiB (a
    /// quarter of the default `service.queue.max_size`).
    pub dead_letter_max_size: ByteSize,
}

/// Request body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// OTLP/JSON (`application/json`).
    #[default]
    Json,
    /// OTLP protobuf (`application/x-protobuf`); an untouched batch is sent as received.
    Protobuf,
}

/// The queue between the pipeline and the senders.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendingQueue {
    /// Batches held in memory beyond the pipeline's channel; when full, back-pressure
    /// reaches the receiver (which answers 429/503).
    pub queue_size: usize,
    /// Batches sent at once; more hide backend latency, fewer spare the backend.
    pub num_consumers: usize,
    /// Most spans held in memory by the exporter at once (queued and being sent), whatever
    /// the number of batches: `queue_size` counts batches, and 32 batches of 8,192 spans of
    /// gateway traffic are over a gigabyte. Beyond it the pipeline's channel fills and the
    /// backlog waits in the durable queue on disk. A larger batch is still taken, alone.
    pub max_spans: usize,
}

impl Default for OtlpExporterConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            encoding: Encoding::default(),
            compression: Compression::Gzip,
            compression_level: 2,
            timeout: Duration::from_secs(10),
            headers: BTreeMap::new(),
            retry_on_failure: RetryOnFailure::default(),
            sending_queue: SendingQueue::default(),
            tls: ClientTls::default(),
            dead_letter_dir: None,
            dead_letter_max_size: DEFAULT_DEAD_LETTER_MAX_SIZE,
        }
    }
}

/// Two full batches of the `batch` processor's default size (8,192 spans): one being
/// compressed while one is sent. For gateway traffic with 2 KiB of prompt and completion
/// text per span, about 100 MB in memory (decoded spans plus the received bytes). Raise it
/// on machines with more cores to compress more batches at once.
pub const DEFAULT_MAX_SPANS: usize = 2 * 8192;
/// Largest `sending_queue.max_spans` taken (a billion spans is terabytes; the bound is a
/// memory bound).
pub const MAX_MAX_SPANS: usize = 1_000_000_000;

impl Default for SendingQueue {
    fn default() -> Self {
        Self {
            queue_size: 32,
            num_consumers: 4,
            max_spans: DEFAULT_MAX_SPANS,
        }
    }
}

/// Headers tracecast sets itself from other keys; configuring them would send a body the
/// backend misreads.
const RESERVED_HEADERS: [(&str, &str); 4] = [
    ("content-type", "it follows `encoding`"),
    ("content-encoding", "it follows `compression`"),
    ("content-length", "it is computed per request"),
    ("host", "it comes from `endpoint`"),
];

/// Checks `endpoint`: an absolute `http`/`https` URL with a host. Returns the parsed URL.
pub(crate) fn parse_endpoint(endpoint: &str) -> Result<reqwest::Url, String> {
    if endpoint.trim().is_empty() {
        return Err(
            "is required: the backend's full traces URL, e.g. https://api.axiom.co/v1/traces"
                .into(),
        );
    }
    let url = reqwest::Url::parse(endpoint).map_err(|e| {
        format!("{endpoint:?} is not a URL ({e}); write the full traces URL, e.g. https://api.axiom.co/v1/traces")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {:?} is not supported; use http:// or https://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{endpoint:?} has no host"));
    }
    Ok(url)
}

/// Checks one configured header; the message never repeats the value (it may be a secret).
pub(crate) fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        format!(
            "{name:?} is not a valid HTTP header name (letters, digits and -!#$%&'*+.^_`|~ only)"
        )
    })?;
    if let Some((_, why)) = RESERVED_HEADERS.iter().find(|(n, _)| *n == header.as_str()) {
        return Err(format!("{name} is set by tracecast: {why}"));
    }
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        "the value is not a valid HTTP header value (line breaks or control characters); check the variable it comes from".to_string()
    })?;
    value.set_sensitive(true);
    Ok((header, value))
}

/// A validated `otlp` exporter config: what [`crate::OtlpExporter::new`] takes. The
/// endpoint, headers and TLS files are parsed; the other settings are read from `config`
/// as written.
#[derive(Debug, Clone)]
pub struct ValidOtlpExporterConfig {
    /// The config as written (encoding, compression, timeout, retries, queue, dead letters).
    pub config: OtlpExporterConfig,
    /// `endpoint`, parsed.
    pub url: reqwest::Url,
    /// `headers`, parsed (values marked sensitive, so they are never logged).
    pub headers: HeaderMap,
    /// `tls`, as the HTTP client's types.
    pub tls: ClientTlsParts,
}

/// The `tls` block as `reqwest` takes it, converted at validation.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsParts {
    /// Extra roots (`ca_file`), trusted besides the system ones.
    pub ca_certs: Vec<reqwest::Certificate>,
    /// The client certificate and key (`cert_file` + `key_file`).
    pub identity: Option<reqwest::Identity>,
    pub insecure_skip_verify: bool,
}

/// Converts a validated `tls` block into `reqwest`'s types; a key `reqwest` refuses is a
/// problem at `tls.key_file`.
fn tls_parts(tls: ValidClientTls) -> Result<ClientTlsParts, FieldError> {
    let ca_certs = tls
        .ca_certs
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FieldError::new("tls.ca_file", format!("unusable certificate: {e}")))?;
    let identity = match tls.identity {
        Some(identity) => Some(reqwest::Identity::from_pem(&identity.pem).map_err(|e| {
            FieldError::new(
                "tls.key_file",
                format!("the client certificate and key are not usable together: {e}"),
            )
        })?),
        None => None,
    };
    Ok(ClientTlsParts {
        ca_certs,
        identity,
        insecure_skip_verify: tls.insecure_skip_verify,
    })
}

impl ValidateInto for OtlpExporterConfig {
    type Validated = ValidOtlpExporterConfig;

    fn validate_into(&self) -> Result<ValidOtlpExporterConfig, Vec<FieldError>> {
        let mut errors = Vec::new();
        let url = parse_endpoint(&self.endpoint)
            .map_err(|message| errors.push(FieldError::new("endpoint", message)))
            .ok();
        if !(1..=9).contains(&self.compression_level) {
            errors.push(FieldError::new(
                "compression_level",
                format!(
                    "compression_level {} is out of range: use 1 (fastest) to 9 (smallest)",
                    self.compression_level
                ),
            ));
        }
        errors.extend(validate_timeout(self.timeout));
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            match parse_header(name, value) {
                Ok((name, value)) => {
                    headers.insert(name, value);
                }
                Err(message) => errors.push(FieldError::new(format!("headers.{name}"), message)),
            }
        }
        errors.extend(self.retry_on_failure.validate_at("retry_on_failure"));
        if self.sending_queue.queue_size == 0 {
            errors.push(FieldError::new(
                "sending_queue.queue_size",
                "must be at least 1, e.g. 1000",
            ));
        }
        if self.sending_queue.num_consumers == 0 {
            errors.push(FieldError::new(
                "sending_queue.num_consumers",
                "must be at least 1, e.g. 4",
            ));
        }
        if self.sending_queue.max_spans == 0 || self.sending_queue.max_spans > MAX_MAX_SPANS {
            errors.push(FieldError::new(
                "sending_queue.max_spans",
                format!("must be between 1 and {MAX_MAX_SPANS}, e.g. {DEFAULT_MAX_SPANS}"),
            ));
        }
        let tls = match self.tls.validate_at("tls") {
            Ok(tls) => tls_parts(tls).map_err(|e| errors.push(e)).ok(),
            Err(problems) => {
                errors.extend(problems);
                None
            }
        };
        errors.extend(validate_dead_letter_dir(self.dead_letter_dir.as_deref()));
        match (url, tls) {
            (Some(url), Some(tls)) if errors.is_empty() => Ok(ValidOtlpExporterConfig {
                config: self.clone(),
                url,
                headers,
                tls,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> OtlpExporterConfig {
        OtlpExporterConfig {
            endpoint: "https://api.axiom.co/v1/traces".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_need_only_an_endpoint() {
        assert_eq!(valid().problems(), vec![]);
        let errors = OtlpExporterConfig::default().problems();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "endpoint");
        assert!(errors[0].message.starts_with("is required"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path_and_no_secret() {
        let mut c = valid();
        c.endpoint = "ftp://example.com/v1/traces".into();
        c.timeout = Duration::from_secs(0);
        c.headers.insert("Bad Name".into(), "x".into());
        c.headers
            .insert("Authorization".into(), "Bearer secret\nvalue".into());
        c.headers.insert("Content-Type".into(), "text/plain".into());
        c.retry_on_failure.max_interval = Duration::from_secs(1);
        c.sending_queue.num_consumers = 0;
        c.sending_queue.max_spans = MAX_MAX_SPANS + 1;
        let errors = c.problems();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "endpoint",
                "timeout",
                "headers.Authorization",
                "headers.Bad Name",
                "headers.Content-Type",
                "retry_on_failure.max_interval",
                "sending_queue.num_consumers",
                "sending_queue.max_spans"
            ]
        );
        assert!(errors[7].message.contains("between 1 and 1000000000"));
        assert!(errors.iter().all(|e| !e.message.contains("secret")));
        assert!(errors[0].message.contains("use http:// or https://"));
    }

    #[test]
    fn disabled_retries_stop_after_the_first_failure() {
        let mut r = RetryOnFailure::default();
        assert_eq!(
            r.policy().max_elapsed_time,
            Some(std::time::Duration::from_secs(300))
        );
        r.enabled = false;
        assert_eq!(r.policy().max_elapsed_time, Some(std::time::Duration::ZERO));
    }
}
