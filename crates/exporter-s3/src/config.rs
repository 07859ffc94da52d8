//! `S3ExporterConfig`: the `exporters.s3[/name]` section, its defaults, and its validation
//! into [`ValidS3ExporterConfig`] (destination, path template and TLS files parsed once).

use std::path::PathBuf;

use serde::Deserialize;
use tracecast_config::exporter::{
    validate_dead_letter_dir, validate_timeout, ValidClientTls, DEFAULT_DEAD_LETTER_MAX_SIZE,
};
pub use tracecast_config::exporter::{ClientTls, Compression, RetryOnFailure};
use tracecast_config::{ByteSize, Duration, FieldError, ValidateInto};

use crate::key::PathTemplate;

/// Config of the `s3` exporter. Either `bucket` (plus optional endpoint and credentials) or
/// `url` (`s3://bucket[/base]` or `file:///dir`) names the destination.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3ExporterConfig {
    /// Bucket name (e.g. `my-traces-bucket`). Alternative to `url`.
    pub bucket: Option<String>,
    /// AWS region; defaults to `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`. Some
    /// S3-compatible services require a specific value (R2: `auto`).
    pub region: Option<String>,
    /// Custom endpoint for S3-compatibles (R2, MinIO). `http://` endpoints are allowed (local
    /// MinIO); plain HTTP is then enabled automatically.
    pub endpoint: Option<String>,
    /// Access key id. Without keys, the standard AWS chain is used (env, web identity for
    /// Kubernetes service accounts, ECS, instance metadata).
    pub access_key_id: Option<String>,
    /// Secret access key; required together with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials. An empty string means none, so
    /// `${env:AWS_SESSION_TOKEN:-}` works.
    pub session_token: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`). MinIO and some compatibles need it.
    /// When false, virtual-hosted style is used where possible (not for IP or `localhost`
    /// endpoints, nor for bucket names with dots, which break TLS host names).
    pub force_path_style: bool,
    /// Object folder template; variables `{prefix}`, `{date}`, `{year}`, `{month}`, `{day}`,
    /// `{hour}`, `{apiKeyName}`. The default keeps existing Athena tables working.
    pub path_template: String,
    /// Value of `{prefix}` (e.g. `production`).
    pub prefix: String,
    /// A trace whose root span has arrived is written once no span of it came for this long.
    pub trace_idle_timeout: Duration,
    /// A trace is written at the latest this long after its first span arrived (root or not).
    pub max_trace_wait: Duration,
    /// Destination as a URL: `s3://bucket[/base/folder]` or `file:///dir` (`file://./dir`
    /// for a folder relative to the working directory; created if missing).
    pub url: Option<String>,
    /// Trace file compression (shared setting): `none` (default here, as the gateway's own
    /// files) writes `.json`; `gzip` writes `.json.gz` (no `Content-Encoding` header, so
    /// readers get the compressed bytes).
    pub compression: Compression,
    /// Most uploads in flight at once. The exporter starts at 16 (or this, if lower) and
    /// adapts between 1 and this: more while the endpoint's latency stays flat, fewer when
    /// it throttles (`crate::upload::UploadConcurrency`).
    pub max_concurrent_uploads: usize,
    /// Spans held in trace assembly; beyond it the oldest traces are written early.
    pub max_buffered_spans: usize,
    /// Encoded span bytes held in trace assembly; beyond it the oldest traces are written early.
    pub max_buffered_bytes: ByteSize,
    /// Span or resource attribute holding the ingest key name, used for `{apiKeyName}` and
    /// `apiKeyName` when the receiver did not authenticate the request with a named key.
    pub api_key_name_attribute: Option<String>,
    /// Where traces that cannot be written (permanent errors, retries exhausted, shutdown
    /// deadline) are kept on local disk, with the reason beside each file. Default:
    /// `./tracecast-data/dead-letter/<exporter id>`.
    pub dead_letter_dir: Option<PathBuf>,
    /// Bound of the dead-letter folder: past it the oldest files are removed (logged, and
    /// counted in `tracecast_spool_files_removed_total`), so an expired token cannot fill
    /// the disk and take the durable queue down with it. `0`: no bound. Default 256 MiB (a
    /// quarter of the default `service.queue.max_size`).
    pub dead_letter_max_size: ByteSize,
    /// Timeout of one S3 request (shared setting). Default 30s. `request_timeout` is
    /// accepted as a deprecated alias.
    #[serde(alias = "request_timeout")]
    pub timeout: Duration,
    /// Backoff for failed uploads (5xx, throttling, timeouts, unreachable endpoint); the
    /// shared setting, see [`RetryOnFailure`]. `retry` is accepted as a deprecated alias.
    #[serde(alias = "retry")]
    pub retry_on_failure: RetryOnFailure,
    /// TLS settings for `https://` endpoints (shared setting, see [`ClientTls`]): `ca_file`
    /// and `insecure_skip_verify`. `cert_file`/`key_file` are refused: `object_store`'s
    /// client takes no client certificate.
    pub tls: ClientTls,
}

