//! Restarts, reloads and stops at the worst moments, on the real binary:
//!
//! - a restart (`kill -9`, three times) during an OTLP and S3 outage starts on the taken
//!   config and loses nothing once the backends heal;
//! - a changed destination that fails its test is refused at start and on SIGHUP;
//! - SIGTERM during a reload that tests a hanging destination exits within the deadline;
//! - a reload to a port in use changes nothing; a reload to a free port or with new receiver
//!   settings never leaves a moment without a listener;
//! - an S3 exporter checked every 200 ms writes one probe object, outside the trace folders;
//! - a second SIGTERM while draining exits at once; the backlog is delivered after a restart.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message;
use tracecast_tests::{
    fixtures, free_port, local, wait_for_listener, Daemon, Exporter, RecordingOtlpServer, Response,
    S3TestServer, TestConfig,
};

const AK: &str = "restart-access-key";
const SK: &str = "restart-secret-key";
const BUCKET: &str = "traces";

/// Exporters of a test config.
struct Destinations<'a> {
    otlp: Option<&'a str>,
    s3: Option<&'a str>,
}

/// A config with one pipeline into the given destinations; the admin endpoint on
/// `admin` with `recheck_interval`.
fn config(
    port: u16,
    admin: u16,
    dest: &Destinations<'_>,
    queue: &Path,
    recheck: &str,
    shutdown_timeout: &str,
) -> TestConfig {
    // Quick retries for ten minutes: an outage in these tests never ends in a dead letter.
    let retry = [
        ("initial_interval", "50ms"),
        ("max_interval", "300ms"),
        ("max_elapsed_time", "600s"),
    ];
    let mut config = TestConfig::new(port)
        .shutdown_timeout(shutdown_timeout)
        .queue_dir(queue)
        .admin_port(admin)
        .recheck_interval(recheck);
    if let Some(endpoint) = dest.otlp {
        config = config.exporter(
            Exporter::otlp("otlp/backend", endpoint)
                .protobuf()
                .timeout("2s")
                .retry_on_failure(&retry),
        );
    }
    if let Some(endpoint) = dest.s3 {
        config = config.exporter(
            Exporter::s3("s3", BUCKET, endpoint, AK, SK)
                .path_template("archive/{date}")
                .trace_idle_timeout("100ms")
                .max_trace_wait("2s")
                .timeout("2s")
                .retry_on_failure(&retry),
        );
    }
    config
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Sends one one-span request named `<name>`; returns the span name when acknowledged.
async fn send(client: &reqwest::Client, addr: SocketAddr, name: &str) -> Option<String> {
    send_why(client, addr, name)
        .await
        .ok()
        .map(|()| format!("{name}-0"))
}

/// Like [`send`], with why a request was not accepted (the status and body, or the error).
async fn send_why(client: &reqwest::Client, addr: SocketAddr, name: &str) -> Result<(), String> {
    let body = fixtures::request_with_named_spans(name, 1).encode_to_vec();
    let resp = client
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    Err(format!(
        "{status} {}",
        resp.text().await.unwrap_or_default()
    ))
}

/// Waits until the daemon's log holds `marker` `count` times.
async fn wait_log(daemon: &Daemon, marker: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = daemon.log_text();
        if log.matches(marker).count() >= count {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {marker:?} in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the process to exit (off the runtime); returns the code and how long it took.
async fn wait_exit(mut daemon: Daemon, timeout: Duration) -> (Option<i32>, Duration, String) {
    let start = Instant::now();
    tokio::task::spawn_blocking(move || {
        let code = daemon.wait_exit(timeout);
        (code, start.elapsed(), daemon.log_text())
    })
    .await
    .unwrap()
}

/// Span names in the S3 trace files.
fn s3_span_names(s3: &S3TestServer) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for key in s3.list_keys(BUCKET) {
        let Ok(text) = std::fs::read_to_string(s3.object_path(BUCKET, &key)) else {
            continue;
        };
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        for obs in doc["observations"].as_array().into_iter().flatten() {
            if let Some(name) = obs["name"].as_str() {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// Runs `tracecast` on `config`, written to `<dir>/tracecast.yaml` (where a reload reads it).
fn start(dir: &Path, config: &TestConfig, addr: SocketAddr) -> Daemon {
    Daemon::run_config(dir, "tracecast", &config.yaml(), &[], addr)
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("tracecast.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_an_outage_starts_on_the_taken_config_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let mut s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket(BUCKET);
    let (port, admin) = (free_port(), free_port());
    let addr = local(port);
    let (otlp_url, s3_url) = (backend.endpoint(), s3.endpoint());
    let queue = dir.path().join("queue");
    let yaml = config(
        port,
        admin,
        &Destinations {
            otlp: Some(&otlp_url),
            s3: Some(&s3_url),
        },
        &queue,
        "300ms",
        "5s",
    );
    let client = reqwest::Client::new();
    let mut acked = BTreeSet::new();

    // First start: both destinations pass, so the config is taken.
    let daemon = start(dir.path(), &yaml, addr);
    assert!(
        queue.join("taken-destinations.json").exists(),
        "{}",
        daemon.log_text()
    );
    for i in 0..5 {
        acked.extend(send(&client, addr, &format!("before{i}")).await);
    }

    // The outage: the backend answers 503, S3 is gone.
    backend.set_default(Response::status(503));
    s3.stop().await;
    let mut daemon = daemon;
    for round in 0..3 {
        for i in 0..5 {
            let name = format!("outage{round}-{i}");
            assert!(
                send(&client, addr, &name).await.map(|n| acked.insert(n)) == Some(true),
                "{name} not acknowledged during the outage: {}",
                daemon.log_text()
            );
        }
        daemon.kill().await;
        // Same config, both destinations still down: it starts anyway.
        daemon = start(dir.path(), &yaml, addr);
        let log = daemon.log_text();
        assert!(
            log.contains("destination down at start-up"),
            "round {round}: {log}"
        );
        let (status, body) = get(&format!("http://127.0.0.1:{admin}/readyz")).await;
        assert_eq!(status, 503, "round {round}: {body}");
        assert!(
            body.contains("otlp/backend") && body.contains("s3"),
            "/readyz names the destinations that are down: {body}"
        );
    }
    for i in 0..5 {
        acked.extend(send(&client, addr, &format!("last{i}")).await);
    }
    assert_eq!(acked.len(), 25, "every request acknowledged");

    // Heal both: everything acknowledged arrives at both.
    backend.set_default(Response::ok());
    s3.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut otlp_missing, mut s3_missing);
    loop {
        let otlp: BTreeSet<String> = backend.span_names().into_iter().collect();
        let in_s3 = s3_span_names(&s3);
        otlp_missing = acked.difference(&otlp).cloned().collect::<Vec<_>>();
        s3_missing = acked.difference(&in_s3).cloned().collect::<Vec<_>>();
        if (otlp_missing.is_empty() && s3_missing.is_empty()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        otlp_missing.is_empty(),
        "lost at the OTLP backend: {otlp_missing:?}\n{}",
        daemon.log_text()
    );
    assert!(
        s3_missing.is_empty(),
        "lost in S3: {s3_missing:?}\n{}",
        daemon.log_text()
    );
    // The readiness check sees both back.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(&format!("http://127.0.0.1:{admin}/readyz")).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_destination_that_fails_its_test_is_refused_on_sighup_and_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let addr = local(port);
    let queue = dir.path().join("queue");
    let good = backend.endpoint();
    let dead = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let yaml = |otlp: &str| {
        config(
            port,
            admin,
            &Destinations {
                otlp: Some(otlp),
                s3: None,
            },
            &queue,
            "30s",
            "5s",
        )
    };
    let daemon = start(dir.path(), &yaml(&good), addr);
    let client = reqwest::Client::new();
    let mut acked = BTreeSet::new();
    acked.extend(send(&client, addr, "first").await);

    // SIGHUP with the destination moved to an endpoint that does not answer: refused.
    yaml(&dead).write(dir.path());
    daemon.signal("HUP");
    let log = wait_log(&daemon, "reload refused", 1).await;
    assert!(
        log.contains("new or changed destination otlp/backend"),
        "{log}"
    );
    // The running config keeps serving into the old destination.
    acked.extend(send(&client, addr, "after-refusal").await);
    assert_eq!(acked.len(), 2);
    backend.wait_for_spans(2, Duration::from_secs(20)).await;
    let got: BTreeSet<String> = backend.span_names().into_iter().collect();
    assert!(acked.is_subset(&got), "{got:?}");
    let (status, body) = get(&format!("http://127.0.0.1:{admin}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = get(&format!("http://127.0.0.1:{admin}/metrics")).await;
    assert!(
        metrics
            .contains(r#"tracecast_config_reloads_total{component="service",reason="failed"} 1"#),
        "{metrics}"
    );
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    // A start with the changed destination (the file still has it): refused, naming it,
    // although the destination's old settings were taken.
    let daemon = Daemon::spawn(
        dir.path(),
        &["run", "--config", config_path(dir.path()).to_str().unwrap()],
    );
    let (code, _, log) = wait_exit(daemon, Duration::from_secs(40)).await;
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("new or changed destination otlp/backend") && log.contains("not starting"),
        "{log}"
    );
    // Back to the taken settings: starts again.
    let daemon = start(dir.path(), &yaml(&good), addr);
    assert_eq!(send(&client, addr, "back").await.as_deref(), Some("back-0"));
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_reload_testing_a_hanging_destination_exits_within_the_deadline() {
    // Accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hang.accept().await {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let addr = local(port);
    let queue = dir.path().join("queue");
    let good = backend.endpoint();
    let yaml = config(
        port,
        admin,
        &Destinations {
            otlp: Some(&good),
            s3: None,
        },
        &queue,
        "30s",
        "2s",
    );
    let daemon = start(dir.path(), &yaml, addr);
    // The reload adds a destination whose connection test hangs (30 s request timeout).
    let with_hang = yaml.clone().exporter(
        Exporter::otlp("otlp/hang", format!("http://{hang_addr}/v1/traces")).timeout("30s"),
    );
    with_hang.write(dir.path());
    daemon.signal("HUP");
    wait_log(&daemon, "SIGHUP received", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.signal("TERM");
    let (code, took, log) = wait_exit(daemon, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(
        took <= Duration::from_secs(2 + 3),
        "exited after {took:?} (shutdown_timeout 2s + 3s):\n{log}"
    );
    assert!(log.contains("reload abandoned"), "{log}");
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_port_in_use_changes_nothing_and_listeners_never_gap() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let addr = local(port);
    let queue = dir.path().join("queue");
    let good = backend.endpoint();
    let yaml = |port: u16| {
        config(
            port,
            admin,
            &Destinations {
                otlp: Some(&good),
                s3: None,
            },
            &queue,
            "30s",
            "5s",
        )
    };
    let daemon = start(dir.path(), &yaml(port), addr);
    let client = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    assert_eq!(get(&readyz).await.0, 200);

    // Another process holds the new port: refused, nothing changes.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = squatter.local_addr().unwrap().port();
    yaml(taken_port).write(dir.path());
    daemon.signal("HUP");
    let log = wait_log(&daemon, "reload refused", 1).await;
    assert!(log.contains(&format!("127.0.0.1:{taken_port}")), "{log}");
    assert_eq!(
        send(&client, addr, "old-listener").await.as_deref(),
        Some("old-listener-0"),
        "the old listener still answers 200"
    );
    let (status, body) = get(&readyz).await;
    assert_eq!(status, 200, "/readyz: {body}");
    drop(squatter);

    // New receiver settings on the same endpoint: the socket is taken over, never closed.
    // A new connection per request: what must never gap is the listening socket. (A request
    // sent on a kept-alive connection at the instant the replaced receiver closes it idle
    // can fail like with any HTTP server that closes idle connections; OTLP clients retry
    // such errors. CI once saw exactly one such failure with a pooled client.)
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        tokio::spawn(async move {
            let (mut sent, mut refused) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("during{sent}");
                if let Err(why) = send_why(&fresh, addr, &name).await {
                    refused.push(format!("{name}: {why}"));
                }
                sent += 1;
            }
            (sent, refused)
        })
    };
    let resized = yaml(port).receiver_option("max_request_body_size", "8MiB");
    resized.write(dir.path());
    daemon.signal("HUP");
    wait_log(&daemon, "config reloaded", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, refused) = load.await.unwrap();
    assert!(sent > 0);
    assert!(
        refused.is_empty(),
        "requests refused while the receiver was replaced: {refused:?}"
    );

    // A free port: the new listener serves, then the old one closes.
    let new_port = free_port();
    yaml(new_port).write(dir.path());
    daemon.signal("HUP");
    wait_log(&daemon, "config reloaded", 2).await;
    let new_addr = local(new_port);
    assert!(wait_for_listener(new_addr, Duration::from_secs(5)));
    assert_eq!(
        send(&client, new_addr, "new-listener").await.as_deref(),
        Some("new-listener-0")
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "the old listener never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&readyz).await.0, 200);
    let (_, metrics) = get(&format!("http://127.0.0.1:{admin}/metrics")).await;
    assert!(
        metrics
            .contains(r#"tracecast_config_reloads_total{component="service",reason="failed"} 1"#)
            && metrics
                .contains(r#"tracecast_config_reloads_total{component="service",reason="ok"} 2"#),
        "{metrics}"
    );
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_exporter_checked_for_ten_intervals_writes_one_probe_outside_the_trace_folders() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket(BUCKET);
    let (port, admin) = (free_port(), free_port());
    let addr = local(port);
    let s3_url = s3.endpoint();
    let yaml = config(
        port,
        admin,
        &Destinations {
            otlp: None,
            s3: Some(&s3_url),
        },
        &dir.path().join("queue"),
        "200ms",
        "5s",
    );
    let daemon = start(dir.path(), &yaml, addr);
    let client = reqwest::Client::new();
    // Traffic for the first half (the check judges by the uploads), idle for the second
    // (the check falls back to the probe).
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(1) {
        assert!(send(&client, addr, &format!("t{i}")).await.is_some());
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(10 * 200 + 500)).await;
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    let keys = s3.list_keys(BUCKET);
    let (traces, others): (Vec<&String>, Vec<&String>) = keys.iter().partition(|k| {
        k.starts_with("archive/") && k.ends_with(".json") && !k.contains(".tracecast")
    });
    assert_eq!(traces.len(), i, "one file per trace: {keys:?}");
    assert_eq!(
        others,
        vec!["archive/.tracecast/connection-test"],
        "one probe, beside the date folders: {keys:?}"
    );
    let trace_folders: BTreeSet<&str> = traces
        .iter()
        .filter_map(|k| k.rsplit_once('/').map(|(folder, _)| folder))
        .collect();
    assert!(
        !trace_folders.contains("archive/.tracecast"),
        "{trace_folders:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_while_draining_exits_at_once_and_the_backlog_stays_queued() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let addr = local(port);
    let good = backend.endpoint();
    let yaml = config(
        port,
        admin,
        &Destinations {
            otlp: Some(&good),
            s3: None,
        },
        &dir.path().join("queue"),
        "30s",
        "60s",
    );
    let daemon = start(dir.path(), &yaml, addr);
    backend.set_default(Response::status(503));
    let client = reqwest::Client::new();
    let mut acked = BTreeSet::new();
    for i in 0..5 {
        acked.extend(send(&client, addr, &format!("backlog{i}")).await);
    }
    assert_eq!(acked.len(), 5);
    // The drain would wait up to 60 s for the backend; the second signal ends it.
    daemon.signal("TERM");
    wait_log(&daemon, "SIGTERM received", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.signal("TERM");
    let (code, took, log) = wait_exit(daemon, Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "{log}");
    assert!(
        took <= Duration::from_secs(3),
        "exited after {took:?}:\n{log}"
    );
    assert!(log.contains("received again: exiting now"), "{log}");

    // What was acknowledged is delivered by the next start, once the backend answers.
    backend.set_default(Response::ok());
    let daemon = start(dir.path(), &yaml, addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<String> = backend.span_names().into_iter().collect();
        if acked.is_subset(&got) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missing after restart: {:?}\n{}",
            acked.difference(&got).collect::<Vec<_>>(),
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}
