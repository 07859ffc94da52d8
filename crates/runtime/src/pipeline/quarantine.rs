//! Poison entries: a queue entry that cannot be decoded, or that was not delivered after
//! every attempt (a processor or exporter panicking on it, a backend and its dead-letter
//! folder both failing), is moved here so the committed cursor moves on and the entries
//! after it keep flowing.
//!
//! Layout: `<queue_dir>/quarantine/<pipeline>/<seq>-<hash>.entry` (the queue entry exactly
//! as stored: context + protobuf request) and `<same>.reason.txt`. The name is a function of
//! the entry, so quarantining the same entry again after a crash overwrites instead of
//! duplicating. The folder is bounded (`service.queue.quarantine.max_size`): past it the
//! oldest entries are removed, loudly.

use std::io::Write;
use std::path::{Path, PathBuf};

/// File name suffix of a quarantined entry.
pub const ENTRY_SUFFIX: &str = ".entry";

/// `<queue_dir>/quarantine/<pipeline with '/' as '_'>`.
pub fn dir_for(queue_dir: &Path, pipeline: &str) -> PathBuf {
    queue_dir
        .join("quarantine")
        .join(pipeline.replace('/', "_"))
}

/// One pipeline's quarantine folder.
#[derive(Debug, Clone)]
pub struct Quarantine {
    pub dir: PathBuf,
    /// `service.queue.quarantine.max_size`.
    pub bound: std::sync::Arc<tracecast_core::spool::Bound>,
    pub pipeline: String,
}

/// FNV-1a: a stable short fingerprint of the entry for its file name (not security).
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Quarantine {
    /// Writes the entry and its reason (temp file + rename, so a crash never leaves half an
    /// entry under the final name), then trims the folder to its bound. Blocking: call it
    /// on the blocking pool.
    pub fn keep(
        &self,
        seq: u64,
        entry: &[u8],
        reason: &str,
        attempts: u32,
    ) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let name = format!("{seq:020}-{:016x}{ENTRY_SUFFIX}", fingerprint(entry));
        let path = self.dir.join(&name);
        let text = format!(
            "pipeline: {}\nseq: {seq}\nattempts: {attempts}\nreason: {reason}\nfile: tracecast queue entry (context + OTLP protobuf ExportTraceServiceRequest)\n",
            self.pipeline
        );
        write_atomic(
            &self.dir.join(format!("{name}.reason.txt")),
            text.as_bytes(),
        )?;
        write_atomic(&path, entry)?;
        self.bound.written((entry.len() + text.len()) as u64);
        Ok(path)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Quarantined entries of one folder, oldest name first.
pub fn entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in read {
        let p = e?.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(ENTRY_SUFFIX))
        {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_entry_quarantined_twice_is_one_file() {
        let dir = std::env::temp_dir().join(format!("tc-quarantine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let q = Quarantine {
            dir: dir.clone(),
            bound: std::sync::Arc::new(tracecast_core::spool::Bound::new(
                dir.clone(),
                0,
                "traces",
                "quarantine",
            )),
            pipeline: "traces".into(),
        };
        let a = q
            .keep(7, b"entry bytes", "processor x panicked", 5)
            .unwrap();
        let b = q
            .keep(7, b"entry bytes", "processor x panicked", 5)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(entries(&dir).unwrap(), vec![a.clone()]);
        let reason = std::fs::read_to_string(format!("{}.reason.txt", a.display())).unwrap();
        assert!(reason.contains("reason: processor x panicked"), "{reason}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
