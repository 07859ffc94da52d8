//! The writer thread (group commit, segment rolling), the sync threads (pipelined
//! `fdatasync`) and the housekeeping thread (cursor persistence, segment deletion).
//!
//! One OS thread owns the active segment. `append` sends its entry over a channel and
//! awaits a reply; the writer takes everything pending at that moment (up to
//! [`GROUP_MAX_BYTES`]) and writes it with one positioned `write`.
//!
//! **Pipelined group commit** (`fsync: always`). The writer does not fsync: it hands each
//! written group to the sync threads and goes on writing the next one. A sync thread takes
//! every group handed over so far, calls one `fdatasync` per segment file among them, and
//! marks them synced; groups are published and answered in sequence order once they and
//! every group before them are synced. A group is handed over only after its write
//! returned, so the `fdatasync` that acknowledges it always started after its write
//! completed: an acknowledged entry is on disk. While one fdatasync runs, the next group is
//! already written and, on another sync thread, already syncing, so a request arriving
//! mid-fsync waits for about one fsync, not the rest of the running one plus its own. With
//! `interval` / `never` the writer answers after the write.
//!
//! **Housekeeping off the writer.** Every `cursor_interval` (and on `close`/`sync`/
//! `shutdown`) the housekeeping thread writes the committed cursor (two fsyncs and a
//! rename) and deletes segments wholly below it. Neither blocks appends any more. The
//! cursor is written before any deletion, so a crash in between leaves files that the next
//! start deletes, never a cursor behind missing data. The active segment is never deleted
//! (see `Shared::active_base`); sealing a fully delivered active segment stays with the
//! writer, which owns it.
//!
//! Threads rather than tasks: `fdatasync` and the cursor write block for milliseconds, and
//! long-lived threads are cheaper than a `spawn_blocking` per group. The writer joins the
//! other two before it exits, so none of them touches the directory after the queue is
//! gone (a reopen in the same process must not race a late deletion).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::QueueError;
use crate::format::{self, HEADER_LEN, RECORD_OVERHEAD};
use crate::options::FsyncPolicy;
use crate::recovery::remove_segment;
use crate::state::{lock, SegmentInfo, Shared, NO_ACTIVE};

/// Upper bound of one write group, so one huge burst does not delay its first callers.
const GROUP_MAX_BYTES: u64 = 8 << 20;
/// Longest a write group waits for more appends (see `Writer::gather`): a small fraction
/// of one fsync.
const GATHER_WAIT: Duration = Duration::from_micros(200);

pub(crate) type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

/// One entry to append, and its decoded batch when the caller has it.
pub(crate) struct Record {
    pub bytes: Bytes,
    pub live: Live,
}

pub(crate) enum Command {
    Append {
        entry: Record,
        /// Bytes reserved against `max_bytes` by the caller (frame included).
        reserved: u64,
        reply: Reply<u64>,
    },
    /// No more appends: publish "closed" once the appends sent before are durable.
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
    /// Shared with the sync thread, which fsyncs groups written to it.
    file: Arc<File>,
    count: u64,
    bytes: u64,
    /// Written since the last fsync (`interval` policy).
    dirty: bool,
}

/// A decoded batch and its approximate size, kept for the reader (see `Record::live`).
type Live = Option<(tracecast_core::TraceBatch, u64)>;

/// Written entries waiting to be published and answered: sequence numbers `first..`, one
/// per record, in order.
struct Written {
    first: u64,
    records: Vec<(Live, Reply<u64>)>,
}

/// Makes written entries visible to the reader (live batches first, so the reader never
/// reads from disk what it could have had from memory) and answers their callers.
/// `result` is `Err` when their fdatasync failed: the callers get the error (no 2xx, so the
/// client sends again), but the bytes are in the file and sequence numbers after them are
/// already written, so they are still published and delivered: at least once, as for an
/// append whose caller went away.
fn publish(shared: &Shared, written: Vec<Written>, result: Result<(), &QueueError>) {
    let Some(end) = written.last().map(|w| w.first + w.records.len() as u64) else {
        return;
    };
    let mut replies = Vec::new();
    {
        let mut live = lock(&shared.live);
        for w in written {
            for (i, (batch, reply)) in w.records.into_iter().enumerate() {
                if let (Some((batch, size)), Ok(())) = (batch, result) {
                    live.insert(w.first + i as u64, batch, size);
                }
                replies.push((w.first + i as u64, reply));
            }
        }
    }
    shared.published.send_modify(|p| p.end = end);
    for (seq, reply) in replies {
        let _ = reply.send(match result {
            Ok(()) => Ok(seq),
            Err(e) => Err(e.duplicate()),
        });
    }
}

