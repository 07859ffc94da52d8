//! Crash and corruption recovery: torn tails at every byte offset, flipped bytes, corrupt
//! records in the middle of a segment, and a crash without `close`.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use support::*;
use tracecast_queue::{CursorState, DurableQueue, FsyncPolicy, QueueOptions, RecoveryReport};

const FIRST_SEGMENT: &str = "00000000000000000000.seg";
const HEADER: usize = 24;

/// Byte offset of record `i` in a segment holding `payload(0..)` from its start.
fn record_offset(i: u64) -> usize {
    HEADER + (0..i).map(|j| 8 + payload(j).len()).sum::<usize>()
}

/// A segment with entries `0..n`, written with fsync always, the queue then dropped.
async fn original_segment(n: u64, options: QueueOptions) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (queue, _) = DurableQueue::open(dir.path(), options).unwrap();
    append_all(&queue, 0..n).await;
    drop(queue);
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "the test needs one segment"
    );
    fs::read(dir.path().join(FIRST_SEGMENT)).unwrap()
}

/// Opens a fresh queue directory holding only `segment`.
fn open_with(segment: &[u8], dir: &Path, options: QueueOptions) -> (DurableQueue, RecoveryReport) {
    fs::write(dir.join(FIRST_SEGMENT), segment).unwrap();
    DurableQueue::open(dir, options).unwrap()
}

fn roomy() -> QueueOptions {
    QueueOptions {
        segment_bytes: 64 * 1024,
        ..small_options()
    }
}

/// Checks the queue serves exactly `0..intact`, then takes a new append.
async fn serves_intact_then_appends(queue: &DurableQueue, intact: u64) {
    assert_eq!(
        read_expected(queue, intact as usize).await,
        (0..intact).collect::<Vec<_>>()
    );
    // The next entry served is the new append: nothing of the cut tail comes back.
    assert_eq!(queue.append(payload(intact)).await.unwrap(), intact);
    assert_eq!(read_expected(queue, 1).await, vec![intact]);
}

#[tokio::test]
async fn a_tail_torn_at_any_byte_of_the_last_record_loses_only_that_record() {
    const N: u64 = 5;
    let original = original_segment(N, roomy()).await;
    let last = record_offset(N - 1);
    assert_eq!(original.len(), record_offset(N));
    for cut in last..original.len() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, report) = open_with(&original[..cut], dir.path(), roomy());
        assert_eq!(report.entries_to_replay, N - 1, "cut at {cut}");
        if cut == last {
            // Cut exactly between records: nothing is torn.
            assert!(report.corrupt.is_empty(), "cut at {cut}: {report:?}");
        } else {
            assert_eq!(report.corrupt.len(), 1, "cut at {cut}");
            let region = &report.corrupt[0];
            assert_eq!(region.offset as usize, last);
            assert_eq!(region.bytes as usize, cut - last);
            assert_eq!(report.corrupt_bytes() as usize, cut - last);
            let kept = fs::read(region.moved_to.as_ref().unwrap()).unwrap();
            assert_eq!(kept, &original[last..cut], "cut at {cut}");
            assert!(region
                .moved_to
                .as_ref()
                .unwrap()
                .starts_with(dir.path().join("corrupt")));
        }
        assert_eq!(
            fs::metadata(dir.path().join(FIRST_SEGMENT)).unwrap().len() as usize,
            last,
            "segment truncated at the last good record"
        );
        serves_intact_then_appends(&queue, N - 1).await;
    }
}

#[tokio::test]
async fn a_flipped_byte_anywhere_in_the_last_record_is_caught() {
    const N: u64 = 4;
    let original = original_segment(N, roomy()).await;
    let last = record_offset(N - 1);
    for at in last..original.len() {
        let mut damaged = original.clone();
        damaged[at] ^= 0x40;
        let dir = tempfile::tempdir().unwrap();
        let (queue, report) = open_with(&damaged, dir.path(), roomy());
        assert_eq!(report.corrupt.len(), 1, "flip at {at}: {report:?}");
        assert_eq!(report.corrupt[0].offset as usize, last);
        assert_eq!(report.corrupt[0].bytes as usize, original.len() - last);
        serves_intact_then_appends(&queue, N - 1).await;
    }
}

#[tokio::test]
async fn a_corrupt_record_mid_segment_cuts_the_rest_of_that_segment() {
    const N: u64 = 10;
    let original = original_segment(N, roomy()).await;
    let mut damaged = original.clone();
    let bad = record_offset(3);
    damaged[bad + 10] ^= 0xff; // a payload byte of record 3
    let dir = tempfile::tempdir().unwrap();
    let (queue, report) = open_with(&damaged, dir.path(), roomy());
    assert_eq!(report.corrupt.len(), 1);
    let region = &report.corrupt[0];
    assert_eq!(region.offset as usize, bad);
    assert_eq!(region.bytes as usize, original.len() - bad);
    assert!(region.reason.contains("checksum"), "{}", region.reason);
    // Records 4..10 are intact but cannot be found again without resync markers: they are
    // kept in corrupt/ with the bad one.
    assert_eq!(
        fs::read(region.moved_to.as_ref().unwrap()).unwrap(),
        &damaged[bad..]
    );
    serves_intact_then_appends(&queue, 3).await;
}