impl Default for S3ExporterConfig {
    fn default() -> Self {
        Self {
            bucket: None,
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            force_path_style: false,
            path_template: "openrouter-traces/{date}".into(),
            prefix: String::new(),
            trace_idle_timeout: Duration::from_secs(5),
            max_trace_wait: Duration::from_secs(60),
            url: None,
            compression: Compression::None,
            max_concurrent_uploads: 256,
            max_buffered_spans: 100_000,
            max_buffered_bytes: ByteSize::mib(64),
            api_key_name_attribute: None,
            dead_letter_dir: None,
            dead_letter_max_size: DEFAULT_DEAD_LETTER_MAX_SIZE,
            timeout: Duration::from_secs(30),
            retry_on_failure: RetryOnFailure::default(),
            tls: ClientTls::default(),
        }
    }
}

/// Where trace files go, parsed from `bucket`/`url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An S3 bucket; `base` is a folder inside it from `s3://bucket/base`.
    S3 {
        bucket: String,
        base: Option<String>,
    },
    /// A local folder.
    Local { dir: PathBuf },
}

/// A validated `s3` exporter config: what [`crate::S3Exporter::new`] takes. Destination,
/// template and TLS files are parsed; the other settings are read from `config` as written.
#[derive(Debug, Clone)]
pub struct ValidS3ExporterConfig {
    /// The config as written (credentials, region, limits, retries, dead letters).
    pub config: S3ExporterConfig,
    pub target: Target,
    pub template: PathTemplate,
    /// `tls.ca_file`, as `object_store` takes it.
    pub ca_certs: Vec<object_store::Certificate>,
    /// `tls.insecure_skip_verify`.
    pub insecure_skip_verify: bool,
}

/// `tls` as `object_store` takes it.
struct TlsParts {
    ca_certs: Vec<object_store::Certificate>,
    insecure_skip_verify: bool,
}

/// `Some(s)` unless absent or empty (empty = absent, for `${env:X:-}`).
pub(crate) fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl ValidateInto for S3ExporterConfig {
    type Validated = ValidS3ExporterConfig;

    /// Validates and returns the parsed pieces the exporter is built from.
    fn validate_into(&self) -> Result<ValidS3ExporterConfig, Vec<FieldError>> {
        let mut errors = Vec::new();
        let template = match PathTemplate::parse(&self.path_template) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(FieldError::new("path_template", e.to_string()));
                None
            }
        };
        let target = self.target(&mut errors);
        if non_empty(&self.access_key_id).is_some() != non_empty(&self.secret_access_key).is_some()
        {
            let missing = if non_empty(&self.access_key_id).is_some() {
                "secret_access_key"
            } else {
                "access_key_id"
            };
            errors.push(FieldError::new(
                missing,
                "access_key_id and secret_access_key go together: set both, or neither to use the AWS credential chain",
            ));
        }
        if non_empty(&self.session_token).is_some() && non_empty(&self.access_key_id).is_none() {
            errors.push(FieldError::new(
                "session_token",
                "session_token needs access_key_id and secret_access_key",
            ));
        }
        if let Some(ep) = non_empty(&self.endpoint) {
            if let Err(message) = check_endpoint(ep) {
                errors.push(FieldError::new("endpoint", message));
            }
        }
        if self.trace_idle_timeout.get().is_zero() {
            errors.push(FieldError::new(
                "trace_idle_timeout",
                "must be greater than 0",
            ));
        }
        if self.trace_idle_timeout > self.max_trace_wait {
            errors.push(FieldError::new(
                "trace_idle_timeout",
                format!(
                    "trace_idle_timeout ({}) is longer than max_trace_wait ({}): traces would always wait max_trace_wait",
                    self.trace_idle_timeout, self.max_trace_wait
                ),
            ));
        }
        for (path, value) in [
            ("max_concurrent_uploads", self.max_concurrent_uploads),
            ("max_buffered_spans", self.max_buffered_spans),
            ("max_buffered_bytes", self.max_buffered_bytes.get() as usize),
        ] {
            if value == 0 {
                errors.push(FieldError::new(path, "must be greater than 0"));
            }
        }
        errors.extend(validate_timeout(self.timeout));
        errors.extend(self.retry_on_failure.validate_at("retry_on_failure"));
        errors.extend(validate_dead_letter_dir(self.dead_letter_dir.as_deref()));
        let tls = self.tls(target.as_ref(), &mut errors);
        match (errors.is_empty(), target, template, tls) {
            (true, Some(target), Some(template), Some(tls)) => Ok(ValidS3ExporterConfig {
                config: self.clone(),
                target,
                template,
                ca_certs: tls.ca_certs,
                insecure_skip_verify: tls.insecure_skip_verify,
            }),
            _ => Err(errors),
        }
    }
}

