//! Torn-write recovery on the real binary: tracecast is killed with acknowledged entries in
//! its queue; the last segment is then cut at a sample of byte offsets inside its last record
//! (as a torn write would leave it). Each time, a fresh start must deliver every intact
//! record, set the torn bytes aside, and keep running. (The queue crate's own tests cut at
//! every byte offset; this checks the daemon around it.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracecast_tests::{
    fixtures, free_port, local, post_protobuf, Daemon, Exporter, RecordingOtlpServer, TestConfig,
};

const SKIP_TEST: &[&str] = &["--skip-connection-test"];

fn config(port: u16, backend: &str, queue_dir: &Path) -> String {
    TestConfig::new(port)
        .exporter(
            Exporter::otlp("otlp/backend", backend)
                .protobuf()
                .timeout("60s"),
        )
        .shutdown_timeout("5s")
        .no_admin()
        .queue_dir(queue_dir)
        .yaml()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The newest segment file of the pipeline's queue and the offsets of its last record.
fn last_record(queue: &Path) -> (PathBuf, u64, u64) {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(queue)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    let seg = segs.pop().expect("a segment file");
    let bytes = std::fs::read(&seg).unwrap();
    let mut at = 24usize; // segment header
    let mut last = (at, at);
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        last = (at, at + 8 + len);
        at += 8 + len;
    }
    assert_eq!(
        at,
        bytes.len(),
        "the segment ends on a record boundary before the cut"
    );
    (seg, last.0 as u64, last.1 as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_is_cut_and_every_intact_record_is_delivered() {
    const N: usize = 12;
    let work = tempfile::tempdir().unwrap();
    let pristine = work.path().join("queue");
    let client = reqwest::Client::new();

    // 1. Fill a queue: the backend stalls, so nothing is delivered; then SIGKILL.
    let stalled = RecordingOtlpServer::start().await;
    stalled.stall();
    let addr = local(free_port());
    let yaml = config(addr.port(), &stalled.endpoint(), &pristine);
    let daemon = Daemon::run_config(work.path(), "fill", &yaml, SKIP_TEST, addr);
    for i in 0..N {
        let req = fixtures::request_with_named_spans(&format!("t{i:02}"), 1);
        assert_eq!(
            post_protobuf(&client, addr, &req).await.unwrap().status(),
            200
        );
    }
    daemon.kill().await;
    drop(stalled);

    let (_, start, end) = last_record(&pristine.join("traces"));
    let len = end - start;
    let cuts = [
        start + 1,
        start + 4,
        start + 8,
        start + 8 + len / 2,
        end - 1,
    ];
    let intact: Vec<String> = (0..N - 1).map(|i| format!("t{i:02}-0")).collect();

    for (run, cut) in cuts.into_iter().enumerate() {
        // 2. A copy of the queue with the last record torn at `cut`.
        let queue = work.path().join(format!("queue-{run}"));
        copy_dir(&pristine, &queue);
        let (seg, _, _) = last_record(&queue.join("traces"));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();

        // 3. Start on it: every intact record arrives, the daemon keeps serving.
        let backend = RecordingOtlpServer::start().await;
        let addr = local(free_port());
        let yaml = config(addr.port(), &backend.endpoint(), &queue);
        let daemon = Daemon::run_config(work.path(), &format!("run-{run}"), &yaml, SKIP_TEST, addr);
        let spans = backend.wait_for_spans(N - 1, Duration::from_secs(20)).await;
        let mut names: Vec<String> = spans.into_iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names, intact,
            "cut at byte {cut} of the last record [{start}, {end})"
        );
        // Still serving: a new request goes through.
        let req = fixtures::request_with_named_spans(&format!("after{run}"), 1);
        assert_eq!(
            post_protobuf(&client, addr, &req).await.unwrap().status(),
            200
        );
        assert!(!backend
            .wait_for_spans(N, Duration::from_secs(20))
            .await
            .is_empty());
        assert!(
            queue
                .join("traces/corrupt")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some()),
            "the torn bytes are kept aside for inspection"
        );
        let (code, log) = daemon.terminate().await;
        assert!(
            log.contains("torn or corrupt"),
            "the cut is reported: {log}"
        );
        assert_eq!(code, Some(0), "{log}");
    }
}
