//! SIGHUP reload on the real binary: a valid config is taken (a new destination starts
//! receiving); an invalid config and a config whose new destination fails its connection
//! test are refused; traffic continues throughout with zero loss.

use std::net::SocketAddr;
use std::time::Duration;

use tracecast_tests::{
    fixtures, free_port, local, post_protobuf, Daemon, Exporter, RecordingOtlpServer, TestConfig,
};

/// An OTLP exporter to `endpoint` with quick retries.
fn otlp(id: &str, endpoint: &str) -> Exporter {
    Exporter::otlp(id, endpoint)
        .protobuf()
        .retry_on_failure(&[("initial_interval", "50ms"), ("max_interval", "200ms")])
}

/// The receiver on `port`, one pipeline into `exporters`.
fn config(port: u16, exporters: impl IntoIterator<Item = Exporter>) -> String {
    exporters
        .into_iter()
        .fold(
            TestConfig::new(port).shutdown_timeout("10s").admin_port(0),
            TestConfig::exporter,
        )
        .yaml()
}

async fn send(client: &reqwest::Client, addr: SocketAddr, prefix: &str, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i}");
        let req = fixtures::request_with_named_spans(&name, 1);
        let resp = post_protobuf(client, addr, &req).await.unwrap();
        assert_eq!(resp.status(), 200, "request {name} refused during reload");
        names.push(format!("{name}-0"));
    }
    names
}

async fn hup_and_wait(daemon: &Daemon, marker: &str, count: usize) -> String {
    daemon.signal("HUP");
    for _ in 0..200 {
        let log = daemon.log_text();
        if log.matches(marker).count() >= count {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {marker:?} in the log:\n{}", daemon.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_takes_valid_configs_and_refuses_bad_ones_without_loss() {
    let first = RecordingOtlpServer::start().await;
    let second = RecordingOtlpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = local(free_port());
    let path = dir.path().join("tracecast.yaml");
    let daemon = Daemon::run_config(
        dir.path(),
        "tracecast",
        &config(addr.port(), [otlp("otlp/first", &first.endpoint())]),
        &[],
        addr,
    );
    let client = reqwest::Client::new();

    let mut to_first = send(&client, addr, "a", 20).await;

    // 1. Invalid config: refused, the running one stays.
    std::fs::write(&path, "receivers: [not, a, mapping]\n").unwrap();
    let log = hup_and_wait(&daemon, "reload refused", 1).await;
    assert!(log.contains("invalid config"), "{log}");
    to_first.extend(send(&client, addr, "b", 20).await);

    // 2. A new destination that fails its connection test: refused.
    let dead = format!("http://127.0.0.1:{}/v1/traces", free_port());
    std::fs::write(
        &path,
        config(
            addr.port(),
            [
                otlp("otlp/first", &first.endpoint()),
                otlp("otlp/dead", &dead),
            ],
        ),
    )
    .unwrap();
    let log = hup_and_wait(&daemon, "reload refused", 2).await;
    assert!(log.contains("otlp/dead"), "{log}");
    to_first.extend(send(&client, addr, "c", 20).await);

    // 3. A valid config adding a reachable destination: taken.
    std::fs::write(
        &path,
        config(
            addr.port(),
            [
                otlp("otlp/first", &first.endpoint()),
                otlp("otlp/second", &second.endpoint()),
            ],
        ),
    )
    .unwrap();
    hup_and_wait(&daemon, "config reloaded", 1).await;
    let to_both = send(&client, addr, "d", 20).await;

    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    let mut expect_first: Vec<String> = to_first.iter().chain(&to_both).cloned().collect();
    expect_first.sort();
    let mut got_first = first.span_names();
    got_first.sort();
    got_first.dedup();
    assert_eq!(
        got_first, expect_first,
        "zero loss on the first destination"
    );
    let mut got_second = second.span_names();
    got_second.sort();
    let mut expect_second = to_both.clone();
    expect_second.sort();
    // The second destination only gets traffic sent after it was added (the test request
    // of the connection check carries no spans).
    assert_eq!(got_second, expect_second);
}

/// A reload that replaces a pipeline whose task is stuck on a stalled backend (its exporter
/// input full) completes within seconds; what the old task held goes back to the queue and
/// arrives once the backend answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_hang_on_a_stalled_backend() {
    let stalled = RecordingOtlpServer::start().await;
    let healthy = RecordingOtlpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = local(free_port());
    let path = dir.path().join("tracecast.yaml");
    // Long requests and a one-batch sending queue: a stalled backend holds the pipeline.
    let slow = |id: &str, endpoint: &str| otlp(id, endpoint).timeout("60s").sending_queue(1, 1);
    let daemon = Daemon::run_config(
        dir.path(),
        "tracecast",
        &config(addr.port(), [slow("otlp/stalled", &stalled.endpoint())]),
        &[],
        addr,
    );
    stalled.stall();
    let client = reqwest::Client::new();
    // More than the exporter's input (4 batches) and sending queue hold: the pipeline
    // task waits on the exporter.
    let sent = send(&client, addr, "s", 100).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    std::fs::write(
        &path,
        config(
            addr.port(),
            [
                slow("otlp/stalled", &stalled.endpoint()),
                slow("otlp/healthy", &healthy.endpoint()),
            ],
        ),
    )
    .unwrap();
    let asked = std::time::Instant::now();
    let log = hup_and_wait(&daemon, "config reloaded", 1).await;
    assert!(
        asked.elapsed() < Duration::from_secs(9),
        "reload took {:?}",
        asked.elapsed()
    );
    assert!(log.contains("goes back to the queue"), "{log}");

    stalled.release();
    let mut expect = sent.clone();
    expect.sort();
    for _ in 0..300 {
        let mut got = stalled.span_names();
        got.sort();
        got.dedup();
        if got == expect {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut got = stalled.span_names();
    got.sort();
    got.dedup();
    assert_eq!(
        got, expect,
        "every acknowledged span reaches the stalled backend"
    );
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}
