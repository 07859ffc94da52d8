//! `tracecast-loadgen`: a load generator for OTLP/HTTP trace receivers (in the spirit of
//! the Collector's `telemetrygen`) and a counting sink, so one run reports throughput,
//! latency, refusals and loss. The payload builder is shared with `crates/bench`.
//!
//! Files:
//! - `payload.rs`: gateway-like requests ([`PayloadSpec`], [`build_request`]).
//! - `body.rs`: encoding (protobuf/JSON), gzip, and per-request bodies with fresh trace ids.
//! - `generate.rs`: the load run over N keep-alive connections, fixed rate or saturation.
//! - `sink.rs`: the minimal OTLP/HTTP sink that counts requests, bytes and spans.
//! - `report.rs`: the human table and the `--json` report.
//! - `cli.rs`: command-line options and the two modes (generate, `--sink`).

pub mod body;
pub mod cli;
pub mod generate;
pub mod payload;
pub mod report;
pub mod sink;

pub use body::{encode, BodySource, Encoding};
pub use payload::{build_request, gzip, PayloadSpec};
