//! The dead-letter folder: batches a backend rejected for good (or that ran out of retries)
//! are kept on local disk as OTLP protobuf, with the reason beside them, so an operator can
//! see why and send them again (e.g. `curl --data-binary @<file> -H 'Content-Type:
//! application/x-protobuf' <endpoint>`).
//!
//! Layout: `<dir>/<unix_nanos>-<n>.pb` (an `ExportTraceServiceRequest`, uncompressed) and
//! `<dir>/<unix_nanos>-<n>.pb.reason.txt`. `n` counts per exporter instance, so two batches
//! kept in the same nanosecond still get distinct names; files are created new, never
//! overwritten. `tracecast dead-letters resend` moves the batches it is sending into the
//! [`RESENDING_DIR`] subfolder first, so a crash mid-resend leaves each batch either in
//! place or there (and the next `resend` picks those up): nothing is lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracecast_core::ComponentId;

use crate::config::OtlpExporterConfig;

/// Where a dead-lettered batch is written.
#[derive(Debug)]
pub struct DeadLetter {
    dir: PathBuf,
    next: AtomicU64,
    /// `dead_letter_max_size` (0: unbounded) and the exporter id it is reported under.
    bound: (u64, String),
}

/// The default folder of exporter `id`: `./tracecast-data/dead-letter/<id>` (`/` in the id
/// becomes `_`, as for the `s3` exporter).
pub fn default_dir(id: &ComponentId) -> PathBuf {
    PathBuf::from("./tracecast-data/dead-letter").join(id.as_str().replace('/', "_"))
}

/// The folder exporter `id` keeps its dead letters in: `dead_letter_dir` when set, else
/// [`default_dir`]. The one rule, shared by the exporter and `tracecast dead-letters`.
pub fn effective_dir(id: &ComponentId, config: &OtlpExporterConfig) -> PathBuf {
    config
        .dead_letter_dir
        .clone()
        .unwrap_or_else(|| default_dir(id))
}

/// Subfolder of the dead-letter folder holding the batches a `resend` is sending.
pub const RESENDING_DIR: &str = "resending";

/// One dead-lettered batch on disk, as listed by [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// The `.pb` file (in the folder or its [`RESENDING_DIR`] subfolder).
    pub path: PathBuf,
    /// Span count, from the reason file (no decoding).
    pub spans: Option<usize>,
    /// `<outcome>: <error>` from the reason file, or why it cannot be read.
    pub reason: String,
}

/// The reason file beside a batch file: `<file>.reason.txt`.
pub fn reason_path(batch: &Path) -> PathBuf {
    let mut p = batch.as_os_str().to_owned();
    p.push(".reason.txt");
    PathBuf::from(p)
}

/// The dead letters in `dir` and its [`RESENDING_DIR`] subfolder, oldest first (by name,
/// `<unix_nanos>-<n>`). A folder that does not exist holds none.
pub fn list(dir: &Path) -> std::io::Result<Vec<StoredBatch>> {
    let mut paths = batch_files(dir)?;
    paths.extend(batch_files(&dir.join(RESENDING_DIR))?);
    Ok(paths
        .into_iter()
        .map(|path| {
            let (spans, reason) = match std::fs::read_to_string(reason_path(&path)) {
                Ok(text) => summarize(&text),
                Err(e) => (None, format!("(no reason file: {e})")),
            };
            StoredBatch {
                path,
                spans,
                reason,
            }
        })
        .collect())
}

/// The `.pb` files directly in `dir`, sorted by `(unix_nanos, n)`; none if `dir` is missing.
pub fn batch_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pb") && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by_key(|p| order_key(p));
    Ok(files)
}

/// `(unix_nanos, n)` of a `<unix_nanos>-<n>.pb` name; other names sort last, by name.
fn order_key(path: &Path) -> (u128, u64, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parsed = stem
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    let (nanos, n) = parsed.unwrap_or((u128::MAX, u64::MAX));
    (nanos, n, stem)
}

/// `(spans, "<outcome>: <error>")` from a reason file's text.
fn summarize(text: &str) -> (Option<usize>, String) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
    };
    let spans = field("spans").and_then(|s| s.trim().parse().ok());
    let reason = match (field("outcome"), field("error")) {
        (Some(o), Some(e)) => format!("{o}: {e}"),
        (Some(o), None) => o.to_string(),
        (None, Some(e)) => e.to_string(),
        (None, None) => text
            .lines()
            .next()
            .unwrap_or("(empty reason file)")
            .to_string(),
    };
    (spans, reason)
}

