//! State shared by the queue handle, the writer thread, the reader and the ack sink.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;
use tracecast_core::ack::AckSink;

use crate::options::QueueOptions;

/// One segment file as the writer and reader see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    /// One past the sequence number of its last record (`base` + record count).
    pub end: u64,
    /// File size in bytes (header included).
    pub bytes: u64,
}

/// What the reader may read: `end` is one past the last entry whose append resolved;
/// `closed` means no more will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    pub end: u64,
    pub closed: bool,
}

/// Which entries were delivered. Acks arrive out of order: `committed` is the lowest
/// sequence number not yet delivered; `done` holds delivered ranges above it
/// (start -> end exclusive, disjoint, not adjacent), so memory grows with the number of
/// holes, not the number of entries.
#[derive(Debug, Default)]
pub(crate) struct AckTracker {
    pub committed: u64,
    done: BTreeMap<u64, u64>,
    done_count: u64,
}

impl AckTracker {
    pub fn new(committed: u64) -> Self {
        Self {
            committed,
            ..Self::default()
        }
    }

    /// Marks `[start, end)` delivered (or skipped: sequence numbers lost to corruption).
    pub fn mark(&mut self, start: u64, end: u64) {
        let mut s = start.max(self.committed);
        let mut e = end;
        if s >= e {
            return;
        }
        if let Some((&ps, &pe)) = self.done.range(..=s).next_back() {
            if pe >= s {
                self.done.remove(&ps);
                self.done_count -= pe - ps;
                s = ps;
                e = e.max(pe);
            }
        }
        while let Some((&ns, &ne)) = self.done.range(s..).next() {
            if ns > e {
                break;
            }
            self.done.remove(&ns);
            self.done_count -= ne - ns;
            e = e.max(ne);
        }
        if s == self.committed {
            self.committed = e;
        } else {
            self.done.insert(s, e);
            self.done_count += e - s;
        }
    }

    /// Entries delivered above the cursor (they would be replayed after a crash).
    pub fn delivered_above(&self) -> u64 {
        self.done_count
    }
}

/// Monotonic counters for `QueueStats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub appends: AtomicU64,
    pub fsyncs: AtomicU64,
    pub write_groups: AtomicU64,
    pub cursor_writes: AtomicU64,
    pub read_errors: AtomicU64,
    pub skipped: AtomicU64,
    /// Entries handed to the consumer from memory / read back from disk.
    pub handed_live: AtomicU64,
    pub read_from_disk: AtomicU64,
}

pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: QueueOptions,
    pub segment_bytes: u64,
    pub segments: Mutex<BTreeMap<u64, SegmentInfo>>,
    /// Base of the segment the writer appends to, [`NO_ACTIVE`] when none. Changed only
    /// with the `segments` lock held, so the housekeeping thread, reading it under that
    /// lock, never deletes the segment being written (a new, empty segment is "delivered").
    pub active_base: AtomicU64,
    pub tracker: Mutex<AckTracker>,
    pub published: watch::Sender<Published>,
    /// Segment bytes on disk plus bytes reserved by appends in flight (the `max_bytes` check).
    pub used_bytes: AtomicU64,
    /// Cursor last written to disk.
    pub persisted: AtomicU64,
    pub closed: AtomicBool,
    pub counters: Counters,
    /// Entries some claim on which was dropped unsettled (not delivered), for the consumer
    /// to retry or quarantine ([`crate::DurableQueue::next_failed`]).
    pub failed: Mutex<std::collections::VecDeque<u64>>,
    pub failed_notify: tokio::sync::Notify,
    /// Decoded batches of entries appended by this process and not yet read: `next_item`
    /// hands them out instead of reading their records back from disk.
    pub live: Mutex<LiveBatches>,
}

/// `Shared::active_base` when the writer has no open segment.
pub(crate) const NO_ACTIVE: u64 = u64::MAX;

/// Most bytes of live batches a queue keeps (beyond it an entry is read back from disk
/// when its turn comes): a pipeline that fell behind must not pin its backlog in memory.
pub(crate) const LIVE_BYTES: u64 = 16 << 20;

/// Live batches by sequence number, with their approximate memory.
#[derive(Default)]
pub(crate) struct LiveBatches {
    batches: BTreeMap<u64, (tracecast_core::TraceBatch, u64)>,
    bytes: u64,
}

impl LiveBatches {
    /// Keeps `batch` for entry `seq` if it fits in [`LIVE_BYTES`].
    pub fn insert(&mut self, seq: u64, batch: tracecast_core::TraceBatch, size: u64) {
        if self.bytes + size <= LIVE_BYTES {
            self.bytes += size;
            self.batches.insert(seq, (batch, size));
        }
    }

    pub fn take(&mut self, seq: u64) -> Option<tracecast_core::TraceBatch> {
        let (batch, size) = self.batches.remove(&seq)?;
        self.bytes -= size;
        Some(batch)
    }

    /// The first live entry in `from..end`.
    pub fn first_in(&self, from: u64, end: u64) -> Option<u64> {
        self.batches.range(from..end).next().map(|(s, _)| *s)
    }
}

impl Shared {
    pub fn segments(&self) -> MutexGuard<'_, BTreeMap<u64, SegmentInfo>> {
        lock(&self.segments)
    }

    pub fn tracker(&self) -> MutexGuard<'_, AckTracker> {
        lock(&self.tracker)
    }

    pub fn count(&self, counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data (plain
/// numbers and maps updated in one step) is still consistent, so keep going.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The [`AckSink`] handed to delivery tokens. It holds the shared state, not the queue
/// handle, so tokens outliving the queue do not keep its writer thread alive.
pub(crate) struct QueueAcks(pub std::sync::Arc<Shared>);

impl AckSink for QueueAcks {
    fn delivered(&self, seq: u64) {
        // A token for an entry that was never appended (a caller bug) must not move the
        // cursor past real entries.
        if seq >= self.0.published.borrow().end {
            tracing::warn!(
                seq,
                "durable queue: ack for an entry that does not exist, ignored"
            );
            return;
        }
        self.0.tracker().mark(seq, seq + 1);
    }

    fn failed(&self, seq: u64) {
        if seq >= self.0.published.borrow().end {
            return;
        }
        lock(&self.0.failed).push_back(seq);
        self.0.failed_notify.notify_one();
    }
}
