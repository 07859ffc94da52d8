//! `/metrics` of the real binary carries exact values for the queue, the S3 exporter's
//! assembly and objects, export latency, dead letters and the build: N spans in K traces go
//! through one pipeline to an OTLP backend and an S3 server, and every number is checked
//! against what the backends actually received.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracecast_core::proto::trace::v1::Span;
use tracecast_tests::fixtures::{child_span, request_from_spans, span};
use tracecast_tests::{
    free_port, local, post_protobuf, Daemon, Exporter, RecordingOtlpServer, Response, S3TestServer,
    TestConfig,
};

const AK: &str = "metrics-access-key";
const SK: &str = "metrics-secret-key";

/// The value of the exposition line `series value` (None when the series is absent).
fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
}

async fn scrape(admin: SocketAddr) -> String {
    let resp = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// Scrapes until `series` has `want`; returns that scrape (fails after 20 s).
async fn wait_for(admin: SocketAddr, daemon: &Daemon, series: &str, want: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(admin).await;
        if sample(&text, series) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {want}:\n{text}\nlog:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(receiver: SocketAddr, spans: Vec<Span>) {
    let req = request_from_spans(spans);
    let resp = post_protobuf(&reqwest::Client::new(), receiver, &req).await;
    assert_eq!(resp.unwrap().status(), 200);
}

/// A trace of `n` spans: the root first, then its children.
fn trace(n: usize) -> Vec<Span> {
    let root = span("root");
    let mut spans = vec![root.clone()];
    spans.extend((1..n).map(|i| child_span(&root, &format!("child-{i}"))));
    spans
}

/// Export requests the backend saw (connection tests excluded).
fn export_requests(backend: &RecordingOtlpServer) -> u64 {
    backend
        .requests()
        .iter()
        .filter(|r| r.header("x-test-connection").is_none())
        .count() as u64
}

/// Trace files in the bucket (connection probes excluded).
fn trace_files(s3: &S3TestServer) -> Vec<String> {
    s3.list_keys("traces")
        .into_iter()
        .filter(|k| !k.contains("/.tracecast/") && !k.starts_with(".tracecast/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_exact_queue_assembly_objects_latency_and_build() {
    let backend = RecordingOtlpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket("traces");
    let (port, admin_port) = (free_port(), free_port());
    let cfg = TestConfig::new(port)
        .exporter(Exporter::otlp("otlp/backend", backend.endpoint()).protobuf())
        .exporter(
            Exporter::s3("s3", "traces", s3.endpoint(), AK, SK)
                .region("us-east-1")
                .trace_idle_timeout("2s")
                .max_trace_wait("60s"),
        )
        .shutdown_timeout("5s")
        .admin_port(admin_port)
        .recheck_interval("1h")
        .yaml();
    let admin = local(admin_port);
    let receiver = local(port);
    let daemon = Daemon::run_config(dir.path(), "config", &cfg, &[], receiver);

    // K = 5 traces of 2..=6 spans (N = 20) in R = 4 requests; trace 3 is split over two.
    let traces: Vec<Vec<Span>> = (2..=6).map(trace).collect();
    let (k, n) = (traces.len() as u64, 20u64);
    let mut t3 = traces[3].clone();
    let t3_rest = t3.split_off(2);
    let requests = [
        [traces[0].clone(), traces[1].clone()].concat(),
        traces[2].clone(),
        t3,
        [t3_rest, traces[4].clone()].concat(),
    ];
    let r = requests.len() as u64;
    for req in requests {
        post(receiver, req).await;
    }

    // Every request was appended to the pipeline's queue exactly once (refreshed each
    // second), and while the traces wait out the 2 s idle timeout all K are held.
    let q = r#"{pipeline="traces"}"#;
    wait_for(
        admin,
        &daemon,
        &format!("tracecast_queue_appends_total{q}"),
        r,
    )
    .await;
    let held = r#"tracecast_s3_traces_held{component="s3"}"#;
    wait_for(admin, &daemon, held, k).await;

    backend
        .wait_for_spans(n as usize, Duration::from_secs(20))
        .await;
    let objects = r#"tracecast_s3_objects_written_total{component="s3"}"#;
    let text = wait_for(admin, &daemon, objects, k).await;
    assert_eq!(
        trace_files(&s3).len() as u64,
        k,
        "{:?}",
        s3.list_keys("traces")
    );
    // The OTLP exporter counts after the backend answered: poll its counter too.
    let sent_otlp = r#"tracecast_exporter_sent_spans_total{component="otlp/backend"}"#;
    let text = if sample(&text, sent_otlp) == Some(n) {
        text
    } else {
        wait_for(admin, &daemon, sent_otlp, n).await
    };
    let sent_s3 = r#"tracecast_exporter_sent_spans_total{component="s3"}"#;
    assert_eq!(sample(&text, sent_s3), Some(n), "{text}");
    assert_eq!(sample(&text, held), Some(0), "{text}");

    // One latency observation per export request (no retries here), none for the
    // connection tests.
    let hist = "tracecast_exporter_request_duration_seconds";
    let otlp_requests = export_requests(&backend);
    assert_eq!(otlp_requests, r, "one export per queue entry");
    assert_eq!(
        sample(
            &text,
            &format!(r#"{hist}_count{{component="otlp/backend"}}"#)
        ),
        Some(otlp_requests),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!(r#"{hist}_count{{component="s3"}}"#)),
        Some(k),
        "{text}"
    );
    assert!(
        text.contains(&format!(r#"{hist}_bucket{{le="+Inf",component="s3"}} {k}"#)),
        "{text}"
    );
    assert!(text.contains(&format!("# TYPE {hist} histogram")), "{text}");

    // Delivered everywhere: the queue drains to 0 entries (the gauge refreshes each second).
    let text = wait_for(admin, &daemon, &format!("tracecast_queue_entries{q}"), 0).await;
    assert!(sample(&text, &format!("tracecast_queue_bytes{q}")).unwrap() > 0);
    let fsyncs = sample(&text, &format!("tracecast_queue_fsyncs_total{q}")).unwrap();
    // fsync: always, and the requests came one after another: one fsync per append (each
    // its own write group) plus one for the new segment file.
    assert_eq!(fsyncs, r + 1, "{text}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            &text,
            &format!(r#"tracecast_build_info{{version="{version}"}}"#)
        ),
        Some(1),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"tracecast_dead_letters_total{component="otlp/backend"}"#
        ),
        None,
        "nothing dead-lettered: {text}"
    );
    daemon.signal("TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_and_an_unwritable_trace_are_one_dead_letter_each() {
    let backend = RecordingOtlpServer::start().await;
    backend.set_default(Response::status(400).body("bad span"));
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket("traces");
    let (port, admin_port) = (free_port(), free_port());
    let cfg = TestConfig::new(port)
        .exporter(Exporter::otlp("otlp/backend", backend.endpoint()).protobuf())
        .exporter(
            Exporter::s3("s3/wrong", "traces", s3.endpoint(), AK, "not-the-secret")
                .region("us-east-1")
                .trace_idle_timeout("100ms")
                .max_trace_wait("5s")
                .retry_on_failure(&[("max_elapsed_time", "1s")]),
        )
        .shutdown_timeout("5s")
        .admin_port(admin_port)
        .recheck_interval("1h")
        .yaml();
    // The S3 key is wrong: start anyway and fail at export.
    let admin = local(admin_port);
    let receiver = local(port);
    let daemon = Daemon::run_config(
        dir.path(),
        "config",
        &cfg,
        &["--skip-connection-test"],
        receiver,
    );
    post(receiver, trace(3)).await;

    let dl = |c: &str| format!(r#"tracecast_dead_letters_total{{component="{c}"}}"#);
    let text = wait_for(admin, &daemon, &dl("otlp/backend"), 1).await;
    assert_eq!(
        sample(
            &text,
            r#"tracecast_exporter_failed_spans_total{component="otlp/backend",reason="permanent"}"#
        ),
        Some(3),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"tracecast_exporter_request_duration_seconds_count{component="otlp/backend"}"#
        ),
        Some(1),
        "a 400 is not retried: one attempt"
    );
    let text = wait_for(admin, &daemon, &dl("s3/wrong"), 1).await;
    let attempts = sample(
        &text,
        r#"tracecast_exporter_request_duration_seconds_count{component="s3/wrong"}"#,
    )
    .unwrap();
    let retries = sample(
        &text,
        r#"tracecast_exporter_retries_total{component="s3/wrong"}"#,
    )
    .unwrap_or(0);
    assert_eq!(attempts, retries + 1, "every attempt observed once: {text}");
    assert_eq!(
        sample(
            &text,
            r#"tracecast_s3_objects_written_total{component="s3/wrong"}"#
        ),
        None,
        "{text}"
    );
    assert!(trace_files(&s3).is_empty());
    let kept = std::fs::read_dir(dir.path().join("tracecast-data/dead-letter/otlp_backend"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pb")
        })
        .count();
    assert_eq!(kept, 1, "the counted batch is in the folder");
    // Both dead letters settle the entry: the queue drains.
    wait_for(
        admin,
        &daemon,
        r#"tracecast_queue_entries{pipeline="traces"}"#,
        0,
    )
    .await;
    daemon.signal("TERM");
}
