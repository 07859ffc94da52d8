//! The contracts every tracecast component is built against.
//!
//! - `ack.rs`: [`ack::DeliveryToken`], how the durable queue learns an entry was delivered,
//!   and [`ack::Claims`], the tokens a component holds while it delivers.
//! - `batch.rs`: [`TraceBatch`], the unit that flows from receivers through processors to
//!   exporters, and its [`BatchContext`].
//! - `component.rs`: the [`Receiver`], [`Processor`], [`Exporter`] and [`BatchSink`] traits
//!   (one per component kind) and the lifecycle they share.
//! - `id.rs`: [`ComponentId`], the validated `type[/name]` identifier.
//! - `error.rs`: [`ExportError`] (permanent vs retryable), [`SubmitError`] and [`BindError`].
//! - `retry.rs`: the one retry loop every exporter uses, driven by [`ExportError`].
//! - `otlp_json/`: the OTLP/JSON codec for export requests and responses (decode what real
//!   clients send, encode what backends expect).
//! - `metrics.rs`: counters shared by components (scraped by the admin endpoint).
//! - `spool.rs`: bounded folders (dead letters, quarantine): the oldest files go first.
//! - `dead_letter.rs`: the dead-letter store every exporter uses (folder, naming rule,
//!   reason file, bound).
//! - `gzip.rs`: the one gzip writer every exporter uses.
//! - `genai/`: prompt and completion content of a span as chat messages, from every content
//!   convention (the trace file's `input` / `output`; [`genai::request_text`] for processors).
//! - `activity.rs`: each exporter's last files, exports and failed attempts (status page).
//! - `background.rs`: a few threads for CPU-heavy work after the acknowledgement.

pub mod ack;
pub mod activity;
pub mod background;
pub mod batch;
pub mod component;
pub mod dead_letter;
pub mod error;
pub mod genai;
pub mod gzip;
pub mod id;
pub mod metrics;
pub mod otlp_json;
pub mod retry;
pub mod spool;

pub use batch::{BatchContext, TraceBatch};
pub use component::{BatchSink, BoundReceiver, Exporter, Processor, Receiver, RunningReceiver};
pub use error::{BindError, ExportError, SubmitError};
pub use id::{ComponentId, ComponentKind};

/// Re-export of the OTLP protobuf types so components name one version.
pub use opentelemetry_proto::tonic as proto;
pub use proto::collector::trace::v1::ExportTraceServiceRequest;

/// Cancellation used for every component lifecycle.
pub use tokio_util::sync::CancellationToken;

/// The message of a caught panic (`catch_unwind`'s payload), for the log line that says
/// which component panicked. Also right when given `&payload` where the payload is a
/// `Box<dyn Any + Send>` (which coerces to the box itself as the `Any`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(inner) = payload.downcast_ref::<Box<dyn std::any::Any + Send>>() {
        panic_message(&**inner)
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}
