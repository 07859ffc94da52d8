//! The OpenTelemetry Rust SDK's OTLP/gRPC exporter (`opentelemetry-otlp`, tonic, gzip) sends
//! spans through tracecast's OTLP/gRPC listener to a recording backend: every span arrives
//! with its attributes intact; with a wrong token the export fails UNAUTHENTICATED.

use std::time::Duration;

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tracecast::Service;
use tracecast_tests::{free_port, RecordingOtlpServer};

async fn start(backend: &RecordingOtlpServer, grpc: u16) -> Service {
    let queue = tempfile::tempdir().unwrap().keep();
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n    \
         api_keys: [{{name: rust-sdk, token: rust-token}}]\n\
         exporters:\n  otlp:\n    endpoint: {}\n    encoding: protobuf\n    \
         retry_on_failure: {{initial_interval: 50ms, max_interval: 200ms}}\n\
         service:\n  queue_dir: {}\n  admin: {{endpoint: \"\"}}\n  pipelines:\n    traces:\n      \
         receivers: [otlp]\n      exporters: [otlp]\n",
        backend.endpoint(),
        queue.display()
    );
    let config = tracecast::load_config_str("grpc.yaml", &yaml).expect("valid config");
    Service::start(&config).await.expect("service starts")
}

/// Sends `n` spans with the SDK's tonic exporter (gzip) on its own runtime thread; returns
/// the force-flush result.
fn send(grpc: u16, token: &'static str, n: usize) -> Result<(), String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://127.0.0.1:{grpc}"))
                .with_compression(opentelemetry_otlp::Compression::Gzip)
                .with_metadata(metadata)
                .with_timeout(Duration::from_secs(10))
                .build()
                .expect("exporter");
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .build();
            let tracer = provider.tracer("tracecast-grpc-test");
            for i in 0..n {
                let mut span = tracer.start(format!("rust-grpc-{i:03}"));
                span.set_attribute(KeyValue::new("gen_ai.request.model", "openai/gpt-4o"));
                span.set_attribute(KeyValue::new("test.seq", i as i64));
                span.set_attribute(KeyValue::new("test.ratio", 0.25));
                span.set_attribute(KeyValue::new("test.flag", true));
                span.end();
            }
            let flushed = provider.force_flush().map_err(|e| e.to_string());
            let _ = provider.shutdown();
            flushed
        })
    })
    .join()
    .unwrap()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_grpc_exporter_with_gzip_delivers_every_span_intact() {
    let backend = RecordingOtlpServer::start().await;
    let grpc = free_port();
    let service = start(&backend, grpc).await;
    let result = tokio::task::spawn_blocking(move || send(grpc, "rust-token", 40))
        .await
        .unwrap();
    assert_eq!(result, Ok(()));
    let mut spans: Vec<Span> = backend
        .wait_for_spans(40, Duration::from_secs(20))
        .await
        .into_iter()
        .filter(|s| s.name.starts_with("rust-grpc-"))
        .collect();
    spans.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(spans.len(), 40);
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(s.name, format!("rust-grpc-{i:03}"));
        assert_eq!(attr(s, "test.seq"), Some(&Value::IntValue(i as i64)));
        assert_eq!(attr(s, "test.ratio"), Some(&Value::DoubleValue(0.25)));
        assert_eq!(attr(s, "test.flag"), Some(&Value::BoolValue(true)));
        assert_eq!(
            attr(s, "gen_ai.request.model"),
            Some(&Value::StringValue("openai/gpt-4o".into()))
        );
    }
    assert!(service.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_with_a_wrong_token_is_unauthenticated() {
    let backend = RecordingOtlpServer::start().await;
    let grpc = free_port();
    let service = start(&backend, grpc).await;
    let result = tokio::task::spawn_blocking(move || send(grpc, "wrong", 1))
        .await
        .unwrap();
    let err = result.expect_err("the export must fail");
    assert!(
        err.contains("Unauthenticated") || err.contains("UNAUTHENTICATED"),
        "{err}"
    );
    assert!(backend.spans().is_empty());
    assert!(service.shutdown().await);
}
