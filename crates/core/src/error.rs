//! Errors shared across components.

use std::time::Duration;

/// How an export attempt failed. The shared retry loop ([`crate::retry`]) acts on this
/// classification alone: retryable errors are retried with backoff (honouring
/// `retry_after`), permanent ones never are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The destination may accept the same data later (429, 502, 503, 504, connection
    /// errors, timeouts, S3 throttling).
    #[error("{message}")]
    Retryable {
        message: String,
        /// Wait the destination asked for (`Retry-After`), if any.
        retry_after: Option<Duration>,
    },
    /// The destination will never accept this data (other 4xx, bad credentials, ...).
    #[error("{message}")]
    Permanent { message: String },
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        ExportError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ExportError::Permanent {
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, ExportError::Retryable { .. })
    }
}

/// Why a pipeline did not take a batch. The receiver turns this into an OTLP status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// A queue on the way is at its bound; the client should retry after the given time.
    #[error("the pipeline is full; retry after {}s", retry_after.as_secs())]
    Full { retry_after: Duration },
    /// tracecast cannot store the data right now (shutting down, disk full, ...).
    #[error("unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Duration,
    },
}

/// Why a receiver could not take its listener. Each receiver crate has its own error (with
/// the address, the cause and a hint); the runtime only reports it, so it travels boxed.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BindError(pub Box<dyn std::error::Error + Send + Sync>);
