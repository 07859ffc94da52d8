//! [`DurableQueue`]: the handle the receiver appends to and the pipeline reads from.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tracecast_core::ack::{AckSink, DeliveryToken};
use tracecast_core::TraceBatch;

use crate::error::QueueError;
use crate::format::RECORD_OVERHEAD;
use crate::options::QueueOptions;
use crate::reader::Reader;
use crate::recovery::{self, RecoveryReport};
use crate::state::{lock, AckTracker, Counters, Published, QueueAcks, Shared};
use crate::writer::{Command, Record, Writer};

/// A durable, bounded, single-consumer queue in one directory. Cheap to clone (all clones
/// are the same queue). See the crate documentation for the design.
#[derive(Clone)]
pub struct DurableQueue {
    inner: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    tx: Sender<Command>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: tokio::sync::Mutex<Reader>,
    acks: Arc<dyn AckSink>,
    /// Holds the directory's `LOCK` file locked for the queue's lifetime.
    _lock: std::fs::File,
}

/// Takes the exclusive lock on `dir/LOCK` (released by the OS when the process ends, even
/// on `kill -9`), so two processes never write one queue.
fn lock_dir(dir: &Path) -> Result<std::fs::File, QueueError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| QueueError::io("creating the queue directory", dir, e))?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| QueueError::io("opening the lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(QueueError::InUse {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(QueueError::io("locking", &path, e)),
    }
}

impl Drop for Handle {
    /// The last handle gone without `shutdown`: stop the writer like a crash would (no
    /// final cursor write; what was appended is durable per the fsync policy).
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Stop {
            graceful: false,
            reply: None,
        });
        if let Some(writer) = lock(&self.writer).take() {
            let _ = writer.join();
        }
    }
}

/// One entry as the consumer gets it.
#[derive(Debug)]
pub enum Item {
    /// The decoded batch, straight from the append (no tokens yet).
    Live(TraceBatch),
    /// The stored entry bytes (decode with [`crate::decode_entry`]).
    Stored(Bytes),
}

/// A snapshot of the queue's state and counters (for metrics and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Sequence number the next append gets.
    pub next_seq: u64,
    /// Lowest sequence number not yet delivered.
    pub committed_seq: u64,
    /// The committed cursor as last written to disk (replay after a crash starts here).
    pub persisted_seq: u64,
    /// Entries appended and not yet delivered (what `QUEUE_DEPTH` reports).
    pub entries_pending: u64,
    /// Entries delivered out of order above the cursor (replayed if the process crashed now).
    pub delivered_above_cursor: u64,
    /// Segment bytes on disk, plus bytes of appends in flight.
    pub bytes_on_disk: u64,
    /// The bound `bytes_on_disk` is kept under.
    pub max_bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// Appends written since open.
    pub appends: u64,
    /// Write groups (one `write` each) since open.
    pub write_groups: u64,
    /// `fdatasync` calls on segment files since open (group commit keeps this far below
    /// `appends` under concurrency).
    pub fsyncs: u64,
    /// Cursor file writes since open.
    pub cursor_writes: u64,
    /// Segments found unreadable while reading (entries skipped, logged as errors).
    pub read_errors: u64,
    /// Sequence numbers skipped because their records were lost to corruption.
    pub skipped_entries: u64,
    /// Entries handed to the consumer as live batches, without reading the queue files.
    pub entries_handed_live: u64,
    /// Entries read back from the queue files (replay after a restart, or a consumer that
    /// fell more than 16 MiB of live batches behind).
    pub entries_read_from_disk: u64,
}

