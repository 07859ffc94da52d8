//! Shared set-up of the hot-path benchmarks (`benches/hot_paths.rs`), kept here so it is
//! compiled and tested like other code: the gateway-like payload in its three forms, the
//! processor chain, and the S3 trace-document build.
//!
//! Files: `lib.rs` only; the payload builder itself is `tracecast_loadgen::payload`, the
//! same one the load generator sends.

use std::time::Duration;

use tracecast_config::ValidateInto;
use tracecast_core::{BatchContext, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};
use tracecast_exporter_s3::assembly::{Assembler, AssemblyLimits};
use tracecast_exporter_s3::document;
use tracecast_loadgen::{build_request, encode, Encoding, PayloadSpec};
use tracecast_processors::{
    MetadataProcessor, MetadataProcessorConfig, PrivacyProcessor, PrivacyProcessorConfig,
};

/// One payload in every form the benchmarks need.
pub struct Fixture {
    pub spec: PayloadSpec,
    pub request: ExportTraceServiceRequest,
    pub protobuf: Vec<u8>,
    pub json: Vec<u8>,
}

impl Fixture {
    /// Builds the payload of `spec` (seeded: the same bytes on every run).
    pub fn new(spec: PayloadSpec) -> Self {
        let request = build_request(&spec, &mut fastrand_rng(spec.seed));
        Self {
            protobuf: encode(&request, Encoding::Protobuf),
            json: encode(&request, Encoding::Json),
            request,
            spec,
        }
    }

    /// Spans in the payload.
    pub fn spans(&self) -> u64 {
        self.spec.spans_per_request as u64
    }

    /// A batch as the receiver hands it on (decoded request plus the received bytes).
    pub fn batch(&self) -> TraceBatch {
        TraceBatch::new(
            BatchContext::new("otlp"),
            self.request.clone(),
            Some(bytes::Bytes::from(self.protobuf.clone())),
        )
    }
}

fn fastrand_rng(seed: u64) -> tracecast_loadgen::payload::Rng {
    tracecast_loadgen::payload::Rng::with_seed(seed)
}

/// `metadata` then `privacy`, with default configs, as a pipeline would run them.
pub fn processors() -> Vec<Box<dyn Processor>> {
    let metadata = MetadataProcessor::new(
        ComponentId::parse("metadata").expect("valid id"),
        MetadataProcessorConfig::default(),
    );
    let privacy = PrivacyProcessor::new(
        ComponentId::parse("privacy").expect("valid id"),
        PrivacyProcessorConfig::default()
            .validate_into()
            .expect("default privacy config is valid"),
    );
    vec![Box::new(metadata), Box::new(privacy)]
}

/// Runs `batch` through `chain`, returning what comes out of the last processor.
pub fn run_chain(chain: &mut [Box<dyn Processor>], batch: TraceBatch) -> Vec<TraceBatch> {
    let mut current = vec![batch];
    for p in chain.iter_mut() {
        let mut out = Vec::with_capacity(current.len());
        for b in current.drain(..) {
            p.process(b, &mut out);
        }
        current = out;
    }
    current
}

/// The S3 exporter's work for one batch: group spans by trace, build each trace's
/// document and serialise it. Returns the JSON files.
pub fn trace_files(batch: &TraceBatch) -> Vec<Vec<u8>> {
    let mut assembler = Assembler::new(AssemblyLimits {
        idle_timeout: Duration::from_secs(2),
        max_wait: Duration::from_secs(30),
        max_spans: 1_000_000,
        max_bytes: 1 << 30,
    });
    let mut traces = Vec::new();
    assembler.ingest(batch, tokio::time::Instant::now(), &mut traces);
    assembler.take_all(&mut traces);
    traces
        .iter()
        .filter_map(|t| serde_json::to_vec(&document::build(t, None)).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracecast_core::proto::common::v1::any_value;

    #[test]
    fn chain_strips_content_and_files_cover_every_trace() {
        let fx = Fixture::new(PayloadSpec::default());
        let out = run_chain(&mut processors(), fx.batch());
        let spans: Vec<_> = out
            .iter()
            .flat_map(|b| b.request().resource_spans.clone())
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect();
        assert_eq!(spans.len(), 10);
        // Privacy Mode removed the prompt content.
        let has_prompt = spans.iter().flat_map(|s| &s.attributes).any(|kv| {
            kv.key == "gen_ai.prompt"
                && matches!(
                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(any_value::Value::StringValue(s)) if s.len() > 100
                )
        });
        assert!(!has_prompt);

        let files = trace_files(&fx.batch());
        assert_eq!(files.len(), 5, "10 spans in traces of 2");
        let doc: serde_json::Value = serde_json::from_slice(&files[0]).unwrap();
        assert_eq!(doc["observations"].as_array().unwrap().len(), 2);
    }
}
