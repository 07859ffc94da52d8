//! Opening a queue directory: scan the segments, validate every record, set a torn or corrupt
//! tail aside, and work out where delivery resumes.
//!
//! Policy for a bad record: without resynchronisation markers there is no telling where the
//! next good frame starts, so the scan of that segment stops at the first bad frame; the
//! rest of that segment (bad record and whatever follows) is copied to `corrupt/` and the
//! segment truncated there. Later segments are independent (their file names give their
//! first sequence number) and are kept: the missing sequence numbers are skipped.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::QueueError;
use crate::format::{self, CursorState, HEADER_LEN, RECORD_OVERHEAD};
use crate::state::SegmentInfo;

/// What `DurableQueue::open` found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files kept (holding entries not yet delivered).
    pub segments: usize,
    /// Segment files deleted because every entry in them had been delivered.
    pub deleted_segments: usize,
    /// The cursor file's state.
    pub cursor: CursorState,
    /// Lowest sequence number not yet delivered: `next()` starts here.
    pub committed_seq: u64,
    /// Sequence number the next append gets.
    pub next_seq: u64,
    /// Entries `next()` will replay (from `committed_seq` on).
    pub entries_to_replay: u64,
    /// Torn or corrupt regions that were cut off, in the order found.
    pub corrupt: Vec<CorruptRegion>,
}

impl RecoveryReport {
    /// Bytes cut off all segments.
    pub fn corrupt_bytes(&self) -> u64 {
        self.corrupt.iter().map(|c| c.bytes).sum()
    }
}

/// One torn or corrupt region cut off a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRegion {
    /// The segment it was cut from.
    pub segment: PathBuf,
    /// Byte offset in the segment where the bad data started (0: the header was bad and
    /// the whole file was set aside).
    pub offset: u64,
    /// Bytes cut off.
    pub bytes: u64,
    /// What was wrong (torn frame, checksum mismatch, bad header...).
    pub reason: String,
    /// Where the bytes were kept for inspection (`None` if copying them failed).
    pub moved_to: Option<PathBuf>,
}

/// The recovered state handed to the queue.
pub(crate) struct Recovered {
    pub report: RecoveryReport,
    pub segments: BTreeMap<u64, SegmentInfo>,
    pub persisted: Option<u64>,
}

enum Scan {
    BadHeader(String),
    Records {
        count: u64,
        valid_end: u64,
        file_len: u64,
        stop: Option<String>,
    },
}

