//! Fault injection: uniquely numbered spans go through a real `tracecast` process to a
//! recording OTLP backend and a real S3-compatible server (in-process s3s, SigV4), while the
//! harness breaks things. Every span acknowledged with 2xx must arrive at BOTH destinations:
//!
//! - the OTLP backend answers 503 for a while;
//! - the S3 server is stopped and restarted;
//! - tracecast is killed with SIGKILL at random moments (20 times) and restarted on the same
//!   queue directory;
//! - tracecast gets SIGTERM in the middle of the load.
//!
//! Each run prints `acked / delivered / lost / duplicated` per destination. Longer runs:
//! `TRACECAST_FAULT_KILLS=200 cargo test --test fault_injection -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tracecast_tests::{
    fixtures, free_port, wait_for_listener, Daemon, Exporter, RecordingOtlpServer, Response,
    S3TestServer, TestConfig,
};

const AK: &str = "fault-access-key";
const SK: &str = "fault-secret-key";
const BUCKET: &str = "traces";

struct Harness {
    dir: tempfile::TempDir,
    port: u16,
    config: PathBuf,
    backend: RecordingOtlpServer,
    s3: S3TestServer,
    acked: Arc<Mutex<BTreeSet<String>>>,
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let backend = RecordingOtlpServer::start().await;
        let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
        s3.create_bucket(BUCKET);
        let port = free_port();
        let retry = [
            ("initial_interval", "50ms"),
            ("max_interval", "300ms"),
            ("max_elapsed_time", "600s"),
        ];
        let config = TestConfig::new(port)
            .exporter(
                Exporter::otlp("otlp/backend", backend.endpoint())
                    .protobuf()
                    .compression("none")
                    .timeout("2s")
                    .retry_on_failure(&retry),
            )
            .exporter(
                Exporter::s3("s3", BUCKET, s3.endpoint(), AK, SK)
                    .path_template("faults/{date}")
                    .trace_idle_timeout("100ms")
                    .max_trace_wait("2s")
                    .timeout("2s")
                    .retry_on_failure(&retry),
            )
            .shutdown_timeout("5s")
            .no_admin()
            .queue_dir(dir.path().join("queue"))
            .write(dir.path());
        Harness {
            dir,
            port,
            config,
            backend,
            s3,
            acked: Arc::default(),
        }
    }

    fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn start_daemon(&self) -> Daemon {
        let d = Daemon::spawn(
            self.dir.path(),
            &[
                "run",
                "--config",
                self.config.to_str().unwrap(),
                "--skip-connection-test",
            ],
        );
        assert!(
            wait_for_listener(self.addr(), Duration::from_secs(30)),
            "tracecast did not listen: {}",
            d.log_text()
        );
        d
    }

    /// Sends one-span requests (one trace each) until `stop`, recording what was acked.
    fn spawn_load(
        &self,
        next_id: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let url = format!("http://{}/v1/traces", self.addr());
        let acked = self.acked.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let name = format!("f{id:07}");
                let body = fixtures::request_with_named_spans(&name, 1).encode_to_vec();
                let res = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().insert(format!("{name}-0"));
                    }
                    Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    }

    /// Span names in the S3 trace files, with how many times each appears.
    fn s3_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for key in self.s3.list_keys(BUCKET) {
            let path = self.s3.object_path(BUCKET, &key);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            for obs in doc["observations"].as_array().into_iter().flatten() {
                if obs["type"] != "EVENT" {
                    if let Some(name) = obs["name"].as_str() {
                        *counts.entry(name.to_string()).or_insert(0) += 1;
                    }
                }
            }
        }
        counts
    }

    fn otlp_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for name in self.backend.span_names() {
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }

    /// Waits until every acked span reached both destinations (or `timeout`), then reports.
    async fn verify(&self, label: &str, timeout: Duration) {
        let acked = self.acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "{label}: nothing was acknowledged");
        let start = std::time::Instant::now();
        let (mut otlp, mut s3);
        loop {
            otlp = self.otlp_counts();
            s3 = self.s3_counts();
            let done = acked
                .iter()
                .all(|n| otlp.contains_key(n) && s3.contains_key(n));
            if done || start.elapsed() > timeout {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (dest, counts) in [("otlp", &otlp), ("s3", &s3)] {
            let lost: Vec<&String> = acked.iter().filter(|n| !counts.contains_key(*n)).collect();
            let delivered = acked.len() - lost.len();
            let duplicated: usize = counts
                .iter()
                .filter(|(n, _)| acked.contains(*n))
                .map(|(_, c)| c - 1)
                .sum();
            eprintln!(
                "fault report [{label}] {dest}: acked={} delivered={delivered} lost={} duplicated={duplicated}",
                acked.len(),
                lost.len()
            );
            assert!(
                lost.is_empty(),
                "{label}: {} acked spans never reached {dest}, e.g. {:?}",
                lost.len(),
                lost.iter().take(5).collect::<Vec<_>>()
            );
        }
    }
}

async fn term(d: Daemon) {
    let (code, log) = d.terminate().await;
    assert_eq!(code, Some(0), "clean exit after SIGTERM; log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_backend_answering_503_for_a_while_loses_nothing() {
    let h = Harness::new().await;
    let daemon = h.start_daemon();
    h.backend
        .set_default(Response::status(503).retry_after("0"));
    let (ids, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let load = h.spawn_load(ids, stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.backend.set_default(Response::ok());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    h.verify("backend 503", Duration::from_secs(60)).await;
    assert!(h.backend.requests().iter().any(|r| r.status == 503));
    term(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_stopped_and_restarted_loses_nothing() {
    let mut h = Harness::new().await;
    let daemon = h.start_daemon();
    let (ids, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let load = h.spawn_load(ids, stop.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    h.s3.stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.s3.restart().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    h.verify("s3 restart", Duration::from_secs(60)).await;
    term(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing() {
    let kills: usize = std::env::var("TRACECAST_FAULT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let h = Harness::new().await;
    let ids = Arc::new(AtomicU64::new(0));
    for _ in 0..kills {
        let daemon = h.start_daemon();
        let stop = Arc::new(AtomicBool::new(false));
        let load = h.spawn_load(ids.clone(), stop.clone());
        tokio::time::sleep(Duration::from_millis(fastrand::u64(50..400))).await;
        daemon.kill().await;
        stop.store(true, Ordering::Relaxed);
        load.await.unwrap();
    }
    // A last start on the same queue directory delivers what the kills left behind.
    let daemon = h.start_daemon();
    h.verify(&format!("{kills} x SIGKILL"), Duration::from_secs(90))
        .await;
    term(daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_loses_nothing() {
    let h = Harness::new().await;
    let daemon = h.start_daemon();
    let ids = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = h.spawn_load(ids.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    term(daemon).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let daemon = h.start_daemon();
    h.verify("SIGTERM mid-load", Duration::from_secs(60)).await;
    term(daemon).await;
}
