//! Append, read, acknowledge (in and out of order), and what a reopen replays.

mod support;

use support::*;
use tracecast_core::ack::DeliveryToken;
use tracecast_queue::{CursorState, DurableQueue, QueueError};

#[tokio::test]
async fn entries_come_back_in_order_and_acks_move_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, report) = DurableQueue::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.cursor, CursorState::Missing);
    assert_eq!(report.entries_to_replay, 0);
    append_all(&queue, 0..30).await;
    let seqs = read_expected(&queue, 30).await;
    assert_eq!(seqs, (0..30).collect::<Vec<_>>());
    assert_empty(&queue).await;
    assert!(
        support::segment_files(dir.path()).len() > 1,
        "30 entries span several 1 KiB segments"
    );

    let stats = queue.stats();
    assert_eq!(
        (stats.next_seq, stats.committed_seq, stats.entries_pending),
        (30, 0, 30)
    );
    for seq in seqs {
        queue.token(seq).confirm();
    }
    let stats = queue.stats();
    assert_eq!((stats.committed_seq, stats.entries_pending), (30, 0));

    // Saving the cursor deletes every sealed segment below it.
    queue.sync().await.unwrap();
    assert_eq!(queue.stats().persisted_seq, 30);
    assert!(support::segment_files(dir.path()).len() <= 1);

    // New entries keep flowing after the deletion.
    append_all(&queue, 30..32).await;
    assert_eq!(read_expected(&queue, 2).await, vec![30, 31]);
}

#[tokio::test]
async fn out_of_order_acks_commit_only_the_contiguous_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
    append_all(&queue, 0..10).await;
    let seqs = read_expected(&queue, 10).await;
    let mut tokens: Vec<Option<DeliveryToken>> =
        seqs.iter().map(|&s| Some(queue.token(s))).collect();
    let confirm = |t: &mut Option<DeliveryToken>| t.take().unwrap().confirm();

    for i in [9, 7, 3, 1] {
        confirm(&mut tokens[i]);
    }
    assert_eq!(queue.stats().committed_seq, 0);
    assert_eq!(queue.stats().delivered_above_cursor, 4);
    confirm(&mut tokens[0]);
    assert_eq!(queue.stats().committed_seq, 2);
    confirm(&mut tokens[2]);
    assert_eq!(queue.stats().committed_seq, 4);
    // A clone keeps the entry pending until the last copy is confirmed.
    let held = tokens[4].clone().unwrap();
    confirm(&mut tokens[4]);
    assert_eq!(queue.stats().committed_seq, 4);
    held.confirm();
    assert_eq!(queue.stats().committed_seq, 5);
    // An abandoned entry stays pending.
    tokens[5].take().unwrap().abandon();
    for i in [6, 8] {
        confirm(&mut tokens[i]);
    }
    let stats = queue.stats();
    assert_eq!(stats.committed_seq, 5);
    assert_eq!(stats.entries_pending, 1);
    assert_eq!(stats.delivered_above_cursor, 4);
}

#[tokio::test]
async fn a_claim_dropped_unsettled_is_reported_and_the_entry_can_be_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
    append_all(&queue, 0..3).await;
    let seqs = read_expected(&queue, 3).await;
    let first = queue
        .read_entry(seqs[1])
        .await
        .unwrap()
        .expect("still on disk");
    queue.token(seqs[0]).confirm();
    drop(queue.token(seqs[1]));
    queue.token(seqs[2]).confirm();
    assert_eq!(queue.next_failed().await, seqs[1]);
    let stats = queue.stats();
    assert_eq!(stats.committed_seq, 1, "the failed entry holds the cursor");
    assert_eq!(stats.entries_pending, 1);
    let again = queue.read_entry(seqs[1]).await.unwrap().expect("re-read");
    assert_eq!(again, first);
    queue.token(seqs[1]).confirm();
    assert_eq!(queue.stats().committed_seq, 3);
    assert_eq!(queue.read_entry(99).await.unwrap(), None, "never appended");
}

#[tokio::test]
async fn a_reopen_replays_everything_not_committed_and_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
        append_all(&queue, 0..40).await;
        let seqs = read_expected(&queue, 25).await;
        // Delivered: 0..20 in order, plus 22 out of order; 20, 21, 23, 24 read but pending.
        for &s in seqs.iter().filter(|&&s| s < 20 || s == 22) {
            queue.token(s).confirm();
        }
        for &s in seqs.iter().filter(|&&s| s >= 20 && s != 22) {
            queue.token(s).abandon();
        }
        queue.close();
        assert!(matches!(
            queue.append(payload(99)).await,
            Err(QueueError::Closed)
        ));
        // close(): the rest drains, then None.
        assert_eq!(
            read_expected(&queue, 15).await,
            (25..40).collect::<Vec<_>>()
        );
        assert!(queue.next().await.is_none());
        queue.shutdown().await.unwrap();
    }
    let (queue, report) = DurableQueue::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.cursor, CursorState::Found(20));
    assert_eq!(report.committed_seq, 20);
    assert_eq!(report.next_seq, 40);
    assert_eq!(report.entries_to_replay, 20);
    assert!(report.corrupt.is_empty());
    // 22 was delivered out of order above the cursor: replayed too (at least once).
    assert_eq!(
        read_expected(&queue, 20).await,
        (20..40).collect::<Vec<_>>()
    );
    assert_empty(&queue).await;
    // Sequence numbers continue after the replayed ones.
    assert_eq!(queue.append(payload(40)).await.unwrap(), 40);
    assert_eq!(read_expected(&queue, 1).await, vec![40]);
}

