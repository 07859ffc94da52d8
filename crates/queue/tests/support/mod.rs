//! Helpers shared by the queue's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tracecast_queue::{DurableQueue, FsyncPolicy, QueueOptions};

/// Small segments so tests cross segment boundaries; the cursor is only saved when a test
/// asks (`sync`, `close`, `shutdown`), so what a crash replays is deterministic.
pub fn small_options() -> QueueOptions {
    QueueOptions {
        fsync: FsyncPolicy::Always,
        max_bytes: 1 << 20,
        segment_bytes: 1024,
        cursor_interval: Duration::from_secs(3600),
    }
}

pub fn payload(i: u64) -> Bytes {
    Bytes::from(format!("entry-{i:04}-").repeat(1 + (i as usize % 7)))
}

/// The next entry, failing the test if none comes within 5 s.
pub async fn next(queue: &DurableQueue) -> (u64, Bytes) {
    tokio::time::timeout(Duration::from_secs(5), queue.next())
        .await
        .expect("next() timed out")
        .expect("queue closed unexpectedly")
}

/// Reads `n` entries, checking each against `payload(seq)`; returns their sequence numbers.
pub async fn read_expected(queue: &DurableQueue, n: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for _ in 0..n {
        let (seq, bytes) = next(queue).await;
        assert_eq!(bytes, payload(seq), "payload of entry {seq}");
        seqs.push(seq);
    }
    seqs
}

/// Asserts nothing more is readable right now.
pub async fn assert_empty(queue: &DurableQueue) {
    let more = tokio::time::timeout(Duration::from_millis(100), queue.next()).await;
    assert!(more.is_err(), "expected no more entries, got {more:?}");
}

pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

pub async fn append_all(queue: &DurableQueue, range: std::ops::Range<u64>) {
    for i in range {
        let seq = queue.append(payload(i)).await.unwrap();
        assert_eq!(seq, i);
    }
}
