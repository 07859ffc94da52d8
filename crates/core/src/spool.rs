//! Bounded folders on disk (dead letters, quarantine): what an exporter or pipeline keeps
//! when it cannot deliver must not fill the disk and take the durable queue down with it.
//! When a folder passes its bound, its oldest files go first, loudly (a log line and
//! `tracecast_spool_files_removed_total`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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
/// that cannot be trimmed must not stop what was being kept. Returns the bytes left, when
/// the folder could be listed.
pub fn trim_and_report(dir: &Path, max_bytes: u64, owner: &str, kind: &str) -> Option<u64> {
    match trim(dir, max_bytes) {
        Ok(t) => {
            if t.files > 0 {
                report(dir, max_bytes, owner, kind, &t);
            }
            Some(t.left)
        }
        Err(e) => {
            tracing::warn!(component = owner, dir = %dir.display(), "cannot trim the {kind} folder: {e}");
            None
        }
    }
}

fn report(dir: &Path, max_bytes: u64, owner: &str, kind: &str, t: &Trimmed) {
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

/// A folder kept under `max_bytes` without listing it on every write: the bytes written
/// since the last listing are added to what it held then, and only when that could pass
/// the bound is the folder listed and trimmed again. So a backend that refuses everything
/// costs one listing per bound's worth of dead letters, not one per dead letter. (Files a
/// `resend` adds beside the daemon are seen at the next listing.)
#[derive(Debug)]
pub struct Bound {
    dir: PathBuf,
    max_bytes: u64,
    owner: String,
    kind: &'static str,
    /// Bytes the folder holds, as far as this process knows; `None`: list it next time.
    estimate: Mutex<Option<u64>>,
}

impl Bound {
    /// `max_bytes == 0`: no bound. `owner` and `kind` name the folder in logs and metrics.
    pub fn new(dir: PathBuf, max_bytes: u64, owner: &str, kind: &'static str) -> Self {
        Self {
            dir,
            max_bytes,
            owner: owner.to_string(),
            kind,
            estimate: Mutex::new(None),
        }
    }

    /// Call after writing `bytes` into the folder. Blocking (it may list the folder).
    pub fn written(&self, bytes: u64) {
        if self.max_bytes == 0 {
            return;
        }
        let mut estimate = self.estimate.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = *estimate {
            let next = held.saturating_add(bytes);
            if next <= self.max_bytes {
                *estimate = Some(next);
                return;
            }
        }
        *estimate = trim_and_report(&self.dir, self.max_bytes, &self.owner, self.kind);
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

    #[test]
    fn a_bound_lists_the_folder_only_when_writes_could_pass_it() {
        let dir = std::env::temp_dir().join(format!("tc-bound-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bound = Bound::new(dir.clone(), 450, "test", "dead_letter");
        let write = |i: u32| {
            std::fs::write(dir.join(format!("{i:02}.pb")), vec![0u8; 100]).unwrap();
            bound.written(100);
        };
        // First write: listed (100 bytes known); the next three fit the estimate.
        (0..4).for_each(write);
        // A file that appeared behind the bound's back is only seen at the next listing.
        std::fs::write(dir.join("zz-extra.pb"), vec![0u8; 100]).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 5);
        // 400 + 100 > 450: listed and trimmed to the bound.
        write(4);
        let total: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 450, "{total}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
