//! Queue options ([`QueueOptions`], what `open` takes). Their YAML form is
//! `tracecast_config::QueueConfig` (`service.queue`), mapped by the binary.

use std::time::Duration;

use tracecast_config::validate::FieldError;

/// Smallest accepted `max_bytes`: below this a single request could not fit.
pub const MIN_MAX_BYTES: u64 = 4096;
/// Smallest accepted `segment_bytes`.
pub const MIN_SEGMENT_BYTES: u64 = 1024;

/// When an append is made durable, i.e. when `append` resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` before `append` resolves (group commit shares one fsync between all
    /// appends pending at that moment). Survives process crash and power loss.
    Always,
    /// `append` resolves after `write(2)`; the segment is fsynced at most this long after a
    /// write. Survives a process crash (`kill -9`), may lose up to the interval on power loss
    /// or kernel crash.
    Interval(Duration),
    /// `append` resolves after `write(2)`; the OS flushes when it likes. Survives a process
    /// crash only.
    Never,
}

/// How `DurableQueue::open` sets the queue up. `Default`: fsync always, 1 GiB, 64 MiB segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// When appends are durable.
    pub fsync: FsyncPolicy,
    /// Upper bound of the segment files' total size; an append that would pass it gets
    /// `QueueError::Full`.
    pub max_bytes: u64,
    /// Size at which the writer starts a new segment file. Capped at `max_bytes / 4` so that
    /// deleting delivered segments can always free room.
    pub segment_bytes: u64,
    /// How often the committed cursor is written to disk (and delivered segments deleted).
    /// Longer means fewer writes and more replay after a crash; never loss.
    pub cursor_interval: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Always,
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            cursor_interval: Duration::from_millis(100),
        }
    }
}

impl QueueOptions {
    /// Every problem with these options (empty when usable).
    pub fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        if self.max_bytes < MIN_MAX_BYTES {
            out.push(FieldError::new(
                "max_bytes",
                format!(
                    "must be at least {MIN_MAX_BYTES} bytes (got {})",
                    self.max_bytes
                ),
            ));
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            out.push(FieldError::new(
                "segment_bytes",
                format!(
                    "must be at least {MIN_SEGMENT_BYTES} bytes (got {})",
                    self.segment_bytes
                ),
            ));
        }
        if let FsyncPolicy::Interval(d) = self.fsync {
            if d.is_zero() {
                out.push(FieldError::new(
                    "fsync_interval",
                    "must be more than 0 with fsync: interval (use fsync: always to sync every write)",
                ));
            }
        }
        if self.cursor_interval.is_zero() {
            out.push(FieldError::new("cursor_interval", "must be more than 0"));
        }
        out
    }

    /// The segment size actually used: `segment_bytes`, at most `max_bytes / 4`.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes
            .min(self.max_bytes / 4)
            .max(MIN_SEGMENT_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_reported_with_their_key() {
        let options = QueueOptions {
            fsync: FsyncPolicy::Interval(Duration::ZERO),
            max_bytes: 1024,
            ..QueueOptions::default()
        };
        let paths: Vec<String> = options.problems().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["max_bytes", "fsync_interval"]);
        assert!(QueueOptions::default().problems().is_empty());
    }
}
