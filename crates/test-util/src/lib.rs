//! Fixtures and local fake servers for tracecast's tests.
//!
//! - `otlp_server.rs`: a recording OTLP/HTTP server with scripted responses.
//! - `fixtures.rs`: OTLP request builders.
//! - `s3.rs`: an in-process S3-compatible server (s3s + s3s-fs) that checks SigV4.
//! - `delay_proxy.rs`: an HTTP proxy adding latency per request and answering
//!   `503 SlowDown` on demand, in front of the S3 server; or, with no upstream, an
//!   in-memory S3 sink for benchmarks.

pub mod delay_proxy;
pub mod fixtures;
pub mod otlp_server;
pub mod s3;

pub use delay_proxy::{DelayProxy, ProxyStats, SinkStats};
pub use otlp_server::{RecordedRequest, RecordingOtlpServer, Response};
pub use s3::S3TestServer;