impl DurableQueue {
    /// Opens or creates the queue in `dir` and recovers it: every record is checked (length
    /// and CRC32); a torn or corrupt tail is copied to `dir/corrupt/`, cut off and reported;
    /// delivery resumes at the committed cursor. Blocking (it reads every segment at or
    /// after the cursor once): call it before serving, or in `spawn_blocking`. Only one
    /// queue may have a directory open at a time.
    pub fn open(dir: &Path, options: QueueOptions) -> Result<(Self, RecoveryReport), QueueError> {
        let problems = options.problems();
        if !problems.is_empty() {
            let text: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect();
            return Err(QueueError::InvalidOptions(text.join("; ")));
        }
        let lock = lock_dir(dir)?;
        let recovered = recovery::recover(dir)?;
        let report = recovered.report;
        let used: u64 = recovered.segments.values().map(|s| s.bytes).sum();
        let (published, published_rx) = watch::channel(Published {
            end: report.next_seq,
            closed: false,
        });
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            segment_bytes: options.effective_segment_bytes(),
            options,
            segments: Mutex::new(recovered.segments),
            active_base: AtomicU64::new(crate::state::NO_ACTIVE),
            tracker: Mutex::new(AckTracker::new(report.committed_seq)),
            published,
            used_bytes: AtomicU64::new(used),
            persisted: AtomicU64::new(recovered.persisted.unwrap_or(report.committed_seq)),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            failed: Mutex::default(),
            failed_notify: tokio::sync::Notify::new(),
            live: Mutex::default(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::start(shared.clone(), rx, report.next_seq, recovered.persisted)
            .map_err(|e| QueueError::io("starting the queue threads for", dir, e))?;
        let thread = std::thread::Builder::new()
            .name("tracecast-queue-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| QueueError::io("starting the writer thread for", dir, e))?;
        let acks: Arc<dyn AckSink> = Arc::new(QueueAcks(shared.clone()));
        let queue = Self {
            inner: Arc::new(Handle {
                reader: tokio::sync::Mutex::new(Reader::new(report.committed_seq, published_rx)),
                shared,
                tx,
                writer: Mutex::new(Some(thread)),
                acks,
                _lock: lock,
            }),
        };
        Ok((queue, report))
    }

    /// Appends one entry and returns its sequence number once it is durable per the fsync
    /// policy: only then may the receiver answer 2xx. Concurrent appends share one write
    /// and one fsync (group commit).
    ///
    /// Errors: `Full` at once when `max_bytes` would be passed (answer 429/503 with
    /// Retry-After); `Io` when the write or fsync failed (disk full...): the entry is not
    /// stored; `Closed` after `close()`; `EntryTooLarge` when it could never fit.
    /// If the future is dropped after the entry was handed to the writer, the entry may
    /// still be stored (at least once: the client, having no 2xx, sends it again).
    pub async fn append(&self, entry: Bytes) -> Result<u64, QueueError> {
        self.append_record(entry, None).await
    }

    /// [`DurableQueue::append`] for an entry whose decoded batch is at hand (the receiver's
    /// request): the consumer gets `batch` from memory ([`Item::Live`]) instead of reading
    /// the record back from disk, while the live batches of this queue stay within 16 MiB
    /// (`size`: about the batch's memory). After a restart entries come from disk.
    pub async fn append_live(
        &self,
        entry: Bytes,
        batch: TraceBatch,
        size: u64,
    ) -> Result<u64, QueueError> {
        self.append_record(entry, Some((batch, size))).await
    }

    async fn append_record(
        &self,
        entry: Bytes,
        live: Option<(TraceBatch, u64)>,
    ) -> Result<u64, QueueError> {
        let shared = &self.inner.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(QueueError::Closed);
        }
        let max_bytes = shared.options.max_bytes;
        let size = entry.len() as u64 + RECORD_OVERHEAD;
        if entry.len() > u32::MAX as usize || size > max_bytes {
            return Err(QueueError::EntryTooLarge {
                size: entry.len() as u64,
                max_bytes,
            });
        }
        let before = shared.used_bytes.fetch_add(size, Ordering::AcqRel);
        if before + size > max_bytes {
            shared.used_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(QueueError::Full {
                used: before,
                max_bytes,
            });
        }
        let (reply, answer) = oneshot::channel();
        let cmd = Command::Append {
            entry: Record { bytes: entry, live },
            reserved: size,
            reply,
        };
        if self.inner.tx.send(cmd).is_err() {
            shared.used_bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(QueueError::Closed);
        }
        answer.await.unwrap_or(Err(QueueError::Closed))
    }

    /// The next entry, in order, for the queue's single consumer; waits for one. After
    /// `open` it starts with the replay of everything not delivered. Returns `None` once
    /// the queue is closed and drained. Cancel-safe. Each entry must be acknowledged through
    /// a [`DeliveryToken`] (see [`DurableQueue::token`]), or abandoned to be replayed at the
    /// next start.
    pub async fn next(&self) -> Option<(u64, Bytes)> {
        Some(match self.next_item().await? {
            (seq, Item::Stored(bytes)) => (seq, bytes),
            (seq, Item::Live(batch)) => (
                seq,
                crate::encode_entry(batch.context(), &batch.to_protobuf()),
            ),
        })
    }

    /// The next entry, like [`DurableQueue::next`], as the live batch when it was appended
    /// with [`DurableQueue::append_live`] by this process and is still held, else as the
    /// stored bytes. Cancel-safe.
    pub async fn next_item(&self) -> Option<(u64, Item)> {
        let mut reader = self.inner.reader.lock().await;
        reader.next(&self.inner.shared).await
    }

    /// The sink delivery tokens of this queue report to. Acks may come in any order and
    /// from any thread; the sink does not keep the queue's writer alive.
    pub fn ack_sink(&self) -> Arc<dyn AckSink> {
        self.inner.acks.clone()
    }

    /// A delivery token for entry `seq`: when its last clone drops, the entry is delivered.
    pub fn token(&self, seq: u64) -> DeliveryToken {
        DeliveryToken::new(seq, self.ack_sink())
    }

    /// The next entry whose delivery failed: some claim on it was dropped without being
    /// confirmed or abandoned (a panic, a failure nothing could keep). The consumer retries
    /// it ([`DurableQueue::read_entry`]) or quarantines it and confirms it; until then it
    /// holds the committed cursor back. Waits for one; cancel-safe.
    pub async fn next_failed(&self) -> u64 {
        let shared = &self.inner.shared;
        loop {
            let notified = shared.failed_notify.notified();
            if let Some(seq) = lock(&shared.failed).pop_front() {
                return seq;
            }
            notified.await;
        }
    }

    /// Reads entry `seq` from disk again (for a retry). `Ok(None)` when it is no longer
    /// there (delivered and deleted, or lost to corruption).
    pub async fn read_entry(&self, seq: u64) -> Result<Option<Bytes>, QueueError> {
        let shared = self.inner.shared.clone();
        let dir = shared.dir.clone();
        tokio::task::spawn_blocking(move || crate::reader::read_one(&shared, seq))
            .await
            .map_err(|e| QueueError::io("re-reading an entry in", &dir, std::io::Error::other(e)))?
            .map_err(|e| QueueError::io("re-reading an entry in", &dir, e))
    }

    /// When the oldest undelivered entry was received (the `received_at` framed in it by
    /// [`crate::encode_entry`]): how long the queue has been behind, for the status page.
    /// `None` when nothing is pending, or the entry cannot be read or was not framed by
    /// `encode_entry`. Reads one entry from disk.
    pub async fn oldest_pending_received_at(&self) -> Option<std::time::SystemTime> {
        let stats = self.stats();
        if stats.entries_pending == 0 {
            return None;
        }
        let entry = self.read_entry(stats.committed_seq).await.ok()??;
        crate::decode_entry(&entry)
            .ok()
            .map(|(ctx, _)| ctx.received_at)
    }

    /// The queue's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// A snapshot of the queue's state and counters.
    pub fn stats(&self) -> QueueStats {
        let shared = &self.inner.shared;
        let next_seq = shared.published.borrow().end;
        let (committed, above) = {
            let t = shared.tracker();
            (t.committed, t.delivered_above())
        };
        let c = &shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        QueueStats {
            next_seq,
            committed_seq: committed,
            persisted_seq: shared.persisted.load(Ordering::Acquire),
            entries_pending: next_seq.saturating_sub(committed).saturating_sub(above),
            delivered_above_cursor: above,
            bytes_on_disk: shared.used_bytes.load(Ordering::Acquire),
            max_bytes: shared.options.max_bytes,
            segments: shared.segments().len(),
            appends: get(&c.appends),
            write_groups: get(&c.write_groups),
            fsyncs: get(&c.fsyncs),
            cursor_writes: get(&c.cursor_writes),
            read_errors: get(&c.read_errors),
            skipped_entries: get(&c.skipped),
            entries_handed_live: get(&c.handed_live),
            entries_read_from_disk: get(&c.read_from_disk),
        }
    }

    /// Stops accepting appends (they get `Closed`); appends already submitted are written,
    /// then `next()` drains and returns `None`. The cursor is saved now and, as acks keep
    /// coming while the pipeline drains, every `cursor_interval` until `shutdown`.
    pub fn close(&self) {
        self.inner.shared.closed.store(true, Ordering::Release);
        let _ = self.inner.tx.send(Command::Close);
    }

    /// Saves the committed cursor now and deletes the segments wholly delivered (otherwise
    /// done every `cursor_interval`).
    pub async fn sync(&self) -> Result<(), QueueError> {
        let (reply, answer) = oneshot::channel();
        if self.inner.tx.send(Command::Sync(reply)).is_err() {
            return Err(QueueError::Closed);
        }
        answer.await.unwrap_or(Err(QueueError::Closed))
    }

    /// Graceful end, after the pipeline finished with what it read: closes, fsyncs, saves
    /// the final cursor and stops the writer thread. Entries not delivered by now (tokens
    /// still held or abandoned) are replayed at the next start.
    pub async fn shutdown(&self) -> Result<(), QueueError> {
        self.inner.shared.closed.store(true, Ordering::Release);
        let (reply, answer) = oneshot::channel();
        let stop = Command::Stop {
            graceful: true,
            reply: Some(reply),
        };
        if self.inner.tx.send(stop).is_err() {
            return Ok(());
        }
        answer.await.unwrap_or(Ok(()))
    }
}