#[tokio::test]
async fn a_bad_segment_header_sets_the_whole_file_aside() {
    let original = original_segment(3, roomy()).await;
    let mut damaged = original.clone();
    damaged[2] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    let (queue, report) = open_with(&damaged, dir.path(), roomy());
    assert_eq!(report.corrupt.len(), 1);
    assert_eq!(report.corrupt[0].offset, 0);
    assert_eq!(report.corrupt[0].bytes as usize, original.len());
    assert_eq!(report.entries_to_replay, 0);
    assert!(segment_files(dir.path()).is_empty());
    assert_empty(&queue).await;
    queue.append(payload(0)).await.unwrap();
}

#[tokio::test]
async fn corruption_in_an_earlier_segment_keeps_the_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
        append_all(&queue, 0..60).await;
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    // Damage the third record of the second segment.
    let second = &files[1];
    let base: u64 = second
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut bytes = fs::read(second).unwrap();
    let offset = HEADER
        + (base..base + 2)
            .map(|j| 8 + payload(j).len())
            .sum::<usize>();
    bytes[offset + 9] ^= 0x01;
    fs::write(second, &bytes).unwrap();
    let next_base: u64 = files[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    let (queue, report) = DurableQueue::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    let lost = next_base - (base + 2);
    assert_eq!(report.entries_to_replay, 60 - lost);
    let expected: Vec<u64> = (0..60)
        .filter(|s| *s < base + 2 || *s >= next_base)
        .collect();
    let got = read_expected(&queue, expected.len()).await;
    assert_eq!(got, expected);
    assert_empty(&queue).await;
    let stats = queue.stats();
    assert_eq!(stats.skipped_entries, lost);
    // The lost sequence numbers do not hold the cursor back.
    for seq in got {
        queue.token(seq).confirm();
    }
    assert_eq!(queue.stats().committed_seq, 60);
    assert_eq!(queue.append(payload(60)).await.unwrap(), 60);
}

#[tokio::test]
async fn a_crash_without_close_keeps_every_appended_entry() {
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(50)),
        FsyncPolicy::Never,
    ] {
        let options = QueueOptions {
            fsync: policy,
            ..small_options()
        };
        let dir = tempfile::tempdir().unwrap();
        {
            let (queue, _) = DurableQueue::open(dir.path(), options.clone()).unwrap();
            let mut set = tokio::task::JoinSet::new();
            for i in 0..50u64 {
                let queue = queue.clone();
                set.spawn(async move { queue.append(payload(i)).await.unwrap() });
            }
            set.join_all().await;
            // Delivered, but the cursor was never saved (cursor_interval is an hour): the
            // crash replays these too.
            for _ in 0..15 {
                let (seq, _) = next(&queue).await;
                queue.token(seq).confirm();
            }
            assert_eq!(queue.stats().committed_seq, 15);
            assert_eq!(queue.stats().cursor_writes, 0);
            drop(queue); // no close, no shutdown: like kill -9
        }
        let (queue, report) = DurableQueue::open(dir.path(), options).unwrap();
        assert!(report.corrupt.is_empty(), "{policy:?}: {report:?}");
        assert_eq!(report.cursor, CursorState::Missing, "{policy:?}");
        assert_eq!(report.entries_to_replay, 50, "{policy:?}");
        let mut payloads = Vec::new();
        for expected_seq in 0..50 {
            let (seq, bytes) = next(&queue).await;
            assert_eq!(seq, expected_seq);
            payloads.push(bytes);
        }
        payloads.sort();
        let mut want: Vec<_> = (0..50).map(payload).collect();
        want.sort();
        assert_eq!(payloads, want, "{policy:?}");
    }
}

#[tokio::test]
async fn a_crash_after_a_saved_cursor_replays_from_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (queue, _) = DurableQueue::open(dir.path(), small_options()).unwrap();
        append_all(&queue, 0..30).await;
        for seq in read_expected(&queue, 10).await {
            queue.token(seq).confirm();
        }
        queue.sync().await.unwrap();
        // Delivered after the last save: replayed after the crash.
        for seq in read_expected(&queue, 5).await {
            queue.token(seq).confirm();
        }
        drop(queue);
    }
    let (queue, report) = DurableQueue::open(dir.path(), small_options()).unwrap();
    assert_eq!(report.cursor, CursorState::Found(10));
    assert_eq!(report.entries_to_replay, 20);
    assert_eq!(
        read_expected(&queue, 20).await,
        (10..30).collect::<Vec<_>>()
    );
    assert_empty(&queue).await;
}
