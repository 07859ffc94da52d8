//! Errors building an OTLP exporter. Export failures themselves are
//! [`tracecast_core::ExportError`]s (see `classify.rs`).

use std::path::PathBuf;

use tracecast_config::FieldError;

/// Why an [`crate::OtlpExporter`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtlpExporterError {
    /// The config did not pass validation (the registry normally validates first).
    #[error("invalid otlp exporter config: {}", join(.0))]
    InvalidConfig(Vec<FieldError>),
    /// `tls.ca_file` could not be read.
    #[error("cannot read tls.ca_file {}: {source}; check the path and its permissions", path.display())]
    ReadCaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `tls.ca_file` holds no usable certificate.
    #[error("tls.ca_file {} holds no usable PEM certificate ({message}); it must contain -----BEGIN CERTIFICATE----- blocks", path.display())]
    BadCaFile { path: PathBuf, message: String },
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

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}
