//! The `s3` exporter: one JSON file per trace on S3-compatible storage (AWS S3, R2, MinIO)
//! or a local folder, through `object_store`.
//!
//! Files:
//! - `config.rs`: [`S3ExporterConfig`] (the YAML section), defaults, and validation into
//!   [`ValidS3ExporterConfig`] (destination, path template and TLS files parsed once).
//! - `key.rs`: the `path_template` parser and the pure object-key builder.
//! - `assembly.rs`: groups spans by trace across batches and decides when a trace is due.
//! - `mapping.rs`: span attributes (`gen_ai.*`, metadata processor keys) to observation fields.
//! - `metrics.rs`: the exporter's own metric families (traces held, objects written).
//! - `values.rs`: OTLP values as JSON (content strings holding JSON embedded as JSON).
//! - `document.rs`: the trace file's JSON document (schema in `docs/trace-file.schema.json`).
//! - `observation.rs`: one observation of the file (a span or span event) and its fields.
//! - `upload.rs`: the store (S3 or local), create-only writes with distinct names on clashes,
//!   and the local dead-letter folder.
//! - `exporter.rs`: [`S3Exporter`]: run loop, concurrent uploads with the shared retry loop,
//!   and the PutObject-only connection test (one fixed probe object, overwritten).
//! - `error.rs`: build errors and the classification of store failures into plain words.

pub mod assembly;
pub mod config;
pub mod document;
pub mod error;
pub mod exporter;
pub mod key;
pub mod mapping;
pub mod metrics;
pub mod observation;
pub mod upload;
pub mod values;

pub use config::{ClientTls, Compression, RetryOnFailure, S3ExporterConfig, ValidS3ExporterConfig};
pub use error::{S3ExporterError, StoreProblem};
pub use exporter::{Delivery, S3Exporter};
