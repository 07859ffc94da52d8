//! A config copied from the OpenTelemetry Collector's documentation (`tests/testdata/
//! collector_config.yaml`: the `otlp` receiver with `protocols.grpc` and `protocols.http`,
//! an `otlp_http` exporter) validates, says which Collector alias it used, and runs: spans
//! sent over OTLP/HTTP and over OTLP/gRPC (the Python SDK) reach the backend at the Collector's URL (`endpoint` + `/v1/traces`) in protobuf, the
//! Collector's default encoding.

use std::process::Command;
use std::time::Duration;

use tracecast_tests::fixtures::request_with_named_spans;
use tracecast_tests::{
    free_port, local, post_protobuf, repo_root, run_python_script, tracecast_bin, Daemon,
    RecordingOtlpServer,
};

fn fixture() -> std::path::PathBuf {
    repo_root().join("tests/testdata/collector_config.yaml")
}

#[test]
fn validate_names_the_collector_alias() {
    let out = Command::new(tracecast_bin())
        .args(["validate", "--config"])
        .arg(fixture())
        .env("HTTP_ENDPOINT", "127.0.0.1:4318")
        .env("GRPC_ENDPOINT", "127.0.0.1:4317")
        .env("BACKEND", "http://127.0.0.1:9")
        .env("QUEUE_DIR", "/tmp/unused")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "exporters.otlp_http: type \"otlp_http\" is the Collector's name for tracecast's \"otlp\" exporter"
        ),
        "{stdout}"
    );
    assert!(stdout.contains(": valid"), "{stdout}");
}

#[test]
fn the_former_name_otlphttp_is_an_alias_too() {
    let yaml = "receivers:\n  otlp:\n    protocols:\n      http:\nexporters:\n  otlphttp/x:\n    \
                traces_endpoint: http://127.0.0.1:9/custom\n    encoding: proto\nservice:\n  \
                admin: {endpoint: \"\"}\n  pipelines:\n    traces:\n      receivers: [otlp]\n      \
                exporters: [otlphttp/x]\n";
    let config = tracecast::load_config_str("otlphttp.yaml", yaml).expect("valid");
    let id = config.exporters.keys().next().unwrap().clone();
    let exporter = config.exporters[&id]
        .get::<tracecast_exporter_otlp::OtlpExporterConfig>()
        .expect("an otlp exporter");
    assert_eq!(exporter.endpoint, "http://127.0.0.1:9/custom");
    assert_eq!(
        exporter.encoding,
        tracecast_exporter_otlp::config::Encoding::Protobuf
    );
    // A key neither the Collector nor tracecast knows is still refused, with its path.
    let bad = yaml.replace("encoding: proto", "encodng: proto");
    let err = tracecast::load_config_str("bad.yaml", &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exporters.otlphttp/x"), "{err}");
    assert!(err.contains("unknown field `encodng`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_config_runs_and_delivers() {
    let backend = RecordingOtlpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, grpc_port) = (free_port(), free_port());
    let config = dir.path().join("collector.yaml");
    std::fs::copy(fixture(), &config).unwrap();
    let daemon = {
        let log = dir.path().join("tracecast.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(tracecast_bin())
            .args(["run", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env("HTTP_ENDPOINT", format!("127.0.0.1:{port}"))
            .env("GRPC_ENDPOINT", format!("127.0.0.1:{grpc_port}"))
            .env("BACKEND", format!("http://{}", backend.addr()))
            .env("QUEUE_DIR", dir.path().join("queue"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Daemon { child, log }
    };
    assert!(
        tracecast_tests::wait_for_listener(local(port), Duration::from_secs(30)),
        "{}",
        daemon.log_text()
    );
    let client = reqwest::Client::new();
    let answer = post_protobuf(
        &client,
        local(port),
        &request_with_named_spans("collector", 3),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let spans = backend.wait_for_spans(3, Duration::from_secs(20)).await;
    assert_eq!(spans.len(), 3, "{}", daemon.log_text());
    // The same daemon over OTLP/gRPC, from the Python SDK's gRPC exporter with gzip.
    let out = run_python_script(
        "send_spans_grpc.py",
        vec![
            format!("127.0.0.1:{grpc_port}"),
            "4".into(),
            "viagrpc".into(),
            "gzip".into(),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = backend.wait_for_spans(7, Duration::from_secs(20)).await;
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.name.starts_with("viagrpc-"))
            .count(),
        4,
        "{}",
        daemon.log_text()
    );
    let request = &backend.requests()[0];
    assert_eq!(request.path, "/v1/traces");
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(request.content_encoding.as_deref(), Some("gzip"));
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}