/// Sync threads. More than one because a second `fdatasync` issued while one is in
/// flight does not wait for it on the disks measured (virtio: the block layer merges the
/// cache flushes): a group written mid-fsync is acknowledged after about one fsync, not
/// the rest of the running one plus its own. (On this kind of disk, 2 threads syncing
/// appends of 25 KB: p50 0.5 ms vs 2.6 ms for one thread.)
const SYNC_THREADS: usize = 3;

/// Groups synced (or failed), waiting to be published in sequence order.
struct Completion {
    state: Mutex<CompletionState>,
    published: std::sync::Condvar,
}

struct CompletionState {
    /// First sequence number not yet published.
    next: u64,
    /// Synced groups above `next`, by first sequence number, with their fsync result.
    done: std::collections::BTreeMap<u64, (Written, Result<(), QueueError>)>,
}

/// The sync threads: each takes every group handed over so far, calls one `fdatasync`
/// per segment file among them, and marks them synced; whichever thread completes the
/// lowest pending group publishes every contiguous synced group, so entries are published
/// and answered in sequence order however the fsyncs finish.
struct Syncer {
    tx: Sender<(Arc<File>, Written)>,
    threads: Vec<JoinHandle<()>>,
    completion: Arc<Completion>,
}

impl Syncer {
    fn start(shared: &Arc<Shared>, next_seq: u64) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(Arc<File>, Written)>();
        let rx = Arc::new(Mutex::new(rx));
        let completion = Arc::new(Completion {
            state: Mutex::new(CompletionState {
                next: next_seq,
                done: Default::default(),
            }),
            published: std::sync::Condvar::new(),
        });
        let mut syncer = Self {
            tx,
            threads: Vec::new(),
            completion,
        };
        for i in 0..SYNC_THREADS {
            let (shared, rx, completion) = (shared.clone(), rx.clone(), syncer.completion.clone());
            match std::thread::Builder::new()
                .name(format!("tracecast-queue-sync-{i}"))
                .spawn(move || sync_loop(&shared, &rx, &completion))
            {
                Ok(t) => syncer.threads.push(t),
                Err(e) => {
                    syncer.stop();
                    return Err(e);
                }
            }
        }
        Ok(syncer)
    }

    /// Waits until every sequence number below `end` is published.
    fn wait_published(&self, end: u64) {
        let mut state = lock(&self.completion.state);
        while state.next < end {
            state = self
                .completion
                .published
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Ends the threads once they synced and published everything handed to them.
    fn stop(self) {
        drop(self.tx);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn sync_loop(shared: &Shared, rx: &Mutex<Receiver<(Arc<File>, Written)>>, completion: &Completion) {
    loop {
        let groups: Vec<(Arc<File>, Written)> = {
            let rx = lock(rx);
            let Ok(first) = rx.recv() else {
                return;
            };
            let mut groups = vec![first];
            groups.extend(rx.try_iter());
            groups
        };
        sync_groups(shared, completion, groups);
    }
}

/// Syncs `groups` (already written) and publishes what became contiguous.
fn sync_groups(shared: &Shared, completion: &Completion, groups: Vec<(Arc<File>, Written)>) {
    // Groups come in sequence order; a segment roll between them means two files.
    let mut result = Ok(());
    let mut synced: Option<&Arc<File>> = None;
    for (file, _) in &groups {
        if synced.is_some_and(|s| Arc::ptr_eq(s, file)) {
            continue;
        }
        synced = Some(file);
        shared.count(&shared.counters.fsyncs, 1);
        if let Err(e) = file.sync_data() {
            result = Err(QueueError::io("syncing a segment in", &shared.dir, e));
        }
    }
    if let Err(e) = &result {
        tracing::error!(error = %e, "durable queue fsync failed; the appends are refused (and may still be delivered)");
    }
    let mut state = lock(&completion.state);
    for (_, w) in groups {
        let r = match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(e.duplicate()),
        };
        state.done.insert(w.first, (w, r));
    }
    // Publish the contiguous prefix, in order, under the lock (so two threads never
    // publish out of order).
    let mut moved = false;
    loop {
        let next = state.next;
        let Some((w, r)) = state.done.remove(&next) else {
            break;
        };
        state.next = w.first + w.records.len() as u64;
        publish(shared, vec![w], r.as_ref().map(|_| ()));
        moved = true;
    }
    drop(state);
    if moved {
        completion.published.notify_all();
    }
}

/// The committed cursor as last written, behind a lock so the housekeeping thread and the
/// writer's final pass never write at the same time.
pub(crate) struct Housekeeping {
    shared: Arc<Shared>,
    persisted: Mutex<Option<u64>>,
}

impl Housekeeping {
    /// Writes the cursor if it moved, then deletes the segments wholly below it, except the
    /// active one.
    fn run(&self) -> Result<(), QueueError> {
        let shared = &self.shared;
        let mut persisted = lock(&self.persisted);
        let committed = shared.tracker().committed;
        if *persisted != Some(committed) {
            format::write_cursor(&shared.dir, committed)
                .map_err(|e| QueueError::io("writing cursor in", &shared.dir, e))?;
            *persisted = Some(committed);
            shared.persisted.store(committed, Ordering::Release);
            shared.count(&shared.counters.cursor_writes, 1);
        }
        let passed: Vec<(u64, SegmentInfo)> = {
            let segments = shared.segments();
            let active = shared.active_base.load(Ordering::Acquire);
            segments
                .iter()
                .filter(|(&b, s)| s.end <= committed && b != active)
                .map(|(&b, &s)| (b, s))
                .collect()
        };
        for (base, info) in passed {
            remove_segment(&format::segment_path(&shared.dir, base))?;
            shared.segments().remove(&base);
            shared.used_bytes.fetch_sub(info.bytes, Ordering::AcqRel);
        }
        Ok(())
    }
}

enum HousekeepMsg {
    Run(Option<Reply<()>>),
    Stop,
}

fn housekeeping_loop(hk: Arc<Housekeeping>, rx: Receiver<HousekeepMsg>) {
    let interval = hk.shared.options.cursor_interval;
    let mut next = Instant::now() + interval;
    loop {
        let reply = match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(HousekeepMsg::Run(reply)) => reply,
            Ok(HousekeepMsg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => None,
        };
        next = Instant::now() + interval;
        let result = hk.run();
        match reply {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "durable queue housekeeping failed; retrying");
                }
            }
        }
    }
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Command>,
    active: Option<Active>,
    next_seq: u64,
    closed: bool,
    last_sync: Instant,
    /// Size of the previous write group, and how long the current one may wait to match it.
    last_group: usize,
    gather_deadline: Option<Instant>,
    /// When to check whether the active segment is wholly delivered (and seal it).
    next_roll_check: Instant,
    /// The sync threads (`fsync: always` only).
    syncer: Option<Syncer>,
    housekeeping: Arc<Housekeeping>,
    housekeeper: Option<(Sender<HousekeepMsg>, JoinHandle<()>)>,
}

