//! `OtlpExporterConfig`: the `exporters.otlp[/name]` section, its defaults and its validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use tracecast_config::exporter::{
    validate_dead_letter_dir, validate_timeout, DEFAULT_DEAD_LETTER_MAX_SIZE,
};
pub use tracecast_config::exporter::{Compression, RetryOnFailure};
use tracecast_config::{ByteSize, Duration, FieldError, Validate};

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
    /// TLS settings for `https://` endpoints. System roots are always trusted.
    pub tls: TlsSettings,
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
}

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of extra CA certificates to trust (private CAs), besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Only for testing: it defeats TLS.
    pub insecure_skip_verify: bool,
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
            tls: TlsSettings::default(),
            dead_letter_dir: None,
            dead_letter_max_size: DEFAULT_DEAD_LETTER_MAX_SIZE,
        }
    }
}

impl Default for SendingQueue {
    fn default() -> Self {
        Self {
            queue_size: 32,
            num_consumers: 4,
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

impl Validate for OtlpExporterConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(message) = parse_endpoint(&self.endpoint) {
            errors.push(FieldError::new("endpoint", message));
        }
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
        for (name, value) in &self.headers {
            if let Err(message) = parse_header(name, value) {
                errors.push(FieldError::new(format!("headers.{name}"), message));
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
        if self
            .tls
            .ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            errors.push(FieldError::new(
                "tls.ca_file",
                "is empty; give the path of a PEM file or remove the key",
            ));
        }
        errors.extend(validate_dead_letter_dir(self.dead_letter_dir.as_deref()));
        errors
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
        assert_eq!(valid().validate(), vec![]);
        let errors = OtlpExporterConfig::default().validate();
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
        let errors = c.validate();
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
                "sending_queue.num_consumers"
            ]
        );
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
