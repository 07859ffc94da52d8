//! On-disk formats: segment file names, the segment header, record framing, the cursor file.
//!
//! Segment `NNNNNNNNNNNNNNNNNNNN.seg` (the sequence number of its first record, 20 digits, so
//! names sort in order):
//!
//! ```text
//! header (24 bytes): magic "TCQSEG\r\n" | version u32 LE = 1 | base_seq u64 LE | crc32 u32 LE of the 20 bytes before
//! record:            len u32 LE | crc32 u32 LE of (len bytes ++ payload) | payload (len bytes)
//! ```
//!
//! Records carry no sequence number: record `i` of a segment is `base_seq + i`, so recovery
//! needs no index. Cursor file `cursor` (20 bytes): magic "TCQCURS1" | committed u64 LE |
//! crc32 u32 LE of the 16 bytes before.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"TCQSEG\r\n";
pub(crate) const SEGMENT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: u64 = 24;
pub(crate) const RECORD_OVERHEAD: u64 = 8;
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";

const CURSOR_MAGIC: &[u8; 8] = b"TCQCURS1";
pub(crate) const CURSOR_FILE: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
pub(crate) const CORRUPT_DIR: &str = "corrupt";

pub(crate) fn segment_name(base: u64) -> String {
    format!("{base:020}{SEGMENT_SUFFIX}")
}

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(segment_name(base))
}

/// The base sequence number a segment file name stands for, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn encode_header(base: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header against the base its file name promises; `Err` says what is wrong.
pub(crate) fn check_header(h: &[u8], base: u64) -> Result<(), String> {
    if h.len() < HEADER_LEN as usize {
        return Err(format!(
            "header cut short ({} of {HEADER_LEN} bytes)",
            h.len()
        ));
    }
    if &h[..8] != SEGMENT_MAGIC {
        return Err("not a tracecast queue segment (bad magic)".into());
    }
    if crc32fast::hash(&h[..20]).to_le_bytes() != h[20..24] {
        return Err("header checksum mismatch".into());
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != SEGMENT_VERSION {
        return Err(format!(
            "segment format version {version}, this build reads {SEGMENT_VERSION}"
        ));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[12..20]);
    let in_header = u64::from_le_bytes(b);
    if in_header != base {
        return Err(format!(
            "header says first sequence {in_header}, file name says {base}"
        ));
    }
    Ok(())
}

/// The checksum stored in a record's frame.
pub(crate) fn record_crc(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one framed record to `buf`. `payload.len()` must fit in a u32 (checked by `append`).
pub(crate) fn encode_record(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&record_crc(len, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Splits a record frame header into (len, crc).
pub(crate) fn parse_frame(frame: &[u8; RECORD_OVERHEAD as usize]) -> (u32, u32) {
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    (len, crc)
}

/// Makes directory entries (created, renamed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What the cursor file said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorState {
    /// A valid cursor was read.
    Found(u64),
    /// No cursor file (a new queue, or one that never delivered anything).
    Missing,
    /// The file exists but is unreadable or fails its checksum: everything on disk is replayed.
    Corrupt,
}

pub(crate) fn read_cursor(dir: &Path) -> io::Result<CursorState> {
    let bytes = match fs::read(dir.join(CURSOR_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(CursorState::Missing),
        Err(e) => return Err(e),
    };
    if bytes.len() != 20
        || &bytes[..8] != CURSOR_MAGIC
        || crc32fast::hash(&bytes[..16]).to_le_bytes() != bytes[16..20]
    {
        return Ok(CursorState::Corrupt);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[8..16]);
    Ok(CursorState::Found(u64::from_le_bytes(b)))
}

/// Writes the cursor atomically: temp file, fsync, rename over the old one, fsync the directory.
pub(crate) fn write_cursor(dir: &Path, committed: u64) -> io::Result<()> {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(CURSOR_MAGIC);
    bytes[8..16].copy_from_slice(&committed.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(CURSOR_TMP);
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(CURSOR_FILE))?;
    sync_dir(dir)
}

pub(crate) fn remove_cursor_tmp(dir: &Path) {
    let _ = fs::remove_file(dir.join(CURSOR_TMP));
}