/// What goes into the `.reason.txt` file.
#[derive(Debug)]
pub struct Reason<'a> {
    /// `rejected` (permanent error) or `retries exhausted`.
    pub outcome: &'a str,
    /// The error: `HTTP <status>: <backend message>` or the transport failure.
    pub error: &'a str,
    /// The endpoint as logged (no user info, no query).
    pub endpoint: &'a str,
    pub spans: usize,
}

impl DeadLetter {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            next: AtomicU64::new(1),
            bound: (0, String::new()),
        }
    }

    /// Keeps the folder under `max_bytes` after each write (the oldest files go first).
    pub fn bounded(mut self, max_bytes: u64, exporter: &str) -> Self {
        self.bound = (max_bytes, exporter.to_string());
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `protobuf` and its reason; returns the batch file's path.
    pub async fn keep(&self, protobuf: &[u8], reason: &Reason<'_>) -> std::io::Result<PathBuf> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let file = self.dir.join(format!("{nanos}-{n}.pb"));
        let reason_file = self.dir.join(format!("{nanos}-{n}.pb.reason.txt"));
        let text = format!(
            "outcome: {}\nerror: {}\nendpoint: {}\nspans: {}\nfile: OTLP protobuf ExportTraceServiceRequest (uncompressed)\n",
            reason.outcome, reason.error, reason.endpoint, reason.spans
        );
        let body = protobuf.to_vec();
        let (f, r) = (file.clone(), reason_file);
        // Blocking create-new writes: never overwrite an existing file.
        tokio::task::spawn_blocking(move || {
            create_new(&f, &body)?;
            create_new(&r, text.as_bytes())
        })
        .await
        .map_err(std::io::Error::other)??;
        let (dir, (max, owner)) = (self.dir.clone(), self.bound.clone());
        if max > 0 {
            let _ = tokio::task::spawn_blocking(move || {
                tracecast_core::spool::trim_and_report(&dir, max, &owner, "dead_letter")
            })
            .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dir_is_per_exporter() {
        let id = ComponentId::parse("otlp/axiom").unwrap();
        assert_eq!(
            default_dir(&id),
            PathBuf::from("./tracecast-data/dead-letter/otlp_axiom")
        );
    }

    #[tokio::test]
    async fn keeps_distinct_files_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetter::new(dir.path().join("dl"));
        let reason = Reason {
            outcome: "rejected",
            error: "HTTP 400 Bad Request: bad span",
            endpoint: "http://127.0.0.1:1/v1/traces",
            spans: 3,
        };
        let a = dl.keep(b"one", &reason).await.unwrap();
        let b = dl.keep(b"two", &reason).await.unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        let text = std::fs::read_to_string(format!("{}.reason.txt", a.display())).unwrap();
        assert!(
            text.contains("error: HTTP 400 Bad Request: bad span"),
            "{text}"
        );
        assert!(text.contains("spans: 3"));
    }

    #[tokio::test]
    async fn lists_batches_in_order_with_their_reason_including_resending() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
        let dl = DeadLetter::new(dir.path().to_path_buf());
        let reason = |spans| Reason {
            outcome: "rejected",
            error: "HTTP 400 Bad Request: bad span",
            endpoint: "http://127.0.0.1:1/v1/traces",
            spans,
        };
        let first = dl.keep(b"one", &reason(2)).await.unwrap();
        let second = dl.keep(b"two", &reason(5)).await.unwrap();
        let resending = dir.path().join(RESENDING_DIR);
        std::fs::create_dir(&resending).unwrap();
        let moved = resending.join("1-1.pb");
        std::fs::write(&moved, b"three").unwrap();
        let listed = list(dir.path()).unwrap();
        let paths: Vec<_> = listed.iter().map(|b| b.path.clone()).collect();
        assert_eq!(paths, vec![first, second, moved]);
        assert_eq!(listed[0].spans, Some(2));
        assert_eq!(listed[1].spans, Some(5));
        assert_eq!(listed[0].reason, "rejected: HTTP 400 Bad Request: bad span");
        assert_eq!(listed[2].spans, None);
        assert!(
            listed[2].reason.starts_with("(no reason file"),
            "{:?}",
            listed[2]
        );
    }

    #[test]
    fn effective_dir_prefers_the_config() {
        let id = ComponentId::parse("otlp/a").unwrap();
        let mut cfg = OtlpExporterConfig::default();
        assert_eq!(effective_dir(&id, &cfg), default_dir(&id));
        cfg.dead_letter_dir = Some(PathBuf::from("/tmp/dl"));
        assert_eq!(effective_dir(&id, &cfg), PathBuf::from("/tmp/dl"));
    }
}
