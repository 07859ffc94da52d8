//! Operating the real binary: `/metrics` counters move by exactly the spans sent, the
//! probes, `/readyz` turning red when a destination stops passing its connection test,
//! and no secret in the logs or `/metrics`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use tracecast_tests::{
    fixtures, free_port, tracecast_bin, wait_for_listener, Exporter, RecordingOtlpServer, Response,
    S3TestServer, TestConfig,
};

/// A `tracecast run` with its own environment, killed on drop.
struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn spawn(dir: &std::path::Path, config: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let path = dir.join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("tracecast.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(tracecast_bin())
            .args(["run", "--config", path.to_str().unwrap()])
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (None if it did not stop within 30 s).
    async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(s)) = self.child.try_wait() {
                    return (s.code(), self.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (None, self.log())
        })
        .await
        .unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn get(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// The value of one exposition line `name{labels} value` (0 when the series is absent).
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

async fn wait_ready(admin: SocketAddr, proc: &Proc) {
    assert!(
        wait_for_listener(admin, Duration::from_secs(20)),
        "admin endpoint up: {}",
        proc.log()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = get(&format!("http://{admin}/readyz")).await;
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "never ready: {}", proc.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(addr: SocketAddr, spans: usize, token: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(fixtures::request_with_spans(spans).encode_to_vec());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_the_spans_sent_and_readyz_follows_the_destination() {
    let backend = RecordingOtlpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let cfg = TestConfig::new(port)
        .exporter(
            Exporter::otlp("otlp/backend", backend.endpoint())
                .protobuf()
                .retry_on_failure(&[("max_elapsed_time", "2s")]),
        )
        .shutdown_timeout("5s")
        .admin_port(admin_port)
        .recheck_interval("300ms")
        .yaml();
    let proc = Proc::spawn(dir.path(), &cfg, &[], &[]);
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let receiver: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_ready(admin, &proc).await;
    assert_eq!(get(&format!("http://{admin}/healthz")).await.0, 200);

    let metrics_url = format!("http://{admin}/metrics");
    let accepted = r#"tracecast_receiver_accepted_spans_total{component="otlp"}"#;
    let sent_spans = r#"tracecast_exporter_sent_spans_total{component="otlp/backend"}"#;
    let (_, before) = get(&metrics_url).await;
    const N: usize = 37;
    for chunk in [10, 10, 10, 7] {
        assert_eq!(send(receiver, chunk, None).await, 200);
    }
    backend.wait_for_spans(N, Duration::from_secs(20)).await;
    // The exporter counts after the backend answered: poll briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let (status, text) = get(&metrics_url).await;
        assert_eq!(status, 200);
        if sample(&text, sent_spans) >= sample(&before, sent_spans) + N as u64
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        sample(&after, accepted) - sample(&before, accepted),
        N as u64,
        "{after}"
    );
    assert_eq!(
        sample(&after, sent_spans) - sample(&before, sent_spans),
        N as u64,
        "{after}"
    );
    assert_eq!(backend.spans().len(), N);
    // The periodic re-test (every 300ms here) publishes a gauge per destination.
    let up = r#"tracecast_destination_up{component="otlp/backend"}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = get(&metrics_url).await;
        if sample(&text, up) == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "gauge never 1: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The destination goes away: the periodic re-test turns /readyz red within a few
    // intervals, while /healthz stays green (nothing is wrong with the process).
    backend.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = get(&format!("http://{admin}/readyz")).await;
        if status == 503 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status}: {}",
            proc.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("connection test"), "{body}");
    assert_eq!(get(&format!("http://{admin}/healthz")).await.0, 200);
    let (_, text) = get(&metrics_url).await;
    assert!(
        text.contains(r#"tracecast_destination_up{component="otlp/backend"} 0"#),
        "{text}"
    );
    let (code, log) = proc.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        log.matches("connection test failed").count(),
        1,
        "a lasting outage is logged once, not every interval:\n{log}"
    );
}

/// Secrets as they come from the environment; none may show up anywhere.
const INGEST_TOKEN: &str = "ingest-tok-7f3a9c1e55";
const WRONG_TOKEN: &str = "wrong-tok-0b8d2e4411";
const BACKEND_TOKEN: &str = "backend-tok-c4e6a82f19";
const S3_SECRET: &str = "s3-secret-91d0be77aa3c";
const S3_WRONG_SECRET: &str = "s3-wrong-secret-5e2f10c9d8";
const S3_SESSION: &str = "s3-session-tok-3a7b6c2d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_or_metrics() {
    let backend = RecordingOtlpServer::start().await;
    backend.set_default(Response::status(401).body("invalid token"));
    let s3_dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(s3_dir.path(), "AKIDTRACECAST", S3_SECRET).await;
    s3.create_bucket("traces");
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    // Every secret comes from the environment.
    let s3_exporter = |id: &str, secret: &str| {
        Exporter::s3(id, "traces", s3.endpoint(), "AKIDTRACECAST", secret)
            .region("us-east-1")
            .trace_idle_timeout("100ms")
            .max_trace_wait("500ms")
    };
    let cfg = TestConfig::new(port)
        .api_key("gw", "${env:TC_INGEST_TOKEN}")
        .exporter(
            Exporter::otlp("otlp/backend", backend.endpoint())
                .protobuf()
                .headers(&[
                    ("Authorization", "Bearer ${env:TC_BACKEND_TOKEN}"),
                    ("X-Api-Key", "${env:TC_BACKEND_TOKEN}"),
                ]),
        )
        .exporter(s3_exporter("s3", "${env:TC_S3_SECRET}"))
        .exporter(
            s3_exporter("s3/wrong", "${env:TC_S3_WRONG_SECRET}")
                .session_token("${env:TC_S3_SESSION}")
                .retry_on_failure(&[("max_elapsed_time", "1s")]),
        )
        .shutdown_timeout("5s")
        .admin_port(admin_port)
        .recheck_interval("300ms")
        .yaml();
    let proc = Proc::spawn(
        dir.path(),
        &cfg,
        // The backend answers 401 and one S3 key is wrong: start anyway, fail at export.
        &["--skip-connection-test"],
        &[
            ("RUST_LOG", "debug"),
            ("TC_INGEST_TOKEN", INGEST_TOKEN),
            ("TC_BACKEND_TOKEN", BACKEND_TOKEN),
            ("TC_S3_SECRET", S3_SECRET),
            ("TC_S3_WRONG_SECRET", S3_WRONG_SECRET),
            ("TC_S3_SESSION", S3_SESSION),
        ],
    );
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let receiver: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_for_listener(receiver, Duration::from_secs(20)),
        "{}",
        proc.log()
    );
    assert_eq!(send(receiver, 3, Some(WRONG_TOKEN)).await, 401);
    assert_eq!(send(receiver, 3, None).await, 401);
    for _ in 0..3 {
        assert_eq!(send(receiver, 4, Some(INGEST_TOKEN)).await, 200);
    }
    // The right S3 key writes files; the backend refused (401) at least once.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s3.list_keys("traces").is_empty() || backend.request_count() == 0 {
        assert!(Instant::now() < deadline, "no export: {}", proc.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few re-test rounds fail too (401, bad signature).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, metrics) = get(&format!("http://{admin}/metrics")).await;
    let (_, log) = proc.terminate().await;

    assert!(
        log.contains("DEBUG"),
        "debug logging was on (else the test proves little):\n{log}"
    );
    assert!(
        log.contains("otlp/backend") && log.contains("s3/wrong"),
        "failures were logged with their component:\n{log}"
    );
    for (what, secret) in [
        ("ingest token", INGEST_TOKEN),
        ("wrong client token", WRONG_TOKEN),
        ("backend token", BACKEND_TOKEN),
        ("S3 secret key", S3_SECRET),
        ("wrong S3 secret key", S3_WRONG_SECRET),
        ("S3 session token", S3_SESSION),
    ] {
        assert!(
            !log.contains(secret),
            "{what} in the log:\n{}",
            log.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(!metrics.contains(secret), "{what} in /metrics:\n{metrics}");
    }
}
