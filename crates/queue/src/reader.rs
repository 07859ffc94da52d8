//! The consumer side: `next()` reads entries in order from the segment files.
//!
//! Entries are read from disk (positioned reads, no shared file offset), a few at a time in
//! `spawn_blocking`, into a small read-ahead buffer ([`READ_AHEAD_ENTRIES`] entries or
//! [`READ_AHEAD_BYTES`], whichever comes first). The backlog itself stays on disk, however
//! large it grows during a backend outage. Only entries whose append has resolved are read,
//! so the consumer never sees bytes that could still be rolled back.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use crate::format::{self, HEADER_LEN, RECORD_OVERHEAD};
use crate::queue::Item;
use crate::state::{lock, Published, Shared};

const READ_AHEAD_ENTRIES: usize = 64;
const READ_AHEAD_BYTES: u64 = 4 << 20;

pub(crate) struct Reader {
    next_seq: u64,
    open: Option<OpenSegment>,
    buffer: VecDeque<(u64, Bytes)>,
    published: watch::Receiver<Published>,
}

/// The segment being read and the position of record `seq` in it.
struct OpenSegment {
    base: u64,
    seq: u64,
    offset: u64,
    file: File,
}

enum Locate {
    /// `seq` is in the segment starting at `base`, holding records up to `end` in `bytes`.
    In { base: u64, end: u64, bytes: u64 },
    /// `seq` is in a hole (records lost to corruption); the next segment starts at `.0`.
    Gap(u64),
    /// Not written yet.
    Wait,
}

impl Reader {
    pub fn new(start: u64, published: watch::Receiver<Published>) -> Self {
        Self {
            next_seq: start,
            open: None,
            buffer: VecDeque::new(),
            published,
        }
    }

    /// Cancel-safe: the position only moves once a read has come back, so a dropped call
    /// loses nothing (the open file is reopened on the next call).
    pub async fn next(&mut self, shared: &Arc<Shared>) -> Option<(u64, Item)> {
        loop {
            if let Some((seq, bytes)) = self.buffer.pop_front() {
                return Some((seq, Item::Stored(bytes)));
            }
            let published = *self.published.borrow_and_update();
            if self.next_seq < published.end {
                let from = self.next_seq;
                // Live entries come from memory; disk reads stop before the first of them.
                let (live, first_live) = {
                    let mut live = lock(&shared.live);
                    (live.take(from), live.first_in(from, published.end))
                };
                if let Some(batch) = live {
                    self.next_seq += 1;
                    shared.count(&shared.counters.handed_live, 1);
                    return Some((from, Item::Live(batch)));
                }
                let stop = first_live.unwrap_or(published.end);
                let open = self.open.take();
                let for_job = shared.clone();
                let job =
                    tokio::task::spawn_blocking(move || read_batch(&for_job, open, from, stop));
                match job.await {
                    Ok((open, next_seq, entries)) => {
                        self.open = open;
                        shared.count(&shared.counters.read_from_disk, entries.len() as u64);
                        let progressed = next_seq != from;
                        self.next_seq = next_seq;
                        self.buffer.extend(entries);
                        if progressed {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "durable queue read task failed");
                        return None;
                    }
                }
            } else if published.closed {
                return None;
            }
            if self.published.changed().await.is_err() {
                return None;
            }
        }
    }
}

fn locate(shared: &Shared, seq: u64) -> Locate {
    let segments = shared.segments();
    if let Some((&base, info)) = segments.range(..=seq).next_back() {
        if seq < info.end {
            return Locate::In {
                base,
                end: info.end,
                bytes: info.bytes,
            };
        }
    }
    match segments.range(seq + 1..).next() {
        Some((&base, _)) => Locate::Gap(base),
        None => Locate::Wait,
    }
}

/// Reads entries `from..end` (as many as the read-ahead allows). Returns the open segment,
/// the next sequence number to read and the entries.
fn read_batch(
    shared: &Shared,
    mut open: Option<OpenSegment>,
    from: u64,
    end: u64,
) -> (Option<OpenSegment>, u64, Vec<(u64, Bytes)>) {
    let mut seq = from;
    let mut entries = Vec::new();
    let mut bytes = 0;
    while seq < end && entries.len() < READ_AHEAD_ENTRIES && bytes < READ_AHEAD_BYTES {
        match locate(shared, seq) {
            Locate::Wait => break,
            Locate::Gap(next_base) => {
                tracing::warn!(
                    from = seq,
                    to = next_base,
                    "durable queue: entries lost to a corrupt segment tail are skipped"
                );
                skip(shared, seq, next_base);
                seq = next_base;
                open = None;
            }
            Locate::In {
                base,
                end: seg_end,
                bytes: seg_bytes,
            } => {
                let at = Position { base, seg_bytes };
                let stop = seg_end.min(end);
                match read_segment(shared, &mut open, at, seq, stop, &mut entries, &mut bytes) {
                    Ok(next) => seq = next,
                    Err((failed_at, e)) => {
                        seq = failed_at;
                        let path = format::segment_path(&shared.dir, base);
                        tracing::error!(
                            segment = %path.display(),
                            from = seq,
                            to = seg_end,
                            error = %e,
                            "durable queue: unreadable entries are skipped"
                        );
                        shared.count(&shared.counters.read_errors, 1);
                        skip(shared, seq, seg_end);
                        seq = seg_end;
                        open = None;
                    }
                }
            }
        }
    }
    (open, seq, entries)
}

