//! Bounded folders on disk (dead letters, quarantine): what an exporter or pipeline keeps
//! when it cannot deliver must not fill the disk and take the durable queue down with it.
//! When a folder passes its bound, its oldest files go first, loudly (a log line and
//! `tracecast_spool_files_removed_total`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What [`trim`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trimmed {
    pub files: usize,
    pub bytes: u64,
    /// Total bytes left in the folder.
    pub left: u64,
}

/// Removes the oldest regular files directly in `dir` (by modification time, then name)
/// until their total size is at most `max_bytes`. A file and its companions (`<name>.*`,
/// e.g. `x.pb` and `x.pb.reason.txt`) sort together because the companion's name extends
/// the file's. Sub-folders are left alone. `max_bytes == 0` means no bound.
pub fn trim(dir: &Path, max_bytes: u64) -> io::Result<Trimmed> {
    let mut files: Vec<(SystemTime, PathBuf, u64)> = Vec::new();
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Trimmed::default()),
        Err(e) => return Err(e),
    };
    for entry in read {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(m) if m.is_file() => m,
            _ => continue,
        };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        files.push((modified, entry.path(), meta.len()));
    }
    let mut total: u64 = files.iter().map(|f| f.2).sum();
    let mut trimmed = Trimmed::default();
    if max_bytes == 0 || total <= max_bytes {
        trimmed.left = total;
        return Ok(trimmed);
    }
    files.sort();
    for (_, path, len) in files {
        if total <= max_bytes {
            break;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total -= len;
                trimmed.files += 1;
                trimmed.bytes += len;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => total -= len,
            Err(e) => return Err(e),
        }
    }
    trimmed.left = total;
    Ok(trimmed)
}

/// [`trim`], then the loud part: an error log naming the folder and what went, and the
/// counter (`kind`: `dead_letter`, `quarantine`). Errors are logged, not returned: a folder
/// that cannot be trimmed must not stop what was being kept.
pub fn trim_and_report(dir: &Path, max_bytes: u64, owner: &str, kind: &str) {
    match trim(dir, max_bytes) {
        Ok(t) if t.files > 0 => {
            tracing::error!(
                component = owner,
                dir = %dir.display(),
                files = t.files,
                bytes = t.bytes,
                max_size = max_bytes,
                "{kind} folder over its max_size: removed the {} oldest files ({} bytes); raise max_size or fix the destination and resend",
                t.files,
                t.bytes
            );
            crate::metrics::SPOOL_FILES_REMOVED
                .get_or_create(&crate::metrics::reason(owner, kind))
                .inc_by(t.files as u64);
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(component = owner, dir = %dir.display(), "cannot trim the {kind} folder: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_oldest_until_under_the_bound() {
        let dir = std::env::temp_dir().join(format!("tc-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for i in 0..10 {
            std::fs::write(dir.join(format!("{i:02}.pb")), vec![0u8; 100]).unwrap();
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i);
            std::fs::File::options()
                .write(true)
                .open(dir.join(format!("{i:02}.pb")))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let t = trim(&dir, 450).unwrap();
        assert_eq!(t.files, 6);
        assert_eq!(t.left, 400);
        assert!(!dir.join("00.pb").exists() && dir.join("09.pb").exists());
        assert!(dir.join("sub").exists());
        assert_eq!(trim(&dir, 0).unwrap().files, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
