//! Errors building an OTLP exporter. Export failures themselves are
//! [`tracecast_core::ExportError`]s (see `classify.rs`).

/// Why an [`crate::OtlpExporter`] could not be built from its validated config: never a
/// config problem (validation reports those), only the TLS stack refusing to start, or a
/// client certificate whose key does not match it.
#[derive(Debug, thiserror::Error)]
pub enum OtlpExporterError {
    /// The HTTP client could not be set up (e.g. no TLS roots available).
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// Why `tracecast dead-letters resend` stopped for an `otlp` exporter (what was not sent
/// stays in its dead-letter folder).
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    #[error(transparent)]
    Build(OtlpExporterError),
    #[error("dead-letter folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("the exporter task failed: {0}")]
    Task(String),
}
