//! The dead-letter store every exporter keeps what it could not deliver in: one folder per
//! exporter, one naming rule, a `.reason.txt` beside each file, and a bound on the folder.
//!
//! - Folder: `dead_letter_dir`, else [`default_dir`]: `./tracecast-data/dead-letter/<id>`
//!   (`/` in the exporter id becomes `_`).
//! - Names: `<unix_nanos>-<n><label><ext>`, e.g. `1705311600123456789-1.pb` or
//!   `1705311600123456789-2-prod_2024-01-15_abc-1705311600.json`. `n` counts per store, and
//!   files are created new, never overwritten (a clash takes the next `n`), so listing by
//!   `(unix_nanos, n)` gives the order they were kept in.
//! - Reason file `<file>.reason.txt`: `name: value` lines, `outcome` first, then `spans`
//!   when known, then the exporter's details (`endpoint`, `key`, ...), and `error` last
//!   (it may run over several lines, and nothing after it is mistaken for a field).
//! - Bound: past `dead_letter_max_size` the oldest files go first
//!   ([`crate::spool::trim_and_report`]), so an expired token cannot fill the disk and take
//!   the durable queue down with it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ComponentId;

/// The folder the default dead-letter folders live in.
pub const DEFAULT_ROOT: &str = "./tracecast-data/dead-letter";

/// The default folder of exporter `id`: `./tracecast-data/dead-letter/<id>` (`/` in the id
/// becomes `_`).
pub fn default_dir(id: &ComponentId) -> PathBuf {
    PathBuf::from(DEFAULT_ROOT).join(id.as_str().replace('/', "_"))
}

/// The folder exporter `id` keeps its dead letters in: `dead_letter_dir` when set, else
/// [`default_dir`]. The one rule, shared by the exporters and `tracecast dead-letters`.
pub fn dir_for(id: &ComponentId, configured: Option<&Path>) -> PathBuf {
    configured.map_or_else(|| default_dir(id), Path::to_path_buf)
}

/// The reason file beside a kept file: `<file>.reason.txt`.
pub fn reason_path(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".reason.txt");
    PathBuf::from(p)
}

/// What goes into the `.reason.txt` file.
#[derive(Debug)]
pub struct Reason<'a> {
    /// What happened, e.g. `rejected (permanent error)`, `retries exhausted`, `not written`.
    pub outcome: &'a str,
    /// The error, e.g. `HTTP 400 Bad Request: <backend message>` or the store's message.
    pub error: &'a str,
    /// Spans in the file, when the exporter knows them.
    pub spans: Option<usize>,
    /// The exporter's own `name: value` lines (`endpoint`, `key`, `file`, ...). Values are
    /// written on one line each; never put a secret here.
    pub details: &'a [(&'a str, &'a str)],
}

impl Reason<'_> {
    fn text(&self) -> String {
        let mut text = format!("outcome: {}\n", self.outcome);
        if let Some(spans) = self.spans {
            text.push_str(&format!("spans: {spans}\n"));
        }
        for (name, value) in self.details {
            text.push_str(&format!("{name}: {}\n", value.replace(['\r', '\n'], " ")));
        }
        text.push_str(&format!("error: {}\n", self.error));
        text
    }
}

/// The value of field `name` in a reason file's text (its first line for `error`).
pub fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// One exporter's dead-letter folder.
#[derive(Debug)]
pub struct DeadLetterStore {
    dir: PathBuf,
    next: AtomicU64,
    /// `dead_letter_max_size`, reported under the exporter id (`None`: unbounded).
    bound: Option<std::sync::Arc<crate::spool::Bound>>,
}

impl DeadLetterStore {
    /// An unbounded store in `dir` (created on the first write).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            next: AtomicU64::new(1),
            bound: None,
        }
    }

    /// Keeps the folder under `max_bytes` after each write (0: no bound); trimming is
    /// reported under `exporter`.
    pub fn bounded(mut self, max_bytes: u64, exporter: &str) -> Self {
        self.bound = (max_bytes > 0).then(|| {
            std::sync::Arc::new(crate::spool::Bound::new(
                self.dir.clone(),
                max_bytes,
                exporter,
                "dead_letter",
            ))
        });
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `body` as `<unix_nanos>-<n><label><ext>` and its reason file beside it
    /// (both created new and synced); returns the file's path. `label` is an optional
    /// readable part of the name (`/` becomes `_`; keep it well under 200 bytes).
    pub async fn keep(
        &self,
        label: &str,
        ext: &str,
        body: &[u8],
        reason: &Reason<'_>,
    ) -> std::io::Result<PathBuf> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let label = label.replace('/', "_");
        let (dir, body, text) = (self.dir.clone(), body.to_vec(), reason.text());
        let written = (body.len() + text.len()) as u64;
        // Blocking create-new writes: never overwrite an existing file. A name taken by
        // another writer (a `resend` beside the daemon) takes the next `n`.
        let mut n = self.next.fetch_add(1, Ordering::Relaxed);
        let file = loop {
            let file = dir.join(format!("{nanos}-{n}{label}{ext}"));
            let (f, b) = (file.clone(), body.clone());
            let written = tokio::task::spawn_blocking(move || create_new(&f, &b))
                .await
                .map_err(std::io::Error::other)?;
            match written {
                Ok(()) => break file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    n = self.next.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        };
        let r = reason_path(&file);
        tokio::task::spawn_blocking(move || create_new(&r, text.as_bytes()))
            .await
            .map_err(std::io::Error::other)??;
        if let Some(bound) = self.bound.clone() {
            let _ = tokio::task::spawn_blocking(move || bound.written(written)).await;
        }
        Ok(file)
    }
}

