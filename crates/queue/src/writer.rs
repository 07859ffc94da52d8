//! The writer thread: group commit, segment rolling, cursor persistence, segment deletion.
//!
//! One OS thread owns the active segment file. `append` sends its entry over a channel and
//! awaits a reply; the thread takes everything pending at that moment (up to
//! [`GROUP_MAX_BYTES`]), writes it with one `write` and, with `fsync: always`, one
//! `fdatasync`, then answers every caller. While it is syncing, new appends pile up in the
//! channel and form the next group, so the number of fsyncs follows the disk's speed, not
//! the request rate. A thread rather than a task: `fdatasync` blocks for milliseconds, and
//! one long-lived thread is cheaper than a `spawn_blocking` per group.
//!
//! Every `cursor_interval` (and on `close`/`sync`/`shutdown`) the thread writes the committed
//! cursor and deletes segments wholly below it. The cursor is written before any deletion,
//! so a crash in between leaves files that the next start deletes, never a cursor behind
//! missing data.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::QueueError;
use crate::format::{self, HEADER_LEN, RECORD_OVERHEAD};
use crate::options::FsyncPolicy;
use crate::recovery::remove_segment;
use crate::state::{SegmentInfo, Shared};

/// Upper bound of one write group, so one huge burst does not delay its first callers.
const GROUP_MAX_BYTES: u64 = 8 << 20;
/// Longest a write group waits for more appends (see `Writer::gather`): a small fraction
/// of one fsync.
const GATHER_WAIT: Duration = Duration::from_micros(200);

pub(crate) type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// One entry to append, and its decoded batch when the caller has it.
pub(crate) struct Record {
    pub bytes: Bytes,
    pub live: Option<(tracecast_core::TraceBatch, u64)>,
}

pub(crate) enum Command {
    Append {
        entry: Record,
        /// Bytes reserved against `max_bytes` by the caller (frame included).
        reserved: u64,
        reply: Reply<u64>,
    },
    /// No more appends: publish "closed" once the appends sent before are written.
    Close,
    /// Write the cursor and delete delivered segments now.
    Sync(Reply<()>),
    /// Exit. `graceful`: sync, write the cursor and publish "closed" first; otherwise stop
    /// at once, like a crash (what was appended is durable per the fsync policy).
    Stop {
        graceful: bool,
        reply: Option<Reply<()>>,
    },
}

struct Active {
    base: u64,
    file: File,
    count: u64,
    bytes: u64,
    /// Written since the last fsync.
    dirty: bool,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Command>,
    active: Option<Active>,
    next_seq: u64,
    persisted: Option<u64>,
    closed: bool,
    last_sync: Instant,
    /// Size of the previous write group, and how long the current one may wait to match it.
    last_group: usize,
    gather_deadline: Option<Instant>,
    next_housekeeping: Instant,
}

enum Flow {
    Continue,
    Exit,
}

impl Writer {
    pub fn new(
        shared: Arc<Shared>,
        rx: Receiver<Command>,
        next_seq: u64,
        persisted: Option<u64>,
    ) -> Self {
        let now = Instant::now();
        Self {
            next_housekeeping: now + shared.options.cursor_interval,
            shared,
            rx,
            active: None,
            next_seq,
            persisted,
            closed: false,
            last_sync: now,
            last_group: 0,
            gather_deadline: None,
        }
    }

    pub fn run(mut self) {
        loop {
            match self.rx.recv_timeout(self.wait_time()) {
                Ok(first) => {
                    if let Flow::Exit = self.handle(first) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every handle is gone without a Stop (cannot happen: Drop sends one).
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.sync_if_interval_due();
            if Instant::now() >= self.next_housekeeping {
                if let Err(e) = self.housekeeping() {
                    tracing::warn!(error = %e, "durable queue housekeeping failed; retrying");
                }
            }
        }
    }

    fn wait_time(&self) -> Duration {
        let now = Instant::now();
        let mut wake = self.next_housekeeping;
        if let (FsyncPolicy::Interval(d), Some(a)) = (self.shared.options.fsync, &self.active) {
            if a.dirty {
                wake = wake.min(self.last_sync + d);
            }
        }
        wake.saturating_duration_since(now)
    }

    /// Handles `first` and every append already waiting behind it, as one group.
    fn handle(&mut self, first: Command) -> Flow {
        self.gather_deadline = None;
        let mut group = Vec::new();
        let mut group_bytes = 0;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Append {
                    entry,
                    reserved,
                    reply,
                } => {
                    if self.closed {
                        self.release(reserved);
                        let _ = reply.send(Err(QueueError::Closed));
                    } else {
                        group_bytes += reserved;
                        group.push((entry, reserved, reply));
                    }
                    if group_bytes < GROUP_MAX_BYTES {
                        next = self.rx.try_recv().ok().or_else(|| self.gather(group.len()));
                    }
                }
                control => {
                    self.write_group(std::mem::take(&mut group));
                    return self.control(control);
                }
            }
        }
        self.last_group = group.len();
        self.write_group(group);
        Flow::Continue
    }

