//! The dead-letter folder: batches a backend rejected for good (or that ran out of retries)
//! are kept on local disk as OTLP protobuf, with the reason beside them, so an operator can
//! see why and send them again (e.g. `curl --data-binary @<file> -H 'Content-Type:
//! application/x-protobuf' <endpoint>`).
//!
//! Layout: `<dir>/<unix_nanos>-<n>.pb` (an `ExportTraceServiceRequest`, uncompressed) and
//! `<dir>/<unix_nanos>-<n>.pb.reason.txt`. `n` counts per exporter instance, so two batches
//! kept in the same nanosecond still get distinct names; files are created new, never
//! overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracecast_core::ComponentId;

/// Where a dead-lettered batch is written.
#[derive(Debug)]
pub struct DeadLetter {
    dir: PathBuf,
    next: AtomicU64,
}

/// The default folder of exporter `id`: `./tracecast-data/dead-letter/<id>` (`/` in the id
/// becomes `_`, as for the `s3` exporter).
pub fn default_dir(id: &ComponentId) -> PathBuf {
    PathBuf::from("./tracecast-data/dead-letter").join(id.as_str().replace('/', "_"))
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
        }
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
}
