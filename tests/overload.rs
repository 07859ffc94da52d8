//! Overload and disk full on the real binary.
//!
//! - A stalled backend and a flood of large requests: the receiver answers 429/503 (queue
//!   bound, memory limit) instead of growing; the daemon's peak RSS stays under
//!   `service.memory_limit`; nothing acknowledged is lost once the backend returns.
//! - Disk full: the queue folder on a 2 MiB tmpfs; once it is full the receiver answers 503
//!   instead of acknowledging what it cannot store, and everything acknowledged arrives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tracecast_tests::fixtures::{attr_str, request_from_spans, span};
use tracecast_tests::{
    free_port, local, peak_rss_bytes, Daemon, Exporter, RecordingOtlpServer, TestConfig,
};

const SKIP_TEST: &[&str] = &["--skip-connection-test"];

/// 16 requests at a time into one OTLP exporter with long requests; `queue_max_size` and
/// `segment_size` bound the durable queue.
fn config(
    port: u16,
    backend: &str,
    queue_dir: &Path,
    queue_max_size: &str,
    segment_size: &str,
) -> TestConfig {
    TestConfig::new(port)
        .max_concurrent_requests(16)
        .exporter(
            Exporter::otlp("otlp/backend", backend)
                .protobuf()
                .compression("none")
                .timeout("120s"),
        )
        .shutdown_timeout("20s")
        .no_admin()
        .queue_dir(queue_dir)
        .queue("max_size", queue_max_size)
        .queue("segment_size", segment_size)
}

/// A one-span request carrying `kib` KiB of completion text, named `name-0`.
fn big_request(name: &str, kib: usize) -> Vec<u8> {
    let mut s = span(&format!("{name}-0"));
    s.attributes
        .push(attr_str("gen_ai.completion", &"x".repeat(kib * 1024)));
    request_from_spans(vec![s]).encode_to_vec()
}

struct Flood {
    acked: Vec<String>,
    codes: BTreeMap<u16, usize>,
    bodies: Vec<String>,
}

/// `workers` concurrent senders, `kib` KiB each, for `duration` (bounded in count too).
async fn flood(addr: SocketAddr, workers: usize, kib: usize, duration: Duration) -> Flood {
    let result = Arc::new(Mutex::new(Flood {
        acked: Vec::new(),
        codes: BTreeMap::new(),
        bodies: Vec::new(),
    }));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let result = result.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..5000 {
                if Instant::now() > deadline {
                    break;
                }
                let name = format!("w{w}r{i}");
                let resp = client
                    .post(format!("http://{addr}/v1/traces"))
                    .header("content-type", "application/x-protobuf")
                    .body(big_request(&name, kib))
                    .send()
                    .await;
                let Ok(resp) = resp else { continue };
                let code = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                let text =
                    String::from_utf8_lossy(&resp.bytes().await.unwrap_or_default()).into_owned();
                {
                    let mut r = result.lock().unwrap();
                    *r.codes.entry(code).or_insert(0) += 1;
                    if code == 200 {
                        r.acked.push(format!("{name}-0"));
                        continue;
                    }
                    assert!(matches!(code, 429 | 503), "unexpected {code}: {text}");
                    assert!(retry_after, "{code} without Retry-After");
                    if r.bodies.len() < 50 {
                        r.bodies.push(text);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(result).ok().unwrap().into_inner().unwrap()
}

async fn finish(daemon: Daemon, backend: &RecordingOtlpServer, acked: &[String]) {
    backend.release();
    let spans = backend
        .wait_for_spans(acked.len(), Duration::from_secs(120))
        .await;
    let mut got: Vec<String> = spans.into_iter().map(|s| s.name).collect();
    got.sort();
    got.dedup();
    let mut want = acked.to_vec();
    want.sort();
    let missing: Vec<&String> = want
        .iter()
        .filter(|n| got.binary_search(n).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} acked spans lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_refuses_instead_of_growing_and_loses_nothing() {
    const LIMIT: u64 = 160 * 1024 * 1024;
    let backend = RecordingOtlpServer::start().await;
    backend.stall();
    let dir = tempfile::tempdir().unwrap();
    let addr = local(free_port());
    let yaml = config(
        addr.port(),
        &backend.endpoint(),
        &dir.path().join("queue"),
        "48MiB",
        "4MiB",
    )
    .memory_limit(LIMIT)
    .yaml();
    let daemon = Daemon::run_config(dir.path(), "tracecast", &yaml, SKIP_TEST, addr);
    let f = flood(addr, 12, 256, Duration::from_secs(6)).await;
    let peak = peak_rss_bytes(daemon.child.id());
    eprintln!(
        "overload: codes {:?}, acked {}, peak RSS {} MiB (limit {} MiB)",
        f.codes,
        f.acked.len(),
        peak / (1024 * 1024),
        LIMIT / (1024 * 1024)
    );
    assert!(
        f.codes.get(&429).copied().unwrap_or(0) + f.codes.get(&503).copied().unwrap_or(0) > 0,
        "pushed back"
    );
    assert!(
        peak > 0 && peak <= LIMIT,
        "peak RSS {peak} over the {LIMIT} limit"
    );
    finish(daemon, &backend, &f.acked).await;
}

/// Mounts a tmpfs of `size` at `dir` (root only); false when the machine does not allow it.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

struct Unmount(std::path::PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_answers_503_instead_of_acking() {
    let backend = RecordingOtlpServer::start().await;
    backend.stall();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    // A real full disk where the machine allows a tmpfs mount (CI runs as root); else the
    // queue's own bound stands in for it (answered 429 rather than 503).
    let real_disk = mount_tmpfs(&queue, "2m");
    let _unmount = real_disk.then(|| Unmount(queue.clone()));
    let max_size = if real_disk {
        "1GiB"
    } else {
        eprintln!("tmpfs mount not permitted here: testing the queue bound instead");
        "2MiB"
    };
    let addr = local(free_port());
    let yaml = config(addr.port(), &backend.endpoint(), &queue, max_size, "256KiB").yaml();
    let daemon = Daemon::run_config(dir.path(), "tracecast", &yaml, SKIP_TEST, addr);
    let f = flood(addr, 4, 64, Duration::from_secs(4)).await;
    eprintln!("disk full: codes {:?}, acked {}", f.codes, f.acked.len());
    let refused = if real_disk { 503 } else { 429 };
    assert!(
        f.codes.get(&refused).copied().unwrap_or(0) > 0,
        "refused with {refused}: {:?}",
        f.codes
    );
    if real_disk {
        assert!(
            f.bodies.iter().any(|b| b.contains("durably")),
            "the 503 says the request could not be stored: {:?}",
            f.bodies.first()
        );
    }
    assert!(!f.acked.is_empty());
    finish(daemon, &backend, &f.acked).await;
}
