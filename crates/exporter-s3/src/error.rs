//! Errors of the S3 exporter, and the classification of `object_store` failures into
//! retryable / permanent problems with a plain-words message and the fix.

use std::error::Error as StdError;

use object_store::client::{HttpError, HttpErrorKind};
use tracecast_core::ExportError;

/// Why the exporter could not be built from its validated config (never a config problem:
/// validation reports those).
#[derive(Debug, thiserror::Error)]
pub enum S3ExporterError {
    /// `object_store` refused the store settings.
    #[error("cannot set up the object store: {0}")]
    Store(#[from] object_store::Error),
    /// A local folder (file:// target or dead-letter folder) could not be created.
    #[error("cannot create folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    /// The dead-letter folder could not be listed (`tracecast dead-letters resend`).
    #[error("cannot read the dead-letter folder {path}: {source}")]
    ReadFolder {
        path: String,
        source: std::io::Error,
    },
}

/// What went wrong with one store request, in the terms a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreProblem {
    NoSuchBucket,
    AccessDenied,
    /// Signature mismatch: wrong secret, or wrong region.
    SignatureMismatch,
    InvalidAccessKeyId,
    /// The endpoint did not answer (DNS, refused connection, ...).
    Unreachable(String),
    /// The TLS handshake failed.
    Tls(String),
    Timeout,
    /// 503 SlowDown / 429.
    Throttled,
    /// Any other 5xx.
    ServerError(u16),
    /// Create-only write found an object with that key.
    AlreadyExists,
    /// The local folder (file:// target) failed.
    LocalIo(String),
    Other(String),
}

/// Where requests go, for messages.
#[derive(Debug, Clone)]
pub struct Destination {
    /// `s3://bucket` or `file:///dir`.
    pub display: String,
    pub bucket: Option<String>,
    pub endpoint: String,
    pub region: String,
}

impl StoreProblem {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreProblem::Unreachable(_)
                | StoreProblem::Timeout
                | StoreProblem::Throttled
                | StoreProblem::ServerError(_)
        )
    }

    /// Short label for metrics (`reason`).
    pub fn label(&self) -> &'static str {
        match self {
            StoreProblem::NoSuchBucket => "no_such_bucket",
            StoreProblem::AccessDenied => "access_denied",
            StoreProblem::SignatureMismatch => "signature_mismatch",
            StoreProblem::InvalidAccessKeyId => "invalid_access_key",
            StoreProblem::Unreachable(_) => "unreachable",
            StoreProblem::Tls(_) => "tls",
            StoreProblem::Timeout => "timeout",
            StoreProblem::Throttled => "throttled",
            StoreProblem::ServerError(_) => "server_error",
            StoreProblem::AlreadyExists => "already_exists",
            StoreProblem::LocalIo(_) => "local_io",
            StoreProblem::Other(_) => "other",
        }
    }

    /// The problem in plain words, with the fix.
    pub fn message(&self, dest: &Destination) -> String {
        let bucket = dest.bucket.as_deref().unwrap_or("");
        match self {
            StoreProblem::NoSuchBucket => format!(
                "bucket {bucket:?} does not exist at {}: create it, or fix `bucket` (and `endpoint`/`region`)",
                dest.endpoint
            ),
            StoreProblem::AccessDenied => format!(
                "access denied writing to {}: grant the credentials s3:PutObject on this bucket and path",
                dest.display
            ),
            StoreProblem::SignatureMismatch => format!(
                "signature mismatch at {}: the secret access key is wrong, or `region` ({}) is not the bucket's region",
                dest.endpoint, dest.region
            ),
            StoreProblem::InvalidAccessKeyId => format!(
                "the access key id is not known at {}: check `access_key_id` (and that `endpoint` is the right service)",
                dest.endpoint
            ),
            StoreProblem::Unreachable(why) => format!(
                "cannot reach the S3 endpoint {}: check `endpoint` and the network ({why})",
                dest.endpoint
            ),
            StoreProblem::Tls(why) => format!(
                "TLS handshake with {} failed: check the endpoint's certificate and that it speaks https ({why})",
                dest.endpoint
            ),
            StoreProblem::Timeout => format!(
                "the S3 endpoint {} did not answer in time: check `endpoint`, or raise `timeout`",
                dest.endpoint
            ),
            StoreProblem::Throttled => format!(
                "{} is throttling requests (SlowDown): lower `max_concurrent_uploads`",
                dest.endpoint
            ),
            StoreProblem::ServerError(code) => {
                format!("{} answered with server error {code}", dest.endpoint)
            }
            StoreProblem::AlreadyExists => "an object with that name already exists".into(),
            StoreProblem::LocalIo(why) => {
                format!("cannot write to {}: {why}", dest.display)
            }
            StoreProblem::Other(why) => format!("writing to {} failed: {why}", dest.display),
        }
    }

    pub fn to_export_error(&self, dest: &Destination) -> ExportError {
        if self.is_retryable() {
            ExportError::retryable(self.message(dest))
        } else {
            ExportError::permanent(self.message(dest))
        }
    }
}