pub(crate) fn recover(dir: &Path) -> Result<Recovered, QueueError> {
    fs::create_dir_all(dir).map_err(|e| QueueError::io("creating queue directory", dir, e))?;
    format::remove_cursor_tmp(dir);
    let cursor =
        format::read_cursor(dir).map_err(|e| QueueError::io("reading cursor file in", dir, e))?;
    let cursor_seq = match cursor {
        CursorState::Found(c) => Some(c),
        CursorState::Missing => None,
        CursorState::Corrupt => {
            tracing::warn!(dir = %dir.display(), "queue cursor file is corrupt: replaying every entry on disk");
            None
        }
    };

    let mut bases = Vec::new();
    let listing = fs::read_dir(dir).map_err(|e| QueueError::io("listing", dir, e))?;
    for item in listing {
        let item = item.map_err(|e| QueueError::io("listing", dir, e))?;
        if let Some(base) = item
            .file_name()
            .to_str()
            .and_then(format::parse_segment_name)
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();

    let mut segments = BTreeMap::new();
    let mut corrupt = Vec::new();
    let mut deleted_segments = 0;
    for (i, &base) in bases.iter().enumerate() {
        let path = format::segment_path(dir, base);
        let next_base = bases.get(i + 1).copied();
        if let (Some(c), Some(nb)) = (cursor_seq, next_base) {
            if nb <= c {
                // Every entry of this segment is below the cursor: delivered, no need to read it.
                remove_segment(&path)?;
                deleted_segments += 1;
                continue;
            }
        }
        let limit = next_base.map(|nb| nb.saturating_sub(base));
        match scan_segment(&path, base, limit)
            .map_err(|e| QueueError::io("reading segment", &path, e))?
        {
            Scan::BadHeader(reason) => {
                corrupt.push(set_whole_file_aside(dir, &path, reason)?);
            }
            Scan::Records {
                count,
                valid_end,
                file_len,
                stop,
            } => {
                if let Some(reason) = stop {
                    corrupt.push(cut_tail(dir, &path, valid_end, file_len, reason)?);
                }
                if count == 0 {
                    remove_segment(&path)?;
                } else {
                    segments.insert(
                        base,
                        SegmentInfo {
                            end: base + count,
                            bytes: valid_end,
                        },
                    );
                }
            }
        }
    }

    let first_base = segments.keys().next().copied();
    let last_end = segments.values().next_back().map(|s| s.end);
    let committed = match (cursor_seq, first_base) {
        (Some(c), Some(first)) => c.max(first),
        (Some(c), None) => c,
        (None, Some(first)) => first,
        (None, None) => 0,
    };
    let next_seq = last_end.unwrap_or(0).max(committed);
    // A segment entirely below the cursor (only the last one can be left here).
    let passed: Vec<u64> = segments
        .iter()
        .filter(|(_, s)| s.end <= committed)
        .map(|(&b, _)| b)
        .collect();
    for base in passed {
        remove_segment(&format::segment_path(dir, base))?;
        segments.remove(&base);
        deleted_segments += 1;
    }
    let entries_to_replay = segments
        .iter()
        .map(|(&b, s)| s.end - b.max(committed).min(s.end))
        .sum();
    for region in &corrupt {
        tracing::warn!(
            segment = %region.segment.display(),
            offset = region.offset,
            bytes = region.bytes,
            reason = %region.reason,
            kept_in = ?region.moved_to,
            "queue recovery cut off a torn or corrupt tail"
        );
    }
    Ok(Recovered {
        report: RecoveryReport {
            segments: segments.len(),
            deleted_segments,
            cursor,
            committed_seq: committed,
            next_seq,
            entries_to_replay,
            corrupt,
        },
        segments,
        persisted: cursor_seq,
    })
}

/// Validates every record of one segment, stopping at the first bad one or after `limit`
/// records (the next segment starts there; more would overlap it).
fn scan_segment(path: &Path, base: u64, limit: Option<u64>) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    if file_len == 0 {
        // Created, crashed before the header was written: nothing was ever stored in it.
        return Ok(Scan::Records {
            count: 0,
            valid_end: 0,
            file_len: 0,
            stop: None,
        });
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut header = vec![0u8; HEADER_LEN.min(file_len) as usize];
    r.read_exact(&mut header)?;
    if let Err(reason) = format::check_header(&header, base) {
        return Ok(Scan::BadHeader(reason));
    }
    let mut offset = HEADER_LEN;
    let mut count = 0u64;
    let mut payload = Vec::new();
    let stop = loop {
        if offset == file_len {
            break None;
        }
        if limit == Some(count) {
            break Some("records overlap the next segment".to_string());
        }
        let remaining = file_len - offset;
        if remaining < RECORD_OVERHEAD {
            break Some(format!(
                "torn record frame ({remaining} bytes at end of file)"
            ));
        }
        let mut frame = [0u8; RECORD_OVERHEAD as usize];
        r.read_exact(&mut frame)?;
        let (len, crc) = format::parse_frame(&frame);
        if u64::from(len) > remaining - RECORD_OVERHEAD {
            break Some(format!(
                "record of {len} bytes runs past the end of the file (torn write)"
            ));
        }
        payload.resize(len as usize, 0);
        r.read_exact(&mut payload)?;
        if format::record_crc(len, &payload) != crc {
            break Some(format!("record {} fails its checksum", base + count));
        }
        count += 1;
        offset += RECORD_OVERHEAD + u64::from(len);
    };
    Ok(Scan::Records {
        count,
        valid_end: offset,
        file_len,
        stop,
    })
}

fn corrupt_path(dir: &Path, segment: &Path, offset: u64) -> Result<PathBuf, QueueError> {
    let corrupt_dir = dir.join(format::CORRUPT_DIR);
    fs::create_dir_all(&corrupt_dir).map_err(|e| QueueError::io("creating", &corrupt_dir, e))?;
    let name = segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(corrupt_dir.join(format!("{name}.at{offset}.{now}.bad")))
}

/// Copies `[valid_end, file_len)` of the segment to `corrupt/`, then truncates the segment.
/// A failed copy (disk full) is logged and the truncation still happens: a crash loop on a
/// bad tail would be worse than losing the bad bytes.
fn cut_tail(
    dir: &Path,
    path: &Path,
    valid_end: u64,
    file_len: u64,
    reason: String,
) -> Result<CorruptRegion, QueueError> {
    let target = corrupt_path(dir, path, valid_end)?;
    let copied = (|| -> io::Result<()> {
        let mut src = File::open(path)?;
        src.seek(SeekFrom::Start(valid_end))?;
        let mut dst = File::create(&target)?;
        io::copy(&mut src.take(file_len - valid_end), &mut dst)?;
        dst.flush()?;
        dst.sync_all()
    })();
    let moved_to = match copied {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::error!(segment = %path.display(), error = %e, "could not keep the corrupt queue tail for inspection; cutting it off anyway");
            let _ = fs::remove_file(&target);
            None
        }
    };
    let truncated = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(valid_end).and_then(|()| f.sync_all()));
    truncated.map_err(|e| QueueError::io("truncating corrupt tail of", path, e))?;
    Ok(CorruptRegion {
        segment: path.to_path_buf(),
        offset: valid_end,
        bytes: file_len - valid_end,
        reason,
        moved_to,
    })
}

/// A segment whose header is unreadable: the whole file goes to `corrupt/`.
fn set_whole_file_aside(
    dir: &Path,
    path: &Path,
    reason: String,
) -> Result<CorruptRegion, QueueError> {
    let bytes = fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| QueueError::io("reading", path, e))?;
    let target = corrupt_path(dir, path, 0)?;
    let moved_to = match fs::rename(path, &target) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::error!(segment = %path.display(), error = %e, "could not move the corrupt queue segment aside; deleting it");
            remove_segment(path)?;
            None
        }
    };
    Ok(CorruptRegion {
        segment: path.to_path_buf(),
        offset: 0,
        bytes,
        reason,
        moved_to,
    })
}

pub(crate) fn remove_segment(path: &Path) -> Result<(), QueueError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(QueueError::io("deleting segment", path, e)),
    }
}