fn create_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// One kept file, as listed by [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLetter {
    pub path: PathBuf,
    /// Size of the file.
    pub bytes: u64,
    /// The reason file's text, or why it cannot be read.
    pub reason: Result<String, String>,
}

/// The kept files directly in `dir` (reason files and sub-folders aside), in the order
/// they were kept: by `(unix_nanos, n)` of their names, other names last by name. A folder
/// that does not exist holds none.
pub fn list(dir: &Path) -> std::io::Result<Vec<StoredLetter>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut letters = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        if !meta.is_file() || path.to_string_lossy().ends_with(".reason.txt") {
            continue;
        }
        let reason = std::fs::read_to_string(reason_path(&path))
            .map_err(|e| format!("(no reason file: {e})"));
        letters.push(StoredLetter {
            path,
            bytes: meta.len(),
            reason,
        });
    }
    letters.sort_by_cached_key(|l| order_key(&l.path));
    Ok(letters)
}

/// `(unix_nanos, n, name)` of a `<unix_nanos>-<n>...` name; other names sort last.
fn order_key(path: &Path) -> (u128, u64, String) {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = name.splitn(3, '-');
    let nanos = parts.next().and_then(|s| s.parse().ok());
    let n = parts.next().and_then(|s| {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    match (nanos, n) {
        (Some(nanos), Some(n)) => (nanos, n, name),
        _ => (u128::MAX, u64::MAX, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_folder_is_per_exporter() {
        let id = ComponentId::parse("otlp/axiom").unwrap();
        assert_eq!(
            default_dir(&id),
            PathBuf::from("./tracecast-data/dead-letter/otlp_axiom")
        );
        assert_eq!(dir_for(&id, None), default_dir(&id));
        assert_eq!(
            dir_for(&id, Some(Path::new("/tmp/dl"))),
            PathBuf::from("/tmp/dl")
        );
    }

    #[tokio::test]
    async fn keeps_distinct_files_in_order_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
        let store = DeadLetterStore::new(dir.path().join("dl"));
        let reason = Reason {
            outcome: "rejected",
            error: "HTTP 400: bad\nspans: 99",
            spans: Some(3),
            details: &[("key", "p/a.json")],
        };
        let a = store.keep("", ".pb", b"one", &reason).await.unwrap();
        let b = store.keep("-p/a.json", "", b"two", &reason).await.unwrap();
        assert_ne!(a, b);
        assert!(b.to_string_lossy().ends_with("-2-p_a.json"), "{b:?}");
        std::fs::write(store.dir().join("orphan"), b"x").unwrap();
        let listed = list(store.dir()).unwrap();
        let paths: Vec<_> = listed.iter().map(|l| l.path.clone()).collect();
        assert_eq!(paths, vec![a, b, store.dir().join("orphan")]);
        let text = listed[0].reason.as_deref().unwrap();
        assert_eq!(field(text, "outcome"), Some("rejected"));
        assert_eq!(field(text, "spans"), Some("3"), "the error cannot forge it");
        assert_eq!(field(text, "key"), Some("p/a.json"));
        assert_eq!(field(text, "error"), Some("HTTP 400: bad"));
        assert_eq!(listed[1].bytes, 3);
        assert!(listed[2].reason.is_err());
    }
}

/// One dead letter as `tracecast dead-letters list` shows it, whatever the exporter type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedLetter {
    /// The kept file.
    pub file: PathBuf,
    /// Span count, when the exporter records it.
    pub spans: Option<usize>,
    /// Why it was kept, in one line.
    pub reason: String,
}

/// What `tracecast dead-letters resend` did for one exporter.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResendSummary {
    /// Dead letters delivered.
    pub resent: usize,
    /// Dead letters kept again: rejected again, unreadable, or not sent (stopped).
    pub failed: usize,
}