/// Sequence numbers that will never be delivered count as done, or the cursor would stop
/// at them forever.
fn skip(shared: &Shared, from: u64, to: u64) {
    shared.count(&shared.counters.skipped, to - from);
    shared.tracker().mark(from, to);
}

/// Which segment to read, and its size (a corrupt length must not make us allocate more).
struct Position {
    base: u64,
    seg_bytes: u64,
}

/// Reads records `seq..stop` of one segment (within the read-ahead). On error returns the
/// sequence number it failed at; entries before it were read fine and are kept.
fn read_segment(
    shared: &Shared,
    open: &mut Option<OpenSegment>,
    at: Position,
    seq: u64,
    stop: u64,
    entries: &mut Vec<(u64, Bytes)>,
    bytes: &mut u64,
) -> Result<u64, (u64, io::Error)> {
    let base = at.base;
    let reusable = open
        .as_ref()
        .is_some_and(|o| o.base == base && o.seq <= seq);
    if !reusable {
        *open = None;
    }
    let o = match open {
        Some(o) => o,
        None => open.insert(OpenSegment {
            base,
            seq: base,
            offset: HEADER_LEN,
            file: File::open(format::segment_path(&shared.dir, base)).map_err(|e| (seq, e))?,
        }),
    };
    read_records(o, at.seg_bytes, seq, stop, entries, bytes).map_err(|e| (o.seq.max(seq), e))
}

fn read_records(
    o: &mut OpenSegment,
    seg_bytes: u64,
    seq: u64,
    stop: u64,
    entries: &mut Vec<(u64, Bytes)>,
    bytes: &mut u64,
) -> io::Result<u64> {
    let mut frame = [0u8; RECORD_OVERHEAD as usize];
    // Records below `seq` (already delivered before a restart): step over them.
    while o.seq < seq {
        o.file.read_exact_at(&mut frame, o.offset)?;
        let (len, _) = format::parse_frame(&frame);
        o.offset += RECORD_OVERHEAD + u64::from(len);
        o.seq += 1;
    }
    while o.seq < stop && entries.len() < READ_AHEAD_ENTRIES && *bytes < READ_AHEAD_BYTES {
        o.file.read_exact_at(&mut frame, o.offset)?;
        let (len, crc) = format::parse_frame(&frame);
        if o.offset + RECORD_OVERHEAD + u64::from(len) > seg_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "record {} claims {len} bytes, past the end of the segment",
                    o.seq
                ),
            ));
        }
        let mut payload = vec![0u8; len as usize];
        o.file
            .read_exact_at(&mut payload, o.offset + RECORD_OVERHEAD)?;
        if format::record_crc(len, &payload) != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "record {} fails its checksum (changed on disk since it was written)",
                    o.seq
                ),
            ));
        }
        entries.push((o.seq, Bytes::from(payload)));
        *bytes += u64::from(len);
        o.offset += RECORD_OVERHEAD + u64::from(len);
        o.seq += 1;
    }
    Ok(o.seq)
}

/// Reads entry `seq` alone, again (a retry after a failed delivery). `Ok(None)` when it is
/// not on disk any more (its segment was delivered and deleted, or lost to corruption).
pub(crate) fn read_one(shared: &Shared, seq: u64) -> io::Result<Option<Bytes>> {
    let Locate::In {
        base,
        end,
        bytes: seg_bytes,
    } = locate(shared, seq)
    else {
        return Ok(None);
    };
    let mut open = None;
    let mut entries = Vec::new();
    let mut read = 0;
    read_segment(
        shared,
        &mut open,
        Position { base, seg_bytes },
        seq,
        end.min(seq + 1),
        &mut entries,
        &mut read,
    )
    .map_err(|(_, e)| e)?;
    Ok(entries.pop().map(|(_, b)| b))
}
