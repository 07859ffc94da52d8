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
