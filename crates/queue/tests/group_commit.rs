//! Group commit and the size bound.

mod support;

use std::collections::BTreeSet;

use bytes::Bytes;
use support::*;
use tokio::task::JoinSet;
use tracecast_queue::{DurableQueue, FsyncPolicy, QueueError, QueueOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: 1 << 20,
        max_bytes: 64 << 20,
        ..small_options()
    };
    let (queue, _) = DurableQueue::open(dir.path(), options).unwrap();
    let mut set = JoinSet::new();
    for i in 0..200u64 {
        let queue = queue.clone();
        set.spawn(async move { queue.append(payload(i)).await.unwrap() });
    }
    let mut seqs = BTreeSet::new();
    while let Some(seq) = set.join_next().await {
        seqs.insert(seq.unwrap());
    }
    assert_eq!(seqs, (0..200).collect::<BTreeSet<_>>());
    let stats = queue.stats();
    assert_eq!(stats.appends, 200);
    // One fsync for the segment's creation plus one per group; with 200 callers waiting
    // behind each fsync the groups are large.
    assert!(
        stats.fsyncs * 4 <= stats.appends,
        "expected far fewer fsyncs than appends: {stats:?}"
    );
    assert!(stats.write_groups < 50, "{stats:?}");
    eprintln!(
        "200 concurrent appends: {} write groups, {} fsyncs",
        stats.write_groups, stats.fsyncs
    );
    // Every entry is readable, in sequence order, with the payload its caller appended
    // (the payload does not tell which caller got which seq, so compare as sets).
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let (seq, bytes) = next(&queue).await;
        seen.insert((seq, bytes));
    }
    let got: BTreeSet<Bytes> = seen.iter().map(|(_, b)| b.clone()).collect();
    let want: BTreeSet<Bytes> = (0..200).map(payload).collect();
    assert_eq!(got, want);
    assert_eq!(
        seen.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (0..200).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_accepts_again_once_delivered_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions {
        max_bytes: 16 * 1024,
        segment_bytes: 2048,
        ..small_options()
    };
    let (queue, _) = DurableQueue::open(dir.path(), options).unwrap();
    let entry = Bytes::from(vec![7u8; 500]);
    let mut appended = 0u64;
    let full = loop {
        match queue.append(entry.clone()).await {
            Ok(seq) => {
                assert_eq!(seq, appended);
                appended += 1;
            }
            Err(e) => break e,
        }
        assert!(appended < 1000, "the bound never applied");
    };
    assert!(
        matches!(
            full,
            QueueError::Full {
                max_bytes: 16384,
                ..
            }
        ),
        "{full}"
    );
    assert!(full.is_retryable());
    assert!(full.to_string().contains("full"), "{full}");
    let stats = queue.stats();
    assert!(stats.bytes_on_disk <= 16 * 1024, "{stats:?}");
    assert!(
        appended >= 25,
        "only {appended} entries of 508 bytes fit in 16 KiB"
    );
    let files_when_full = segment_files(dir.path()).len();
    assert!(files_when_full >= 4, "{files_when_full} segments");

    // Still full while nothing is delivered, even after the cursor is saved.
    queue.sync().await.unwrap();
    assert!(matches!(
        queue.append(entry.clone()).await,
        Err(QueueError::Full { .. })
    ));

    for _ in 0..appended {
        let (seq, bytes) = next(&queue).await;
        assert_eq!(bytes, entry);
        queue.token(seq).confirm();
    }
    queue.sync().await.unwrap();
    let files_after = segment_files(dir.path()).len();
    assert!(
        files_after <= 1,
        "delivered segments deleted: {files_after} left"
    );
    assert!(queue.stats().bytes_on_disk < 2048, "{:?}", queue.stats());
    for _ in 0..10 {
        queue.append(entry.clone()).await.unwrap();
    }

    // An entry that could never fit is a different error from Full.
    let huge = Bytes::from(vec![0u8; 20 * 1024]);
    assert!(matches!(
        queue.append(huge).await,
        Err(QueueError::EntryTooLarge { size: 20480, .. })
    ));
}

/// Pipelined group commit: appenders on many tasks, some still in flight when the queue is
/// dropped like a crash (no shutdown, no cursor). Every append that was acknowledged is
/// found by a reopen, with its payload at its sequence number, across segment rolls (small
/// segments, so groups of one fsync batch span two files); sequence numbers are dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_are_acknowledged_durably_and_a_reopen_finds_every_one() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions {
        fsync: FsyncPolicy::Always,
        segment_bytes: 4096,
        max_bytes: 64 << 20,
        ..small_options()
    };
    let (queue, _) = DurableQueue::open(dir.path(), options.clone()).unwrap();
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut set = JoinSet::new();
    const TASKS: u64 = 16;
    const PER_TASK: u64 = 40;
    for t in 0..TASKS {
        let queue = queue.clone();
        let acked = acked.clone();
        set.spawn(async move {
            for i in 0..PER_TASK {
                let body = payload(t * 1000 + i);
                let seq = queue.append(body.clone()).await.unwrap();
                acked.lock().unwrap().push((seq, body));
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap();
    }
    // A last wave left in flight while the queue goes away.
    let mut in_flight = JoinSet::new();
    for t in 0..TASKS {
        let queue = queue.clone();
        let acked = acked.clone();
        in_flight.spawn(async move {
            let body = payload(90_000 + t);
            if let Ok(seq) = queue.append(body.clone()).await {
                acked.lock().unwrap().push((seq, body));
            }
        });
    }
    tokio::task::yield_now().await;
    let stats = queue.stats();
    assert!(stats.fsyncs < stats.appends, "{stats:?}");
    assert!(
        stats.segments > 2,
        "groups crossed segment rolls: {stats:?}"
    );
    drop(queue);
    while let Some(done) = in_flight.join_next().await {
        done.unwrap();
    }
    let mut acked = std::mem::take(&mut *acked.lock().unwrap());
    acked.sort();
    assert!(acked.len() as u64 >= TASKS * PER_TASK);
    let seqs: Vec<u64> = acked.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (0..acked.len() as u64).collect::<Vec<_>>(),
        "acknowledged sequence numbers are dense and unique"
    );

    let (queue, report) = DurableQueue::open(dir.path(), options).unwrap();
    assert!(report.corrupt.is_empty(), "{report:?}");
    assert!(report.next_seq >= acked.len() as u64, "{report:?}");
    for (seq, body) in &acked {
        let (got_seq, got) = next(&queue).await;
        assert_eq!((got_seq, &got), (*seq, body), "entry {seq} after reopen");
    }
    queue.shutdown().await.unwrap();
}

/// `close` publishes "closed" only after the appends sent before it are durable and
/// readable: the consumer drains every acknowledged entry, then gets `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_the_groups_still_syncing() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
    let mut set = JoinSet::new();
    for i in 0..50u64 {
        let queue = queue.clone();
        set.spawn(async move { queue.append(payload(i)).await });
    }
    // Some appends are acknowledged before close, the rest refused as Closed; none lost.
    tokio::task::yield_now().await;
    queue.close();
    let mut acked = BTreeSet::new();
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(seq) => {
                acked.insert(seq);
            }
            Err(e) => assert!(matches!(e, QueueError::Closed), "{e}"),
        }
    }
    let mut read = BTreeSet::new();
    while let Some((seq, _)) = tokio::time::timeout(std::time::Duration::from_secs(5), queue.next())
        .await
        .expect("next() timed out")
    {
        read.insert(seq);
    }
    assert_eq!(read, acked);
    queue.shutdown().await.unwrap();
}
