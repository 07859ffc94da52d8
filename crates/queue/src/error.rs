//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `max_bytes` already. Nothing was written: the caller should refuse the
    /// request with 429/503 and `Retry-After`, and the client sends it again later.
    #[error(
        "the durable queue is full ({used} of max_bytes {max_bytes} bytes used): refuse the request and let the client retry later, or raise queue max_bytes"
    )]
    Full { used: u64, max_bytes: u64 },
    /// One entry larger than the whole queue can never be stored.
    #[error(
        "entry of {size} bytes is larger than the queue's max_bytes ({max_bytes}): raise queue max_bytes or lower the receiver's body limit"
    )]
    EntryTooLarge { size: u64, max_bytes: u64 },
    /// `close()` was called (or the queue was shut down): no more appends.
    #[error("the durable queue is closed: the daemon is shutting down")]
    Closed,
    /// A file operation failed (for example ENOSPC: disk full). An append that fails this way
    /// was not stored and must not be acknowledged.
    #[error("durable queue: {context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process (or queue handle) has the directory open.
    #[error(
        "the queue directory {} is in use by another tracecast process: give each instance its own service.queue_dir",
        dir.display()
    )]
    InUse { dir: PathBuf },
    /// Options that cannot work (checked by `DurableQueue::open`).
    #[error("invalid queue options: {0}")]
    InvalidOptions(String),
    /// An entry that `decode_entry` cannot read.
    #[error("malformed queue entry: {0}")]
    BadEntry(String),
}

impl QueueError {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            context,
            path: path.into(),
            source,
        }
    }

    /// A copy for one of several callers that share one failed write (`io::Error` is not
    /// `Clone`; kind and message are kept).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Full { used, max_bytes } => Self::Full {
                used: *used,
                max_bytes: *max_bytes,
            },
            Self::EntryTooLarge { size, max_bytes } => Self::EntryTooLarge {
                size: *size,
                max_bytes: *max_bytes,
            },
            Self::Closed => Self::Closed,
            Self::Io {
                context,
                path,
                source,
            } => Self::Io {
                context,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Self::InUse { dir } => Self::InUse { dir: dir.clone() },
            Self::InvalidOptions(m) => Self::InvalidOptions(m.clone()),
            Self::BadEntry(m) => Self::BadEntry(m.clone()),
        }
    }

    /// Whether the same append may succeed later (queue full, disk full, I/O hiccup), so the
    /// receiver should answer 429/503 with `Retry-After` rather than 400.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Full { .. } | Self::Io { .. } | Self::Closed)
    }
}
