//! tracecast's durable on-disk queue: once `append` resolved, the entry survives a crash
//! and is handed to the pipeline at least once.
//!
//! # Design
//!
//! **One queue per pipeline**, each in its own directory. The receiver appends each
//! accepted request once per pipeline it feeds and answers 2xx only after every `append`
//! resolved, i.e. the entry is durable per the fsync policy. The pipeline task is the
//! queue's single consumer: it takes entries in order with `next()` and wraps each in a
//! batch carrying a [`DeliveryToken`](tracecast_core::ack::DeliveryToken) from
//! [`DurableQueue::token`]. When the token's last clone drops (every destination has the
//! spans), the entry is delivered. Acks arrive **out of order** (exporters run in parallel,
//! trace assembly holds spans for a while).
//!
//! **Segments.** Entries are appended to segment files named after their first sequence
//! number, framed as `[len u32][crc32 u32][payload]` after a 24-byte header (magic,
//! version, first sequence number; see `format.rs`). A segment rolls at `segment_bytes`.
//!
//! **Group commit, pipelined.** A writer thread owns the active segment. All appends
//! pending when it gets to them are written with one `write`. With `fsync: always` (the
//! default) a sync thread makes every group written so far durable with one `fdatasync`
//! and answers them together, while the writer already writes the next group; a group is
//! answered only by an fdatasync that started after its write completed. `interval`
//! answers after the write, syncing at most `fsync_interval` later; `never` after the
//! write. Cursor writes and segment deletion run on a third thread and never block appends.
//!
//! **Bound.** `max_bytes` bounds the segment files. An append that would pass it fails at
//! once with [`QueueError::Full`] (the receiver answers 429/503 with Retry-After); a write
//! or fsync failure (ENOSPC) fails the append with [`QueueError::Io`]; neither is
//! acknowledged.
//!
//! **Committed cursor.** The lowest sequence number not yet delivered. Segments wholly
//! below it are deleted. It is saved in the `cursor` file atomically (temp file, fsync,
//! rename, directory fsync) every `cursor_interval` (100 ms by default) and on `close`,
//! `sync` and `shutdown`, not on every ack: a crash replays what was delivered since the
//! last save, never loses anything. Entries delivered out of order above the cursor are
//! not saved: after a crash they are replayed too (counted in
//! [`QueueStats::delivered_above_cursor`] while running). At least once is the contract;
//! duplicates after a crash are expected.
//!
//! **Recovery.** `open` checks every record at or after the cursor. At the first torn or
//! corrupt record of a segment (short frame, length past the end, CRC mismatch) the rest
//! of that segment is copied to `corrupt/` for inspection, the segment is truncated there,
//! and the region is listed in the [`RecoveryReport`]; later segments are kept. There are
//! no resynchronisation markers, so records after a bad one in the same segment are not
//! salvaged. Corrupt data never causes a panic or a refusal to start; only I/O errors on
//! the directory itself make `open` fail. Writing resumes in a new segment.
//!
//! **Memory.** `next()` reads from disk with a read-ahead of at most 64 entries or 4 MiB;
//! the backlog of a long backend outage stays on disk.
//!
//! **Not covered:** two processes opening the same directory (the runtime gives each
//! pipeline its own directory and runs one daemon per queue directory). An entry whose
//! token is abandoned holds the cursor back until the next start, so the queue grows
//! behind it until then.
//!
//! # Files
//!
//! - `queue.rs`: [`DurableQueue`] (open, append, next, tokens, stats, close, shutdown).
//! - `writer.rs`: the writer, sync and housekeeping threads: group commit, segment
//!   rolling, cursor saving, deletion.
//! - `reader.rs`: reading entries in order from the segment files for `next()`.
//! - `recovery.rs`: scanning and repairing the directory at open, [`RecoveryReport`].
//! - `state.rs`: state shared by the threads, the out-of-order ack tracker, the ack sink.
//! - `format.rs`: segment, record and cursor file formats.
//! - `entry.rs`: [`encode_entry`] / [`decode_entry`]: a batch context with its protobuf.
//! - `options.rs`: [`QueueOptions`] and [`FsyncPolicy`] (the YAML side is
//!   `tracecast_config::QueueConfig`, mapped by the binary).
//! - `error.rs`: [`QueueError`].

mod entry;
mod error;
mod format;
mod options;
mod queue;
mod reader;
mod recovery;
mod state;
mod writer;

pub use entry::{decode_entry, encode_entry};
pub use error::QueueError;
pub use format::CursorState;
pub use options::{FsyncPolicy, QueueOptions};
pub use queue::{DurableQueue, Item, QueueStats};
pub use recovery::{CorruptRegion, RecoveryReport};
