//! The `otlp` exporter: forwards batches to an OTLP/HTTP backend (Axiom, Honeycomb, Tempo,
//! Jaeger, another Collector) as OTLP/JSON or protobuf, gzip-compressed, with the shared
//! retry loop acting on a Collector-style error classification.
//!
//! - `config.rs`: [`OtlpExporterConfig`] (the YAML section), defaults, and validation into
//!   [`ValidOtlpExporterConfig`] (endpoint, headers and TLS files parsed once).
//! - `exporter.rs`: [`OtlpExporter`]: sending queue, consumers, one export per batch,
//!   the connection test.
//! - `encode.rs`: encoding (protobuf reuses the received bytes) and compression, done once
//!   per batch.
//! - `classify.rs`: HTTP status / transport failure -> retryable or permanent, `Retry-After`,
//!   the backend's message, `partial_success`.
//! - `dead_letter.rs`: the local folder for batches rejected for good or out of retries.
//! - `resend.rs`: `tracecast dead-letters resend`: those batches through the exporter again.
//! - `error.rs`: [`OtlpExporterError`], why a client could not be set up.
//!
//! Delivery tokens ([`tracecast_core::ack`]): a batch's [`Claims`](tracecast_core::ack::Claims)
//! are held until its export is final (delivered, or kept in the dead-letter folder), so
//! its queue entries are acknowledged only then. At the hard stop, every batch not
//! delivered (in flight, in the sending queue, or still arriving) is abandoned: its entries
//! stay queued and are replayed at the next start. A batch whose dead-letter write fails
//! too is not delivered: its claims are dropped unsettled and the pipeline retries it.

pub mod classify;
pub mod config;
pub mod dead_letter;
pub mod encode;
pub mod error;
pub mod exporter;
pub mod resend;

pub use config::{
    ClientTls, Compression, Encoding, OtlpExporterConfig, RetryOnFailure, SendingQueue,
    ValidOtlpExporterConfig,
};
pub use error::{OtlpExporterError, ResendError};
pub use exporter::OtlpExporter;