    /// With `fsync: always`, waits a little for more appends when the group is smaller than
    /// the previous one: the callers answered by the last fsync are sending their next
    /// entries right now, and one fsync for all of them beats one for the first few and
    /// another for the rest. Bounded by [`GATHER_WAIT`], and only while the group is
    /// growing towards the last group's size, so a lone caller is not delayed.
    fn gather(&mut self, have: usize) -> Option<Command> {
        if self.shared.options.fsync != FsyncPolicy::Always || have >= self.last_group {
            return None;
        }
        let deadline = *self
            .gather_deadline
            .get_or_insert_with(|| Instant::now() + GATHER_WAIT);
        let cmd = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok();
        if cmd.is_none() {
            self.gather_deadline = None;
        }
        cmd
    }

    fn control(&mut self, cmd: Command) -> Flow {
        match cmd {
            Command::Append { .. } => Flow::Continue,
            Command::Close => {
                self.publish_closed();
                if let Err(e) = self.housekeeping() {
                    tracing::warn!(error = %e, "durable queue: could not save the cursor on close");
                }
                Flow::Continue
            }
            Command::Sync(reply) => {
                let _ = reply.send(self.housekeeping());
                Flow::Continue
            }
            Command::Stop { graceful, reply } => {
                if graceful {
                    self.seal_active();
                    self.publish_closed();
                    let result = self.housekeeping();
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Flow::Exit
            }
        }
    }

    fn publish_closed(&mut self) {
        self.closed = true;
        self.shared.published.send_modify(|p| p.closed = true);
    }

    fn release(&self, reserved: u64) {
        self.shared.used_bytes.fetch_sub(reserved, Ordering::AcqRel);
    }

    fn write_group(&mut self, mut group: Vec<(Record, u64, Reply<u64>)>) {
        let segment_bytes = self.shared.segment_bytes;
        let mut buf = Vec::new();
        while !group.is_empty() {
            let first_len = RECORD_OVERHEAD + group[0].0.bytes.len() as u64;
            let needs_roll = self
                .active
                .as_ref()
                .is_some_and(|a| a.count > 0 && a.bytes + first_len > segment_bytes);
            if needs_roll {
                self.seal_active();
            }
            if self.active.is_none() {
                if let Err(e) = self.open_segment() {
                    tracing::error!(error = %e, "durable queue: cannot create a segment; refusing appends");
                    for (_, reserved, reply) in group.drain(..) {
                        self.release(reserved);
                        let _ = reply.send(Err(e.duplicate()));
                    }
                    return;
                }
            }
            let Some(active) = self.active.as_ref() else {
                return;
            };
            // As many entries as fit in this segment; at least one (a big entry gets a
            // segment of its own).
            let mut size = active.bytes;
            let mut n = 0;
            buf.clear();
            for (entry, _, _) in &group {
                let len = RECORD_OVERHEAD + entry.bytes.len() as u64;
                if n > 0 && size + len > segment_bytes {
                    break;
                }
                format::encode_record(&mut buf, &entry.bytes);
                size += len;
                n += 1;
            }
            let chunk: Vec<_> = group.drain(..n).collect();
            self.write_chunk(&buf, chunk);
        }
    }

    /// One write (and with `fsync: always` one fdatasync) for entries going to the active
    /// segment; answers their callers.
    fn write_chunk(&mut self, buf: &[u8], chunk: Vec<(Record, u64, Reply<u64>)>) {
        let policy = self.shared.options.fsync;
        let path = match &self.active {
            Some(a) => format::segment_path(&self.shared.dir, a.base),
            None => return,
        };
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let prev = active.bytes;
        let result = (|| -> io::Result<()> {
            active.file.seek(SeekFrom::Start(prev))?;
            active.file.write_all(buf)?;
            if policy == FsyncPolicy::Always {
                active.file.sync_data()?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Not acknowledged, so the bytes must not be replayed as if they were: cut them
            // off. If even that fails, abandon the segment: the next append opens a new one,
            // and the next start cuts the garbage as a corrupt tail.
            let rolled_back = active.file.set_len(prev).is_ok();
            if !rolled_back {
                self.active = None;
            }
            let err = QueueError::io("writing segment", &path, e);
            tracing::error!(error = %err, rolled_back, "durable queue write failed; the appends are refused");
            for (_, reserved, reply) in chunk {
                self.release(reserved);
                let _ = reply.send(Err(err.duplicate()));
            }
            return;
        }
        let n = chunk.len() as u64;
        active.bytes += buf.len() as u64;
        active.count += n;
        active.dirty = policy != FsyncPolicy::Always;
        let info = SegmentInfo {
            end: active.base + active.count,
            bytes: active.bytes,
        };
        let base = active.base;
        let counters = &self.shared.counters;
        if policy == FsyncPolicy::Always {
            self.shared.count(&counters.fsyncs, 1);
            self.last_sync = Instant::now();
        }
        self.shared.count(&counters.write_groups, 1);
        self.shared.count(&counters.appends, n);
        self.shared.segments().insert(base, info);
        let first = self.next_seq;
        self.next_seq += n;
        let end = self.next_seq;
        let mut replies = Vec::with_capacity(chunk.len());
        {
            // Live batches are in place before the entries are published, so the reader
            // never reads from disk what it could have had from memory.
            let mut live = crate::state::lock(&self.shared.live);
            for (i, (record, _, reply)) in chunk.into_iter().enumerate() {
                if let Some((batch, size)) = record.live {
                    live.insert(first + i as u64, batch, size);
                }
                replies.push(reply);
            }
        }
        self.shared.published.send_modify(|p| p.end = end);
        for (i, reply) in replies.into_iter().enumerate() {
            let _ = reply.send(Ok(first + i as u64));
        }
    }

    /// Starts a segment at `next_seq`: header written (and synced unless `fsync: never`)
    /// and the directory entry synced, so a crash cannot leave records in a nameless file.
    fn open_segment(&mut self) -> Result<(), QueueError> {
        let base = self.next_seq;
        let path = format::segment_path(&self.shared.dir, base);
        let sync = self.shared.options.fsync != FsyncPolicy::Never;
        let result = (|| -> io::Result<File> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)?;
            file.write_all(&format::encode_header(base))?;
            if sync {
                file.sync_data()?;
                format::sync_dir(&self.shared.dir)?;
            }
            Ok(file)
        })();
        let file = result.map_err(|e| {
            let _ = std::fs::remove_file(&path);
            QueueError::io("creating segment", &path, e)
        })?;
        if sync {
            self.shared.count(&self.shared.counters.fsyncs, 1);
        }
        self.shared
            .used_bytes
            .fetch_add(HEADER_LEN, Ordering::AcqRel);
        self.shared.segments().insert(
            base,
            SegmentInfo {
                end: base,
                bytes: HEADER_LEN,
            },
        );
        self.active = Some(Active {
            base,
            file,
            count: 0,
            bytes: HEADER_LEN,
            dirty: false,
        });
        Ok(())
    }

    fn sync_active(&mut self) {
        let Some(a) = self.active.as_mut() else {
            return;
        };
        if !a.dirty || self.shared.options.fsync == FsyncPolicy::Never {
            return;
        }
        match a.file.sync_data() {
            Ok(()) => {
                a.dirty = false;
                self.last_sync = Instant::now();
                self.shared.count(&self.shared.counters.fsyncs, 1);
            }
            // The entries were acknowledged already (interval policy): nothing to refuse.
            // Keep the segment dirty so the next interval (not the next instant) retries.
            Err(e) => {
                self.last_sync = Instant::now();
                tracing::error!(error = %e, "durable queue: fsync failed");
            }
        }
    }

    fn sync_if_interval_due(&mut self) {
        if let FsyncPolicy::Interval(d) = self.shared.options.fsync {
            if self.last_sync.elapsed() >= d {
                self.sync_active();
            }
        }
    }

    /// Stops writing to the active segment (the next append starts a new one).
    fn seal_active(&mut self) {
        self.sync_active();
        self.active = None;
    }

    /// Writes the cursor if it moved, then deletes segments wholly below it. A fully
    /// delivered active segment of at least a quarter segment is sealed first so its space
    /// can be reclaimed too (else a queue that is always caught up would never shrink it).
    fn housekeeping(&mut self) -> Result<(), QueueError> {
        self.next_housekeeping = Instant::now() + self.shared.options.cursor_interval;
        let committed = self.shared.tracker().committed;
        if self.persisted != Some(committed) {
            format::write_cursor(&self.shared.dir, committed)
                .map_err(|e| QueueError::io("writing cursor in", &self.shared.dir, e))?;
            self.persisted = Some(committed);
            self.shared.persisted.store(committed, Ordering::Release);
            self.shared.count(&self.shared.counters.cursor_writes, 1);
        }
        let roll = self.active.as_ref().is_some_and(|a| {
            a.count > 0 && a.base + a.count <= committed && a.bytes >= self.shared.segment_bytes / 4
        });
        if roll {
            self.seal_active();
        }
        let active_base = self.active.as_ref().map(|a| a.base);
        let passed: Vec<(u64, SegmentInfo)> = self
            .shared
            .segments()
            .iter()
            .filter(|(&b, s)| s.end <= committed && Some(b) != active_base)
            .map(|(&b, &s)| (b, s))
            .collect();
        for (base, info) in passed {
            remove_segment(&format::segment_path(&self.shared.dir, base))?;
            self.shared.segments().remove(&base);
            self.release(info.bytes);
        }
        Ok(())
    }
}