#[tokio::test]
async fn a_fully_delivered_queue_reopens_empty_and_keeps_numbering() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
        append_all(&queue, 0..12).await;
        for s in read_expected(&queue, 12).await {
            queue.token(s).confirm();
        }
        queue.shutdown().await.unwrap();
    }
    let (queue, report) = DurableQueue::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.entries_to_replay, 0);
    assert_eq!(report.segments, 0, "{report:?}");
    assert!(support::segment_files(dir.path()).is_empty());
    assert_empty(&queue).await;
    assert_eq!(queue.append(payload(12)).await.unwrap(), 12);
}

#[tokio::test]
async fn the_cursor_is_saved_on_its_own_every_cursor_interval() {
    let dir = tempfile::tempdir().unwrap();
    let options = tracecast_queue::QueueOptions {
        cursor_interval: std::time::Duration::from_millis(20),
        ..small_options()
    };
    let (queue, _) = DurableQueue::open(dir.path(), options).unwrap();
    append_all(&queue, 0..20).await;
    for seq in read_expected(&queue, 20).await {
        queue.token(seq).confirm();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while queue.stats().persisted_seq != 20 || support::segment_files(dir.path()).len() > 1 {
        assert!(std::time::Instant::now() < deadline, "{:?}", queue.stats());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(queue);
    let (_, report) = DurableQueue::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.cursor, CursorState::Found(20));
    assert_eq!(report.entries_to_replay, 0);
}

#[test]
fn bad_options_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let options = tracecast_queue::QueueOptions {
        max_bytes: 100,
        ..small_options()
    };
    let err = DurableQueue::open(dir.path(), options).err().unwrap();
    assert_eq!(
        err.to_string(),
        "invalid queue options: max_bytes: must be at least 4096 bytes (got 100)"
    );
}

#[test]
fn a_directory_in_use_is_refused_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
    match DurableQueue::open(dir.path(), small_options()) {
        Err(QueueError::InUse { dir: d }) => assert_eq!(d, dir.path()),
        other => panic!("expected InUse, got {:?}", other.map(|_| ())),
    }
    drop(first);
    DurableQueue::open(dir.path(), small_options()).expect("the lock goes with the queue");
}

#[tokio::test]
async fn live_batches_are_handed_over_from_memory_and_replays_come_from_disk() {
    use tracecast_core::{BatchContext, ExportTraceServiceRequest, TraceBatch};
    use tracecast_queue::Item;
    let dir = tempfile::tempdir().unwrap();
    let batch = |name: &str| {
        let mut ctx = BatchContext::new("otlp");
        ctx.api_key_name = Some(name.into());
        TraceBatch::new(ctx, ExportTraceServiceRequest::default(), None)
    };
    {
        let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
        let a = queue
            .append_live(payload(1), batch("a"), 100)
            .await
            .unwrap();
        let b = queue.append(payload(2)).await.unwrap();
        let c = queue
            .append_live(payload(3), batch("c"), 100)
            .await
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(queue.next_item().await.unwrap());
        }
        assert!(
            matches!(&got[0], (s, Item::Live(x)) if *s == a && x.context().api_key_name.as_deref() == Some("a"))
        );
        assert!(matches!(&got[1], (s, Item::Stored(bytes)) if *s == b && *bytes == payload(2)));
        assert!(matches!(&got[2], (s, Item::Live(_)) if *s == c));
        let stats = queue.stats();
        assert_eq!(stats.entries_handed_live, 2);
        assert_eq!(
            stats.entries_read_from_disk, 1,
            "only the entry appended without its batch"
        );
        queue.shutdown().await.unwrap();
    }
    // Nothing was delivered: after a restart all three come from disk, byte for byte.
    let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
    for n in 1..=3 {
        let (_, item) = queue.next_item().await.unwrap();
        assert!(matches!(item, Item::Stored(ref bytes) if *bytes == payload(n)));
    }
    assert_eq!(queue.stats().entries_handed_live, 0);
    assert_eq!(queue.stats().entries_read_from_disk, 3);
}

#[tokio::test]
async fn the_oldest_pending_entry_tells_its_receive_time() {
    use std::time::{Duration, UNIX_EPOCH};
    use tracecast_core::BatchContext;
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
    assert_eq!(queue.oldest_pending_received_at().await, None, "empty");
    let mut ctx = BatchContext::new("otlp");
    for secs in [1_000, 2_000] {
        ctx.received_at = UNIX_EPOCH + Duration::from_secs(secs);
        queue
            .append(tracecast_queue::encode_entry(&ctx, b"spans"))
            .await
            .unwrap();
    }
    let first = UNIX_EPOCH + Duration::from_secs(1_000);
    assert_eq!(queue.oldest_pending_received_at().await, Some(first));
    // Delivered out of order: the second one does not move the oldest.
    let (a, _) = queue.next().await.unwrap();
    let (b, _) = queue.next().await.unwrap();
    queue.token(b).confirm();
    assert_eq!(queue.oldest_pending_received_at().await, Some(first));
    queue.token(a).confirm();
    assert_eq!(
        queue.oldest_pending_received_at().await,
        None,
        "all delivered"
    );
    // An entry not framed by encode_entry has no receive time to tell.
    queue
        .append(bytes::Bytes::from_static(b"raw"))
        .await
        .unwrap();
    assert_eq!(queue.oldest_pending_received_at().await, None);
    queue.shutdown().await.unwrap();
}
