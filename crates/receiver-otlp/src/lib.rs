//! The `otlp` receiver: OTLP/HTTP (`POST /v1/traces`, protobuf or JSON) and OTLP/gRPC
//! (`TraceService/Export`) traces in, optionally gzip/deflate/zstd, optionally over TLS,
//! [`tracecast_core::TraceBatch`]es out to a [`tracecast_core::BatchSink`], and the OTLP
//! status code for every failure.
//!
//! A request is answered 200 only after the sink took its batch, so nothing is dropped
//! silently: a full pipeline is 429 (gRPC: `UNAVAILABLE` with `RetryInfo`), an unavailable
//! one 503, both with `Retry-After`.
//!
//! - `config.rs`: [`OtlpReceiverConfig`] (YAML shape, defaults, validation).
//! - `server.rs`: [`OtlpReceiver`] / [`BoundReceiver`] / [`RunningReceiver`]: listener (bound
//!   before it serves, or taken over from a running receiver on reload), connections, graceful stop.
//! - `grpc.rs`: OTLP/gRPC `TraceService/Export` (framing, `grpc-encoding`, status codes
//!   with `RetryInfo`), sharing `handler.rs`'s path after the framing.
//! - `handler.rs`: one request from concurrency slot to answer, and its metrics and logs.
//! - `decode.rs`: content type and encoding, size limits (declared, received,
//!   decompressed), bounded decompression (gzip, deflate, zstd), decoding, invalid-id
//!   filtering.
//! - `limits.rs`: the bounds on what one request may decode to (span count, decoded size,
//!   custom trace id length, trace metadata size), all checked before the answer (413).
//! - `prescan.rs`: the allocation-free pass over a protobuf body that counts its spans and
//!   estimates its decoded size before prost decodes it.
//! - `protocols.rs`: the Collector's `protocols: {http, grpc}` shape and the flat HTTP
//!   shorthand, resolved into one [`config::Listen`] per listener.
//! - `cors.rs`: CORS for browser exporters (preflight, allowed origins with wildcards).
//! - `tls.rs`: rustls on a listener (optionally mutual), certificates re-read when their
//!   files change.
//! - `auth.rs`: named bearer-token keys compared in constant time.
//! - `status.rs`: the success (`ExportTraceServiceResponse`) and failure
//!   (`google.rpc.Status`) bodies in the request's encoding.
//! - `error.rs`: [`ReceiverError`] (start-up) and [`RequestError`] (one refused request, with
//!   its status code, rpc code and metric reason).

mod auth;
pub mod config;
mod cors;
mod decode;
pub mod error;
mod grpc;
mod handler;
mod limits;
mod prescan;
mod protocols;
mod server;
mod status;
mod tls;

pub use config::{ApiKey, OtlpReceiverConfig, Protocol};
pub use cors::CorsConfig;
pub use error::{ReceiverError, RequestError, RequestLimit};
pub use server::{BoundReceiver, OtlpReceiver, RunningReceiver};
pub use status::Status;
pub use tls::TlsServerConfig;

/// The request decode path (gRPC framing, decompression, decoding, invalid-id filtering),
/// for the fuzz targets in `fuzz/` and the corpus replay test only: not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::decode::{
        decode, decode_within, decompress, drop_invalid_links, drop_invalid_spans, BodyEncoding,
        ContentEncoding, InflateBudget, Rejected, Reserved,
    };
    pub use crate::grpc::{frame, message_encoding, unframe, unframe_message};
    pub use crate::limits::Limits;
    pub use crate::prescan::{scan, Shape};
}
