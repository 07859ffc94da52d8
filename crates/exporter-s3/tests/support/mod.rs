//! Helpers for the exporter tests: span builders, an exporter runner and the schema check.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tracecast_config::{Duration as CfgDuration, ValidateInto};
use tracecast_core::proto::common::v1::{any_value::Value as Av, AnyValue, KeyValue};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecast_core::{
    BatchContext, CancellationToken, ComponentId, ExportTraceServiceRequest, TraceBatch,
};
use tracecast_exporter_s3::{Delivery, RetryOnFailure, S3Exporter, S3ExporterConfig};
use tracecast_test_util::s3::S3TestServer;

pub const AK: &str = "test-access-key";
pub const SK: &str = "test-secret-key";
pub const BUCKET: &str = "traces";
/// 2024-01-15T09:40:00Z
pub const T0: u64 = 1_705_311_600;

pub fn s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Av::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub fn i(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Av::IntValue(v)),
        }),
        ..Default::default()
    }
}

pub fn d(k: &str, v: f64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Av::DoubleValue(v)),
        }),
        ..Default::default()
    }
}

/// A span of trace `[trace; 16]` with id `[id; 8]`, starting `offset_ms` after [`T0`].
pub fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    name: &str,
    offset_ms: u64,
    attrs: Vec<KeyValue>,
) -> Span {
    let start = (T0 * 1000 + offset_ms) * 1_000_000;
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 500_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

pub fn trace_hex(trace: u8) -> String {
    hex::encode([trace; 16])
}

pub fn batch(spans: Vec<Span>, api_key_name: Option<&str>) -> TraceBatch {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![s("service.name", "gateway")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut ctx = BatchContext::new("otlp");
    ctx.api_key_name = api_key_name.map(Arc::from);
    TraceBatch::new(ctx, req, None)
}

/// Config for the test server with short timeouts.
pub fn s3_config(server: &S3TestServer, dead_letter: &std::path::Path) -> S3ExporterConfig {
    S3ExporterConfig {
        bucket: Some(BUCKET.into()),
        endpoint: Some(server.endpoint()),
        access_key_id: Some(AK.into()),
        secret_access_key: Some(SK.into()),
        trace_idle_timeout: CfgDuration::from_millis(200),
        max_trace_wait: CfgDuration::from_secs(10),
        timeout: CfgDuration::from_secs(5),
        dead_letter_dir: Some(dead_letter.to_path_buf()),
        retry_on_failure: RetryOnFailure {
            initial_interval: CfgDuration::from_millis(100),
            max_interval: CfgDuration::from_millis(400),
            max_elapsed_time: CfgDuration::from_secs(60),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Validates `config` as the registry does, then builds the exporter from the result.
pub fn build(id: &str, config: &S3ExporterConfig) -> S3Exporter {
    let valid = config.validate_into().expect("a valid test config");
    S3Exporter::new(ComponentId::parse(id).unwrap(), &valid).unwrap()
}

/// A running exporter: send batches, then `finish` to close the input and collect deliveries.
pub struct Running {
    pub tx: mpsc::Sender<TraceBatch>,
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn start(config: &S3ExporterConfig) -> Self {
        Self::start_with(build("s3/test", config))
    }

    /// Runs an exporter built by the test.
    pub fn start_with(exporter: S3Exporter) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let sink = deliveries.clone();
        let task = tokio::spawn(async move {
            exporter
                .run_observed(rx, CancellationToken::new(), move |d| {
                    sink.lock().unwrap().push(d)
                })
                .await
        });
        Self {
            tx,
            deliveries,
            task,
        }
    }

    pub async fn send(&self, b: TraceBatch) {
        self.tx.send(b).await.unwrap();
    }

    /// Waits until `n` traces were delivered (any outcome).
    pub async fn wait_for(&self, n: usize) {
        for _ in 0..300 {
            if self.deliveries.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "fewer than {n} deliveries after 15s: {:?}",
            self.deliveries.lock().unwrap()
        );
    }

    pub async fn finish(self) -> Vec<Delivery> {
        drop(self.tx);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("exporter drains within 30s")
            .unwrap();
        Arc::try_unwrap(self.deliveries)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// Parses a trace file and validates it against `docs/trace-file.schema.json`.
pub fn check_schema(bytes: &[u8]) -> Value {
    let schema: Value =
        serde_json::from_str(include_str!("../../../../docs/trace-file.schema.json")).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let doc: Value = serde_json::from_slice(bytes).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "schema errors: {errors:?}\nin {doc:#}");
    doc
}

/// Reads and schema-checks every object in the bucket.
pub fn read_all(server: &S3TestServer) -> Vec<(String, Value)> {
    server
        .list_keys(BUCKET)
        .into_iter()
        .map(|k| {
            let bytes = std::fs::read(server.object_path(BUCKET, &k)).unwrap();
            let doc = check_schema(&bytes);
            (k, doc)
        })
        .collect()
}
