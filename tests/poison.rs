//! No single entry can stop delivery (issue "No request can stop tracecast"), on the real
//! binary with real sockets:
//!
//! - a processor that panics on a marked span: that entry is retried, then quarantined with
//!   the reason; its neighbours are delivered; after a restart nothing is quarantined twice;
//! - a queue entry that passes its CRC but does not decode: quarantined, the cursor moves on;
//! - dead letters against a backend answering 401 to everything stay under `max_size`;
//! - SIGTERM with the backend down and a backlog exits 0 within `shutdown_timeout` + 3 s,
//!   and after a restart every acknowledged span arrives, none dead-lettered.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracecast_tests::{
    fixtures, free_port, local, post_protobuf, wait_for_listener, yaml_str, Daemon, Exporter,
    RecordingOtlpServer, Response, TestConfig,
};

const TEST_COMPONENTS: (&str, &str) = ("TRACECAST_TEST_COMPONENTS", "1");

fn start(dir: &Path, config: &Path, addr: SocketAddr) -> Daemon {
    let d = Daemon::spawn_env(
        dir,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--skip-connection-test",
        ],
        &[TEST_COMPONENTS],
    );
    assert!(
        wait_for_listener(addr, Duration::from_secs(30)),
        "tracecast did not listen: {}",
        d.log_text()
    );
    d
}

