//! Real OTLP clients -> a running tracecast -> a recording OTLP backend.
//!
//! The OpenTelemetry Rust SDK (HTTP protobuf and HTTP JSON), the OpenTelemetry Python SDK
//! (protobuf, plain and gzip) and the Node OTLP/JSON exporter send spans to tracecast, which
//! forwards them with the `otlp` exporter in both encodings; every span must arrive with its
//! attributes intact.

use std::process::Command;
use std::time::Duration;

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tracecast::Service;
use tracecast_tests::{node_dir, run_python_script, Exporter, RecordingOtlpServer, TestConfig};

async fn start(backend: &RecordingOtlpServer, encoding: &str) -> (Service, String) {
    // Each test gets its own queue folder (kept alive for the test process's life).
    let queue_dir = tempfile::tempdir().unwrap().keep();
    let yaml = TestConfig::new(0)
        .exporter(
            Exporter::otlp("otlp/backend", backend.endpoint())
                .encoding(encoding)
                .compression("gzip")
                .retry_on_failure(&[("initial_interval", "50ms"), ("max_interval", "200ms")]),
        )
        .queue_dir(&queue_dir)
        .yaml();
    let config = tracecast::load_config_str("test.yaml", &yaml).expect("valid config");
    let service = Service::start(&config).await.expect("service starts");
    let addr = service.receiver_addr("otlp").expect("receiver address");
    (service, format!("http://{addr}/v1/traces"))
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn spans_with_prefix(spans: &[Span], prefix: &str) -> Vec<Span> {
    let mut v: Vec<Span> = spans
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .cloned()
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Sends `n` spans with the Rust SDK on a plain thread (its blocking HTTP client must not
/// run inside the test's runtime).
fn rust_sdk_send(url: String, protocol: Protocol, n: usize, prefix: &'static str) {
    std::thread::spawn(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_protocol(protocol)
            .build()
            .expect("exporter");
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        let tracer = provider.tracer("tracecast-test");
        for i in 0..n {
            let mut span = tracer.start(format!("{prefix}-{i:03}"));
            span.set_attribute(KeyValue::new("gen_ai.request.model", "openai/gpt-4o"));
            span.set_attribute(KeyValue::new("test.seq", i as i64));
            span.set_attribute(KeyValue::new("test.ratio", 0.5));
            span.set_attribute(KeyValue::new("test.flag", true));
            span.end();
        }
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .join()
    .expect("sender thread");
}

async fn assert_rust_spans(backend: &RecordingOtlpServer, prefix: &str, n: usize) {
    let all = backend.wait_for_spans(n, Duration::from_secs(20)).await;
    let spans = spans_with_prefix(&all, prefix);
    assert_eq!(spans.len(), n, "every span arrives exactly once");
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(s.name, format!("{prefix}-{i:03}"));
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.span_id.len(), 8);
        assert_eq!(
            attr(s, "gen_ai.request.model"),
            Some(&Value::StringValue("openai/gpt-4o".into()))
        );
        assert_eq!(attr(s, "test.seq"), Some(&Value::IntValue(i as i64)));
        assert_eq!(attr(s, "test.ratio"), Some(&Value::DoubleValue(0.5)));
        assert_eq!(attr(s, "test.flag"), Some(&Value::BoolValue(true)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_protobuf_in_protobuf_out() {
    let backend = RecordingOtlpServer::start().await;
    let (service, url) = start(&backend, "protobuf").await;
    tokio::task::spawn_blocking(move || rust_sdk_send(url, Protocol::HttpBinary, 25, "rs-pb"))
        .await
        .unwrap();
    assert_rust_spans(&backend, "rs-pb", 25).await;
    assert!(service.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_json_in_json_out() {
    let backend = RecordingOtlpServer::start().await;
    let (service, url) = start(&backend, "json").await;
    tokio::task::spawn_blocking(move || rust_sdk_send(url, Protocol::HttpJson, 25, "rs-json"))
        .await
        .unwrap();
    assert_rust_spans(&backend, "rs-json", 25).await;
    let req = &backend.requests()[0];
    let ct = req.content_type.clone().unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "forwarded as JSON, got {ct}"
    );
    assert!(service.shutdown().await);
}

async fn python_case(compression: &str, prefix: &str) {
    let backend = RecordingOtlpServer::start().await;
    let (service, url) = start(&backend, "protobuf").await;
    let out = run_python_script(
        "send_spans.py",
        vec![url, "30".into(), prefix.into(), compression.into()],
    )
    .await;
    assert!(
        out.status.success(),
        "python sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = backend.wait_for_spans(30, Duration::from_secs(20)).await;
    let spans = spans_with_prefix(&all, prefix);
    assert_eq!(spans.len(), 30);
    for s in &spans {
        let seq: i64 = s.name.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(attr(s, "test.seq"), Some(&Value::IntValue(seq)));
        assert_eq!(
            attr(s, "gen_ai.usage.output_tokens"),
            Some(&Value::IntValue(40 + seq))
        );
        assert_eq!(attr(s, "test.ratio"), Some(&Value::DoubleValue(0.5)));
    }
    assert!(service.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_protobuf() {
    python_case("none", "py-plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_protobuf_gzip() {
    python_case("gzip", "py-gzip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_otlp_json_client() {
    let backend = RecordingOtlpServer::start().await;
    let (service, url) = start(&backend, "json").await;
    let dir = node_dir();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("send_spans.js")
            .args([url.as_str(), "10", "node"])
            .current_dir(dir)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "node sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = backend.wait_for_spans(10, Duration::from_secs(20)).await;
    let spans = spans_with_prefix(&all, "node");
    assert_eq!(spans.len(), 10);
    for s in &spans {
        let seq: i64 = s.name.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(attr(s, "test.seq"), Some(&Value::IntValue(seq)));
        assert_eq!(
            attr(s, "gen_ai.usage.input_tokens"),
            Some(&Value::IntValue(12 + seq))
        );
        assert_eq!(
            attr(s, "gen_ai.usage.input_cost"),
            Some(&Value::DoubleValue(0.25))
        );
        assert_eq!(attr(s, "test.flag"), Some(&Value::BoolValue(true)));
        assert!(matches!(attr(s, "test.list"), Some(Value::ArrayValue(a)) if a.values.len() == 2));
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.events[0].name, "chunk");
    }
    assert!(service.shutdown().await);
}
