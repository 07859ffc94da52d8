//! Shared helpers for the exporter's tests: configs pointed at a recording server and a
//! driver that runs the exporter over a channel until it drains.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tracecast_config::{Duration as ConfigDuration, ValidateInto};
use tracecast_core::metrics::{self, component, reason};
use tracecast_core::{
    BatchContext, CancellationToken, ComponentId, ExportTraceServiceRequest, Exporter, TraceBatch,
};
use tracecast_exporter_otlp::{OtlpExporter, OtlpExporterConfig, RetryOnFailure};

/// One temporary folder for this test binary's dead letters (never the crate folder).
static DEAD_LETTERS: LazyLock<tempfile::TempDir> =
    LazyLock::new(|| tempfile::tempdir().expect("temporary folder"));

/// A fresh dead-letter folder under the test binary's temporary folder.
pub fn dead_letter_dir(name: &str) -> PathBuf {
    DEAD_LETTERS.path().join(name)
}

/// A config for `endpoint` with short retry waits, so retry tests take well under a second
/// per retry while still going through real sockets and the real retry loop.
pub fn config(endpoint: &str) -> OtlpExporterConfig {
    OtlpExporterConfig {
        endpoint: endpoint.to_string(),
        timeout: ConfigDuration::from_secs(5),
        retry_on_failure: RetryOnFailure {
            initial_interval: ConfigDuration::from_millis(50),
            max_interval: ConfigDuration::from_millis(100),
            max_elapsed_time: ConfigDuration::from_secs(10),
            ..Default::default()
        },
        dead_letter_dir: Some(dead_letter_dir(&format!("exporter-{}", fastrand_suffix()))),
        ..Default::default()
    }
}

/// A process-unique suffix, so configs built in parallel tests get distinct folders.
fn fastrand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A batch as the receiver makes it: the decoded request plus the received protobuf bytes.
pub fn batch(request: ExportTraceServiceRequest) -> TraceBatch {
    let bytes = request.encode_to_vec();
    TraceBatch::new(BatchContext::new("otlp"), request, Some(bytes.into()))
}

/// Validates `config` as the registry does, then builds exporter `id` from the result.
pub fn build(id: &str, config: &OtlpExporterConfig) -> OtlpExporter {
    let valid = config.validate_into().expect("a valid test config");
    OtlpExporter::new(ComponentId::parse(id).unwrap(), &valid).unwrap()
}

/// Runs an exporter over `batches` until its input is closed and drained.
pub async fn export(id: &str, config: OtlpExporterConfig, batches: Vec<TraceBatch>) {
    let exporter = build(id, &config);
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(Box::new(exporter).run(rx, CancellationToken::new()));
    for b in batches {
        tx.send(b).await.unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the exporter drains and returns")
        .unwrap();
}

pub fn exported(id: &str) -> u64 {
    metrics::SPANS_EXPORTED.get_or_create(&component(id)).get()
}

pub fn failed(id: &str, why: &str) -> u64 {
    metrics::SPANS_FAILED.get_or_create(&reason(id, why)).get()
}

pub fn retries(id: &str) -> u64 {
    metrics::EXPORT_RETRIES.get_or_create(&component(id)).get()
}