async fn scrape(admin: SocketAddr) -> String {
    match reqwest::get(format!("http://{admin}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of the first sample of `name` whose labels contain `labels`.
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(suffix));
    v.sort();
    v
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A one-span request whose span is named `name`, optionally marked for the fault processor.
fn one_span(name: &str, marked: bool) -> tracecast_core::ExportTraceServiceRequest {
    let mut span = fixtures::span(name);
    if marked {
        span.attributes
            .push(fixtures::attr_bool("tracecast.test.panic", true));
    }
    fixtures::request_from_spans(vec![span])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_processor_costs_one_quarantined_entry_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin_port) = (free_port(), free_port());
    let queue_dir = dir.path().join("queue");
    let config = TestConfig::new(port)
        .processor("fault")
        .exporter(
            Exporter::otlp("otlp", backend.endpoint())
                .protobuf()
                .compression("none"),
        )
        .admin_port(admin_port)
        .queue_dir(&queue_dir)
        .queue("quarantine", "{max_attempts: 3, retry_backoff: 50ms}")
        .write(dir.path());
    let (addr, admin) = (local(port), local(admin_port));
    let daemon = start(dir.path(), &config, addr);
    let client = reqwest::Client::new();
    for (name, marked) in [("before", false), ("poison", true), ("after", false)] {
        let resp = post_protobuf(&client, addr, &one_span(name, marked))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{name}: acknowledged before processing");
    }
    backend.wait_for_spans(2, Duration::from_secs(20)).await;
    let quarantine = queue_dir.join("quarantine").join("traces");
    wait_until(
        "the poison entry in quarantine",
        Duration::from_secs(20),
        || {
            let q = quarantine.clone();
            async move { files_with_suffix(&q, ".entry").len() == 1 }
        },
    )
    .await;
    wait_until("the queue to drain", Duration::from_secs(20), || async {
        let m = scrape(admin).await;
        sample(&m, "tracecast_queue_entries", "pipeline=\"traces\"") == Some(0.0)
            && sample(
                &m,
                "tracecast_queue_quarantined_total",
                "pipeline=\"traces\"",
            ) == Some(1.0)
    })
    .await;
    let mut names = backend.span_names();
    names.sort();
    assert_eq!(
        names,
        vec!["after", "before"],
        "the neighbours arrive, the poison does not"
    );
    let entry = &files_with_suffix(&quarantine, ".entry")[0];
    let reason = std::fs::read_to_string(format!("{}.reason.txt", entry.display())).unwrap();
    assert!(reason.contains("processor fault panicked"), "{reason}");
    assert!(reason.contains("attempts: 3"), "{reason}");
    let log = daemon.log_text();
    assert!(log.contains("queue entry quarantined"), "{log}");
    // `dead-letters list` shows it with its reason.
    let listed = std::process::Command::new(tracecast_tests::tracecast_bin())
        .args(["dead-letters", "list", "--config", config.to_str().unwrap()])
        .env(TEST_COMPONENTS.0, TEST_COMPONENTS.1)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{out}");
    assert!(
        out.contains("pipeline traces") && out.contains("processor fault panicked"),
        "{out}"
    );

    // Traffic after it flows, and the daemon is the same process.
    let resp = post_protobuf(&client, addr, &one_span("later", false))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    backend.wait_for_spans(3, Duration::from_secs(20)).await;
    let (code, _) = daemon.terminate().await;
    assert_eq!(code, Some(0));

    // A restart replays nothing into quarantine and nothing to the backend.
    let daemon = start(dir.path(), &config, addr);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(files_with_suffix(&quarantine, ".entry").len(), 1);
    let log = daemon.log_text();
    assert!(
        !log.contains("queue entry quarantined"),
        "quarantined twice:\n{log}"
    );
    assert_eq!(backend.span_names().len(), 3, "nothing replayed");
    daemon.terminate().await;

    // `dead-letters resend --quarantined` posts the entry back to the running daemon. Here
    // the receiver is written in the Collector's shape (`protocols.http`) and the fault
    // processor is gone: the span arrives and the quarantine empties.
    let plain = TestConfig::new(port)
        .exporter(
            Exporter::otlp("otlp", backend.endpoint())
                .protobuf()
                .compression("none"),
        )
        .admin_port(admin_port)
        .queue_dir(&queue_dir)
        .yaml();
    let address = yaml_str(&format!("127.0.0.1:{port}"));
    let flat = format!("    endpoint: {address}\n");
    assert!(plain.contains(&flat), "{plain}");
    let collector_shape = plain.replace(
        &flat,
        &format!("    protocols:\n      http:\n        endpoint: {address}\n"),
    );
    let resend_config = dir.path().join("resend.yaml");
    std::fs::write(&resend_config, collector_shape).unwrap();
    let daemon = start(dir.path(), &resend_config, addr);
    let resent = std::process::Command::new(tracecast_tests::tracecast_bin())
        .args(["dead-letters", "resend", "--quarantined", "--config"])
        .arg(&resend_config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&resent.stdout),
        String::from_utf8_lossy(&resent.stderr)
    );
    assert!(resent.status.success(), "{out}");
    backend.wait_for_spans(4, Duration::from_secs(20)).await;
    assert!(
        backend.span_names().iter().any(|n| n == "poison"),
        "the quarantined span arrives: {:?}",
        backend.span_names()
    );
    assert!(files_with_suffix(&quarantine, ".entry").is_empty(), "{out}");
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_passes_its_crc_but_does_not_decode_is_quarantined() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin_port) = (free_port(), free_port());
    let queue_dir = dir.path().join("queue");
    // Written with the queue's own writer: frames and CRCs are valid, the payloads are not.
    {
        let (queue, _) = tracecast_queue::DurableQueue::open(
            &queue_dir.join("traces"),
            tracecast_queue::QueueOptions::default(),
        )
        .unwrap();
        queue
            .append(bytes::Bytes::from_static(b"\xffnot a queue entry at all"))
            .await
            .unwrap();
        let ctx = tracecast_core::BatchContext::new("otlp");
        let not_otlp = tracecast_queue::encode_entry(&ctx, b"\x0a\xff\xff\xff\xff\x0f");
        queue.append(not_otlp).await.unwrap();
        let good = one_span("good", false).encode_to_vec();
        queue
            .append(tracecast_queue::encode_entry(&ctx, &good))
            .await
            .unwrap();
        queue.shutdown().await.unwrap();
    }
    let config = TestConfig::new(port)
        .exporter(Exporter::otlp("otlp", backend.endpoint()).protobuf())
        .admin_port(admin_port)
        .queue_dir(&queue_dir)
        .write(dir.path());
    let (addr, admin) = (local(port), local(admin_port));
    let daemon = start(dir.path(), &config, addr);
    backend.wait_for_spans(1, Duration::from_secs(20)).await;
    assert_eq!(backend.span_names(), vec!["good"]);
    let quarantine = queue_dir.join("quarantine").join("traces");
    wait_until(
        "both bad entries quarantined and the cursor past them",
        Duration::from_secs(20),
        || async {
            let m = scrape(admin).await;
            sample(&m, "tracecast_queue_entries", "pipeline=\"traces\"") == Some(0.0)
                && sample(
                    &m,
                    "tracecast_queue_quarantined_total",
                    "pipeline=\"traces\"",
                ) == Some(2.0)
        },
    )
    .await;
    let entries = files_with_suffix(&quarantine, ".entry");
    assert_eq!(entries.len(), 2);
    let reasons: Vec<String> = entries
        .iter()
        .map(|e| std::fs::read_to_string(format!("{}.reason.txt", e.display())).unwrap())
        .collect();
    assert!(reasons[0].contains("unreadable"), "{}", reasons[0]);
    assert!(reasons[1].contains("does not decode"), "{}", reasons[1]);
    // Kept byte for byte.
    assert_eq!(
        std::fs::read(&entries[0]).unwrap(),
        b"\xffnot a queue entry at all"
    );
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_against_a_401_backend_stay_under_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    backend.set_default(Response::status(401).body("token expired"));
    let (port, admin_port) = (free_port(), free_port());
    let dead = dir.path().join("dead");
    let max = 4096u64;
    let config = TestConfig::new(port)
        .exporter(
            Exporter::otlp("otlp", backend.endpoint())
                .protobuf()
                .compression("none")
                .dead_letter_dir(&dead)
                .dead_letter_max_size(max),
        )
        .admin_port(admin_port)
        .queue_dir(dir.path().join("queue"))
        .write(dir.path());
    let (addr, admin) = (local(port), local(admin_port));
    let daemon = start(dir.path(), &config, addr);
    let client = reqwest::Client::new();
    let n = 30;
    for i in 0..n {
        let resp = post_protobuf(
            &client,
            addr,
            &fixtures::request_with_named_spans(&format!("r{i}-"), 8),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
    }
    wait_until(
        "every batch dead-lettered",
        Duration::from_secs(30),
        || async {
            let m = scrape(admin).await;
            sample(&m, "tracecast_dead_letters_total", "component=\"otlp\"") == Some(n as f64)
                && sample(&m, "tracecast_queue_entries", "pipeline=\"traces\"") == Some(0.0)
        },
    )
    .await;
    let bytes = dir_bytes(&dead);
    assert!(
        bytes <= max,
        "dead-letter folder holds {bytes} bytes, over {max}"
    );
    let left = files_with_suffix(&dead, ".pb").len();
    assert!(left > 0 && left < n, "{left} batches left");
    let m = scrape(admin).await;
    let removed = sample(
        &m,
        "tracecast_spool_files_removed_total",
        "component=\"otlp\"",
    )
    .expect("the removal counter");
    // Each batch is a .pb and its .pb.reason.txt.
    let on_disk = std::fs::read_dir(&dead).unwrap().count() as f64;
    assert_eq!(
        removed + on_disk,
        2.0 * n as f64,
        "every removed file is counted"
    );
    assert!(daemon.log_text().contains("folder over its max_size"));
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_backend_down_exits_in_time_and_keeps_the_backlog_queued() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    backend.set_default(Response::status(503));
    let port = free_port();
    let dead = dir.path().join("dead");
    let config = TestConfig::new(port)
        .exporter(
            Exporter::otlp("otlp", backend.endpoint())
                .protobuf()
                .compression("none")
                .dead_letter_dir(&dead)
                .sending_queue(2, 1)
                .retry_on_failure(&[
                    ("initial_interval", "100ms"),
                    ("max_interval", "500ms"),
                    ("max_elapsed_time", "300s"),
                ]),
        )
        .shutdown_timeout("3s")
        .no_admin()
        .queue_dir(dir.path().join("queue"))
        .write(dir.path());
    let addr = local(port);
    let mut daemon = start(dir.path(), &config, addr);
    let client = reqwest::Client::new();
    let n = 200;
    for i in 0..n {
        let resp = post_protobuf(&client, addr, &one_span(&format!("s{i}"), false))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    backend.wait_for_requests(3, Duration::from_secs(10)).await;
    let asked = Instant::now();
    daemon.signal("TERM");
    let code = tokio::task::spawn_blocking(move || {
        let code = daemon.wait_exit(Duration::from_secs(30));
        (code, daemon)
    })
    .await
    .unwrap();
    let took = asked.elapsed();
    let (code, daemon) = code;
    assert_eq!(code, Some(0), "{}", daemon.log_text());
    assert!(
        took < Duration::from_secs(6),
        "exit took {took:?}, over shutdown_timeout + 3 s:\n{}",
        daemon.log_text()
    );
    assert!(
        files_with_suffix(&dead, ".pb").is_empty(),
        "nothing dead-lettered by the shutdown"
    );

    backend.set_default(Response::ok());
    let daemon = start(dir.path(), &config, addr);
    wait_until(
        "every acknowledged span after healing",
        Duration::from_secs(60),
        || async {
            let names: std::collections::BTreeSet<String> =
                backend.span_names().into_iter().collect();
            names.len() == n
        },
    )
    .await;
    assert!(
        files_with_suffix(&dead, ".pb").is_empty(),
        "dead-letter folder empty"
    );
    daemon.terminate().await;
}

/// The runtime's hot path: a request appended while its pipeline is live reaches the
/// backend without its queue record being read back; after a restart with a backlog, the
/// backlog comes from disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_batches_skip_the_queue_file_and_a_backlog_is_replayed_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin_port) = (free_port(), free_port());
    let config = TestConfig::new(port)
        .exporter(
            Exporter::otlp("otlp", backend.endpoint())
                .protobuf()
                .retry_on_failure(&[("initial_interval", "100ms"), ("max_interval", "200ms")]),
        )
        .admin_port(admin_port)
        .shutdown_timeout("1s")
        .queue_dir(dir.path().join("queue"))
        .write(dir.path());
    let (addr, admin) = (local(port), local(admin_port));
    let daemon = start(dir.path(), &config, addr);
    let client = reqwest::Client::new();
    for i in 0..20 {
        let resp = post_protobuf(&client, addr, &one_span(&format!("live{i}"), false))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    backend.wait_for_spans(20, Duration::from_secs(20)).await;
    let live = "pipeline=\"traces\"";
    wait_until("the live counters", Duration::from_secs(10), || async {
        let m = scrape(admin).await;
        sample(&m, "tracecast_queue_entries_handed_live_total", live) == Some(20.0)
    })
    .await;
    let m = scrape(admin).await;
    assert_eq!(
        sample(&m, "tracecast_queue_entries_read_from_disk_total", live),
        Some(0.0),
        "no record read back:\n{m}"
    );

    // A backlog left by a stop during an outage comes back from the files.
    backend.set_default(Response::status(503));
    for i in 0..5 {
        let resp = post_protobuf(&client, addr, &one_span(&format!("backlog{i}"), false))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    backend.set_default(Response::ok());
    let daemon = start(dir.path(), &config, addr);
    backend.wait_for_spans(25, Duration::from_secs(20)).await;
    wait_until("the replay counted", Duration::from_secs(10), || async {
        let m = scrape(admin).await;
        sample(&m, "tracecast_queue_entries_read_from_disk_total", live) == Some(5.0)
    })
    .await;
    daemon.terminate().await;
}