enum Flow {
    Continue,
    Exit,
}

impl Writer {
    /// The writer's state, with its sync thread (`fsync: always`) and housekeeping thread
    /// started.
    pub fn start(
        shared: Arc<Shared>,
        rx: Receiver<Command>,
        next_seq: u64,
        persisted: Option<u64>,
    ) -> io::Result<Self> {
        let now = Instant::now();
        let syncer = if shared.options.fsync == FsyncPolicy::Always {
            Some(Syncer::start(&shared, next_seq)?)
        } else {
            None
        };
        let housekeeping = Arc::new(Housekeeping {
            shared: shared.clone(),
            persisted: Mutex::new(persisted),
        });
        let (htx, hrx) = mpsc::channel();
        let for_thread = housekeeping.clone();
        let housekeeper = match std::thread::Builder::new()
            .name("tracecast-queue-housekeeping".into())
            .spawn(move || housekeeping_loop(for_thread, hrx))
        {
            Ok(thread) => (htx, thread),
            Err(e) => {
                if let Some(syncer) = syncer {
                    syncer.stop();
                }
                return Err(e);
            }
        };
        Ok(Self {
            next_roll_check: now + shared.options.cursor_interval,
            shared,
            rx,
            active: None,
            next_seq,
            closed: false,
            last_sync: now,
            last_group: 0,
            gather_deadline: None,
            syncer,
            housekeeping,
            housekeeper: Some(housekeeper),
        })
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
                Err(RecvTimeoutError::Disconnected) => {
                    self.stop_threads();
                    return;
                }
            }
            self.sync_if_interval_due();
            if Instant::now() >= self.next_roll_check {
                self.roll_if_delivered();
            }
        }
    }

    fn wait_time(&self) -> Duration {
        let now = Instant::now();
        let mut wake = self.next_roll_check;
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
    /// entries right now, and one write for all of them beats one for the first few and
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
                self.closed = true;
                self.barrier();
                self.publish_closed();
                self.housekeep(None);
                Flow::Continue
            }
            Command::Sync(reply) => {
                self.roll_if_delivered();
                self.housekeep(Some(reply));
                Flow::Continue
            }
            Command::Stop { graceful, reply } => {
                if graceful {
                    self.seal_active();
                    self.barrier();
                    self.publish_closed();
                }
                self.stop_threads();
                if graceful {
                    let result = self.housekeeping.run();
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Flow::Exit
            }
        }
    }

    /// Waits until every group written so far is synced and published.
    fn barrier(&self) {
        if let Some(syncer) = &self.syncer {
            syncer.wait_published(self.next_seq);
        }
    }

    /// Asks the housekeeping thread to run now (it answers `reply` itself).
    fn housekeep(&self, reply: Option<Reply<()>>) {
        if let Some((tx, _)) = &self.housekeeper {
            if let Err(mpsc::SendError(HousekeepMsg::Run(reply))) =
                tx.send(HousekeepMsg::Run(reply))
            {
                let result = self.housekeeping.run();
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
        }
    }

    /// Ends the sync thread (after it finished what was handed to it) and the
    /// housekeeping thread.
    fn stop_threads(&mut self) {
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
        if let Some((tx, thread)) = self.housekeeper.take() {
            let _ = tx.send(HousekeepMsg::Stop);
            let _ = thread.join();
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

    /// One write for entries going to the active segment; hands them to the sync thread
    /// (`fsync: always`) or publishes and answers them.
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
        if let Err(e) = active.file.write_all_at(buf, prev) {
            // Not acknowledged, so the bytes must not be replayed as if they were: cut them
            // off (groups before them, still syncing, are below `prev`). If even that
            // fails, abandon the segment: the next append opens a new one, and the next
            // start cuts the garbage as a corrupt tail.
            let rolled_back = active.file.set_len(prev).is_ok();
            if !rolled_back {
                self.active = None;
                self.shared.active_base.store(NO_ACTIVE, Ordering::Release);
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
        let file = active.file.clone();
        let counters = &self.shared.counters;
        self.shared.count(&counters.write_groups, 1);
        self.shared.count(&counters.appends, n);
        self.shared.segments().insert(base, info);
        let written = Written {
            first: self.next_seq,
            records: chunk
                .into_iter()
                .map(|(record, _, reply)| (record.live, reply))
                .collect(),
        };
        self.next_seq += n;
        if let Some(syncer) = &self.syncer {
            // If every sync thread is gone (they panicked), sync here instead.
            if let Err(mpsc::SendError(group)) = syncer.tx.send((file, written)) {
                sync_groups(&self.shared, &syncer.completion, vec![group]);
            }
            return;
        }
        publish(&self.shared, vec![written], Ok(()));
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
        {
            let mut segments = self.shared.segments();
            self.shared.active_base.store(base, Ordering::Release);
            segments.insert(
                base,
                SegmentInfo {
                    end: base,
                    bytes: HEADER_LEN,
                },
            );
        }
        self.active = Some(Active {
            base,
            file: Arc::new(file),
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

    /// Stops writing to the active segment (the next append starts a new one). Groups of
    /// it still with the sync thread are synced there through their own handle.
    fn seal_active(&mut self) {
        self.sync_active();
        if self.active.take().is_some() {
            let _segments = self.shared.segments();
            self.shared.active_base.store(NO_ACTIVE, Ordering::Release);
        }
    }

    /// Seals a fully delivered active segment of at least a quarter segment, so the
    /// housekeeping thread can reclaim its space too (else a queue that is always caught up
    /// would never shrink it).
    fn roll_if_delivered(&mut self) {
        self.next_roll_check = Instant::now() + self.shared.options.cursor_interval;
        let committed = self.shared.tracker().committed;
        let roll = self.active.as_ref().is_some_and(|a| {
            a.count > 0 && a.base + a.count <= committed && a.bytes >= self.shared.segment_bytes / 4
        });
        if roll {
            self.seal_active();
        }
    }
}
