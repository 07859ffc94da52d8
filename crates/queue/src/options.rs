//! Queue options ([`QueueOptions`], what `open` takes) and their YAML form ([`QueueConfig`]).

use std::time::Duration;

use serde::Deserialize;
use tracecast_config::units::{ByteSize, Duration as ConfigDuration};
use tracecast_config::validate::{FieldError, Validate};

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

/// The `fsync` key of [`QueueConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    Always,
    Interval,
    Never,
}

/// The queue section of the YAML config (`service.queue` or a pipeline's `queue`; where it
/// sits is the binary's choice). The directory is not here: the runtime gives each pipeline
/// its own sub-directory of `service.queue_dir`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// `always` (ack after fsync, the default: nothing acked is lost even on power loss),
    /// `interval` (fsync every `fsync_interval`: a power loss may lose that much), or
    /// `never` (leave it to the OS: survives `kill -9` only).
    pub fsync: FsyncMode,
    /// With `fsync: interval`, the longest time written data stays unsynced.
    pub fsync_interval: ConfigDuration,
    /// Bound of the queue on disk; when reached the receiver answers 429/503 with Retry-After.
    pub max_bytes: ByteSize,
    /// Size of one segment file; delivered segments are deleted whole.
    pub segment_bytes: ByteSize,
    /// How often the delivery cursor is saved: longer means more replay after a crash.
    pub cursor_interval: ConfigDuration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        let options = QueueOptions::default();
        Self {
            fsync: FsyncMode::Always,
            fsync_interval: ConfigDuration::from_millis(200),
            max_bytes: ByteSize(options.max_bytes),
            segment_bytes: ByteSize(options.segment_bytes),
            cursor_interval: ConfigDuration(options.cursor_interval),
        }
    }
}

impl QueueConfig {
    /// The options `DurableQueue::open` takes.
    pub fn options(&self) -> QueueOptions {
        QueueOptions {
            fsync: match self.fsync {
                FsyncMode::Always => FsyncPolicy::Always,
                FsyncMode::Interval => FsyncPolicy::Interval(self.fsync_interval.get()),
                FsyncMode::Never => FsyncPolicy::Never,
            },
            max_bytes: self.max_bytes.get(),
            segment_bytes: self.segment_bytes.get(),
            cursor_interval: self.cursor_interval.get(),
        }
    }
}

impl Validate for QueueConfig {
    fn validate(&self) -> Vec<FieldError> {
        // `options()` only carries the interval with `fsync: interval`, so a zero interval
        // elsewhere is (rightly) not reported.
        self.options().problems()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_maps_to_options() {
        let cfg: QueueConfig = serde_yaml::from_str(
            "fsync: interval\nfsync_interval: 50ms\nmax_bytes: 2GiB\nsegment_bytes: 16MiB\n",
        )
        .unwrap();
        assert!(cfg.validate().is_empty());
        let options = cfg.options();
        assert_eq!(
            options.fsync,
            FsyncPolicy::Interval(Duration::from_millis(50))
        );
        assert_eq!(options.max_bytes, 2 << 30);
        assert_eq!(options.segment_bytes, 16 << 20);
        assert_eq!(options.cursor_interval, Duration::from_millis(100));

        let defaults: QueueConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(defaults.options(), QueueOptions::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported() {
        let err = serde_yaml::from_str::<QueueConfig>("fsync: sometimes\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `sometimes`"),
            "{err}"
        );
        let err = serde_yaml::from_str::<QueueConfig>("max_size: 1GiB\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_size`"),
            "{err}"
        );

        let cfg: QueueConfig =
            serde_yaml::from_str("fsync: interval\nfsync_interval: 0s\nmax_bytes: 1KiB\n").unwrap();
        let paths: Vec<String> = cfg.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["max_bytes", "fsync_interval"]);
        // The interval only matters with `fsync: interval`.
        let cfg: QueueConfig = serde_yaml::from_str("fsync: always\nfsync_interval: 0s\n").unwrap();
        assert!(cfg.validate().is_empty());
    }
}