/// Classifies an `object_store` error. object_store keeps the HTTP status inside a private
/// error type, so the status and the S3 error `<Code>` are read from the error chain's text
/// and the transport failure from the public [`HttpError`].
pub fn classify(err: &object_store::Error) -> StoreProblem {
    if let object_store::Error::AlreadyExists { .. } = err {
        return StoreProblem::AlreadyExists;
    }
    let chain = chain_text(err);
    let code = s3_code(&chain);
    match code.as_deref() {
        Some("NoSuchBucket") => return StoreProblem::NoSuchBucket,
        Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem") => {
            return StoreProblem::AccessDenied
        }
        Some("SignatureDoesNotMatch" | "AuthorizationHeaderMalformed") => {
            return StoreProblem::SignatureMismatch
        }
        Some("InvalidAccessKeyId" | "NotSignedUp") => return StoreProblem::InvalidAccessKeyId,
        Some("SlowDown" | "Throttling" | "RequestLimitExceeded" | "TooManyRequests") => {
            return StoreProblem::Throttled
        }
        Some("RequestTimeout") => return StoreProblem::Timeout,
        _ => {}
    }
    if let Some(kind) = http_kind(err) {
        let lower = chain.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            return StoreProblem::Tls(last_source(err));
        }
        return match kind {
            HttpErrorKind::Timeout => StoreProblem::Timeout,
            HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Interrupted => {
                StoreProblem::Unreachable(last_source(err))
            }
            _ => StoreProblem::Other(last_source(err)),
        };
    }
    match err {
        object_store::Error::NotFound { .. } => return StoreProblem::NoSuchBucket,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => return StoreProblem::AccessDenied,
        _ => {}
    }
    if let Some(status) = http_status(&chain) {
        return match status {
            429 | 503 => StoreProblem::Throttled,
            500..=599 => StoreProblem::ServerError(status),
            403 => StoreProblem::AccessDenied,
            404 => StoreProblem::NoSuchBucket,
            _ => StoreProblem::Other(last_source(err)),
        };
    }
    if let Some(io) = find_source::<std::io::Error>(err) {
        return StoreProblem::LocalIo(io.to_string());
    }
    StoreProblem::Other(err.to_string())
}

fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(" | ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

fn last_source(err: &(dyn StdError + 'static)) -> String {
    let mut cur: &(dyn StdError + 'static) = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

fn http_kind(err: &(dyn StdError + 'static)) -> Option<HttpErrorKind> {
    find_source::<HttpError>(err).map(HttpError::kind)
}

/// The `<Code>` of an S3 XML error body, if the chain carries one.
fn s3_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")?;
    Some(text[start..start + end].trim().to_string())
}

/// The status from object_store's "status code: 503 Service Unavailable" text.
fn http_status(text: &str) -> Option<u16> {
    let marker = "status code: ";
    let at = text.find(marker)? + marker.len();
    text[at..].get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_code_and_status_from_text() {
        assert_eq!(
            s3_code("x <Error><Code>NoSuchBucket</Code></Error>").as_deref(),
            Some("NoSuchBucket")
        );
        assert_eq!(
            http_status("Server returned non-2xx status code: 503 Service Unavailable: "),
            Some(503)
        );
        assert_eq!(http_status("nothing"), None);
    }
}