/// The `tls` problems an `s3` exporter adds to the shared validation.
const NO_CLIENT_CERT: &str = "the s3 exporter cannot present a client certificate: object_store's \
    S3 client takes no client identity; remove cert_file and key_file and authenticate with \
    access_key_id/secret_access_key (or the AWS credential chain)";

impl S3ExporterConfig {
    /// Validates `tls`: the shared block (files read, PEM parsed), less what this exporter
    /// cannot do (a client certificate; any TLS setting for a `file://` destination).
    fn tls(&self, target: Option<&Target>, errors: &mut Vec<FieldError>) -> Option<TlsParts> {
        if self.tls.has_identity() {
            let key = if self.tls.cert_file.is_some() {
                "tls.cert_file"
            } else {
                "tls.key_file"
            };
            errors.push(FieldError::new(key, NO_CLIENT_CERT));
            return None;
        }
        if matches!(target, Some(Target::Local { .. })) && self.tls != ClientTls::default() {
            errors.push(FieldError::new(
                "tls",
                "`tls` applies to S3 destinations, not to a file:// url",
            ));
            return None;
        }
        let tls: ValidClientTls = match self.tls.validate_at("tls") {
            Ok(tls) => tls,
            Err(problems) => {
                errors.extend(problems);
                return None;
            }
        };
        let ca_certs = tls
            .ca_certs
            .iter()
            .map(|der| object_store::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>();
        match ca_certs {
            Ok(ca_certs) => Some(TlsParts {
                ca_certs,
                insecure_skip_verify: tls.insecure_skip_verify,
            }),
            Err(e) => {
                errors.push(FieldError::new(
                    "tls.ca_file",
                    format!("unusable certificate: {e}"),
                ));
                None
            }
        }
    }

    fn target(&self, errors: &mut Vec<FieldError>) -> Option<Target> {
        let bucket = non_empty(&self.bucket);
        let url = non_empty(&self.url);
        match (bucket, url) {
            (None, None) => {
                errors.push(FieldError::new(
                    "",
                    "set `bucket` (an S3 bucket name) or `url` (s3://bucket or file:///dir)",
                ));
                None
            }
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "url",
                    "set either `bucket` or `url`, not both (s3://bucket in `url` already names the bucket)",
                ));
                None
            }
            (Some(b), None) => match check_bucket(b) {
                Ok(()) => Some(Target::S3 {
                    bucket: b.to_string(),
                    base: None,
                }),
                Err(m) => {
                    errors.push(FieldError::new("bucket", m));
                    None
                }
            },
            (None, Some(u)) => self.parse_url(u, errors),
        }
    }

    fn parse_url(&self, url: &str, errors: &mut Vec<FieldError>) -> Option<Target> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, base) = match rest.split_once('/') {
                Some((b, p)) => (b, Some(p.trim_matches('/')).filter(|p| !p.is_empty())),
                None => (rest, None),
            };
            if let Err(m) = check_bucket(bucket) {
                errors.push(FieldError::new("url", m));
                return None;
            }
            if let Some(b) = base {
                if b.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
                    errors.push(FieldError::new(
                        "url",
                        format!("the folder {b:?} in {url:?} has an empty, '.' or '..' segment"),
                    ));
                    return None;
                }
            }
            return Some(Target::S3 {
                bucket: bucket.to_string(),
                base: base.map(str::to_string),
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                errors.push(FieldError::new(
                    "url",
                    "file:// needs a folder, like file:///var/lib/tracecast/traces or file://./tracecast-data",
                ));
                return None;
            }
            let s3_only = [
                ("endpoint", non_empty(&self.endpoint)),
                ("access_key_id", non_empty(&self.access_key_id)),
                ("region", non_empty(&self.region)),
            ];
            for (key, v) in s3_only {
                if v.is_some() {
                    errors.push(FieldError::new(
                        key,
                        format!("`{key}` applies to S3 destinations, not to a file:// url"),
                    ));
                }
            }
            return Some(Target::Local {
                dir: PathBuf::from(path),
            });
        }
        errors.push(FieldError::new(
            "url",
            format!("unsupported url {url:?}: use s3://bucket or file:///dir"),
        ));
        None
    }
}

