//! The `otlp` exporter's use of the shared dead-letter store
//! ([`tracecast_core::dead_letter`]): batches a backend rejected for good (or that ran out
//! of retries) are kept as OTLP protobuf, with the reason beside them, so an operator can
//! see why and send them again (e.g. `curl --data-binary @<file> -H 'Content-Type:
//! application/x-protobuf' <endpoint>`).
//!
//! Layout (the store's naming rule): `<dir>/<unix_nanos>-<n>.pb` (an
//! `ExportTraceServiceRequest`, uncompressed) and `<dir>/<unix_nanos>-<n>.pb.reason.txt`
//! (`outcome`, `spans`, `endpoint`, `error`). `tracecast dead-letters resend` moves the
//! batches it is sending into the [`RESENDING_DIR`] subfolder first, so a crash mid-resend
//! leaves each batch either in place or there (and the next `resend` picks those up):
//! nothing is lost.

use std::path::{Path, PathBuf};

use tracecast_core::dead_letter::{self as store, DeadLetterStore};
pub use tracecast_core::dead_letter::{default_dir, reason_path};
use tracecast_core::ComponentId;

use crate::config::OtlpExporterConfig;

/// Where a dead-lettered batch is written.
#[derive(Debug)]
pub struct DeadLetter(DeadLetterStore);

/// The folder exporter `id` keeps its dead letters in: `dead_letter_dir` when set, else
/// [`default_dir`] (the one rule of [`tracecast_core::dead_letter::dir_for`]).
pub fn effective_dir(id: &ComponentId, config: &OtlpExporterConfig) -> PathBuf {
    store::dir_for(id, config.dead_letter_dir.as_deref())
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

/// The dead letters in `dir` and its [`RESENDING_DIR`] subfolder, oldest first. A folder
/// that does not exist holds none.
pub fn list(dir: &Path) -> std::io::Result<Vec<StoredBatch>> {
    let mut letters = batches(dir)?;
    letters.extend(batches(&dir.join(RESENDING_DIR))?);
    Ok(letters
        .into_iter()
        .map(|l| {
            let (spans, reason) = match &l.reason {
                Ok(text) => summarize(text),
                Err(why) => (None, why.clone()),
            };
            StoredBatch {
                path: l.path,
                spans,
                reason,
            }
        })
        .collect())
}

/// The `.pb` files directly in `dir`, oldest first; none if `dir` is missing.
pub fn batch_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(batches(dir)?.into_iter().map(|l| l.path).collect())
}

fn batches(dir: &Path) -> std::io::Result<Vec<store::StoredLetter>> {
    let mut letters = store::list(dir)?;
    letters.retain(|l| l.path.extension().is_some_and(|e| e == "pb"));
    Ok(letters)
}

/// `(spans, "<outcome>: <error>")` from a reason file's text.
fn summarize(text: &str) -> (Option<usize>, String) {
    let spans = store::field(text, "spans").and_then(|s| s.trim().parse().ok());
    let reason = match (store::field(text, "outcome"), store::field(text, "error")) {
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
        Self(DeadLetterStore::new(dir))
    }

    /// Keeps the folder under `max_bytes` after each write (the oldest files go first).
    pub fn bounded(self, max_bytes: u64, exporter: &str) -> Self {
        Self(self.0.bounded(max_bytes, exporter))
    }

    pub fn dir(&self) -> &Path {
        self.0.dir()
    }

    /// Writes `protobuf` and its reason; returns the batch file's path.
    pub async fn keep(&self, protobuf: &[u8], reason: &Reason<'_>) -> std::io::Result<PathBuf> {
        let details = [
            ("endpoint", reason.endpoint),
            (
                "file",
                "OTLP protobuf ExportTraceServiceRequest (uncompressed)",
            ),
        ];
        let reason = store::Reason {
            outcome: reason.outcome,
            error: reason.error,
            spans: Some(reason.spans),
            details: &details,
        };
        self.0.keep("", ".pb", protobuf, &reason).await
    }
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