/// `endpoint`: an absolute `http`/`https` URL with a host (object_store takes it as text;
/// parsing it here means a typo is a config problem, not a failed upload).
fn check_endpoint(ep: &str) -> Result<(), String> {
    let like = "like https://<account>.r2.cloudflarestorage.com";
    let uri: http::Uri = ep
        .parse()
        .map_err(|e| format!("endpoint {ep:?} is not a URL ({e}); write it {like}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !(scheme_ok && host_ok) {
        return Err(format!(
            "endpoint {ep:?} must be an http:// or https:// URL, {like}"
        ));
    }
    Ok(())
}

/// S3 bucket naming rules that matter for building requests.
fn check_bucket(b: &str) -> Result<(), String> {
    let ok_chars = b
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if b.len() < 3 || b.len() > 63 || !ok_chars {
        return Err(format!(
            "bucket name {b:?} is not valid: 3 to 63 characters, lowercase letters, digits, '-' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> S3ExporterConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn reads_every_documented_key() {
        let c = parse(
            "bucket: my-traces-bucket\nregion: us-east-1\nendpoint: https://acc.r2.cloudflarestorage.com\n\
             access_key_id: AK\nsecret_access_key: SK\nsession_token: ''\nforce_path_style: true\n\
             path_template: t/{apiKeyName}/{date}\nprefix: production\ntrace_idle_timeout: 200ms\n\
             max_trace_wait: 2s\ncompression: gzip\nmax_concurrent_uploads: 4\nmax_buffered_spans: 10\n\
             max_buffered_bytes: 1MiB\napi_key_name_attribute: openrouter.api_key_name\n",
        );
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.trace_idle_timeout, Duration::from_millis(200));
        let v = c.validate_into().unwrap();
        assert_eq!(
            v.target,
            Target::S3 {
                bucket: "my-traces-bucket".into(),
                base: None
            }
        );
        assert!(serde_yaml::from_str::<S3ExporterConfig>("bukket: x").is_err());
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let c = parse("path_template: 'a/{week}'\ntrace_idle_timeout: 2m\naccess_key_id: AK\n");
        let errs = c.problems();
        let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "path_template",
                "",
                "secret_access_key",
                "trace_idle_timeout"
            ]
        );
        assert_eq!(
            errs[0].message,
            "unknown variable {week}: the variables are {prefix}, {date}, {year}, {month}, {day}, {hour}, {apiKeyName}"
        );
        let both = parse("bucket: abc\nurl: s3://abc\n").problems();
        assert_eq!(both[0].path, "url");
        let bad = parse("url: ftp://x\n").problems();
        assert_eq!(
            bad[0].message,
            "unsupported url \"ftp://x\": use s3://bucket or file:///dir"
        );
        let empty = parse("bucket: abc\npath_template: ''\n").problems();
        assert_eq!(empty[0].path, "path_template");
    }

    #[test]
    fn endpoint_must_be_an_http_url_with_a_host() {
        for ok in [
            "http://127.0.0.1:9000",
            "https://acc.r2.cloudflarestorage.com/",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ftp://x",
            "https://",
            "acc.r2.cloudflarestorage.com",
            "http://a b",
        ] {
            let m = check_endpoint(bad).unwrap_err();
            assert!(m.starts_with(&format!("endpoint {bad:?} ")), "{m}");
        }
    }

    #[test]
    fn parses_url_forms() {
        let t = |u: &str| {
            parse(&format!("url: {u}\n"))
                .validate_into()
                .map(|v| v.target)
        };
        assert_eq!(
            t("s3://bkt/base/dir").unwrap(),
            Target::S3 {
                bucket: "bkt".into(),
                base: Some("base/dir".into())
            }
        );
        assert_eq!(
            t("file://./tracecast-data").unwrap(),
            Target::Local {
                dir: "./tracecast-data".into()
            }
        );
        assert_eq!(
            t("file:///var/lib/x").unwrap(),
            Target::Local {
                dir: "/var/lib/x".into()
            }
        );
    }
}
