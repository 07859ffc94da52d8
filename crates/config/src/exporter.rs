//! Settings shared by every exporter, one definition each (as the Collector's
//! `configretry.BackOffConfig` and `configcompression.Type`): [`RetryOnFailure`] for
//! `retry_on_failure`, [`Compression`] for `compression`, and the validation of `timeout`,
//! `dead_letter_dir` and `dead_letter_max_size`. Each exporter's config embeds them under
//! the same key names, so the keys mean the same thing in every `exporters.<type>` section.

use std::path::Path;

use serde::Deserialize;
use tracecast_core::retry::RetryPolicy;

use crate::{ByteSize, Duration, FieldError};

/// `retry_on_failure`: how failed sends are retried (the Collector's field names, meanings
/// and defaults). Retryable failures (429/502/503/504, throttling, 5xx from S3, timeouts,
/// unreachable endpoints) wait `initial_interval`, then `multiplier` times longer each
/// time up to `max_interval`, each wait varied by +/- `randomization_factor`; a
/// `Retry-After` from the backend is honoured instead.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryOnFailure {
    /// When false, a failed send is not retried: it goes to the dead-letter folder at once.
    pub enabled: bool,
    /// Wait before the first retry.
    pub initial_interval: Duration,
    /// Upper bound of one wait (a `Retry-After` from the backend may ask for longer).
    pub max_interval: Duration,
    /// Give up (and dead-letter the data) this long after the first attempt. `0` means no
    /// limit, as in the Collector: retry until the shutdown deadline, after which the data
    /// stays in the durable queue for the next start.
    pub max_elapsed_time: Duration,
    /// Growth of the wait between attempts (at least 1).
    pub multiplier: f64,
    /// +/- fraction of each wait drawn at random (0 to 1), so senders do not retry in
    /// lockstep.
    pub randomization_factor: f64,
}

impl Default for RetryOnFailure {
    /// The Collector's defaults: 5s, then x1.5 up to 30s, +/-50%, for at most 300s.
    fn default() -> Self {
        Self {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetryOnFailure {
    /// The shared retry loop's policy. `max_elapsed_time: 0` gives no limit (only the hard
    /// stop ends the retries); disabled retries give up after the first failure.
    pub fn policy(&self) -> RetryPolicy {
        let max = self.max_elapsed_time.get();
        RetryPolicy {
            initial_interval: self.initial_interval.get(),
            max_interval: self.max_interval.get(),
            multiplier: self.multiplier,
            randomization_factor: self.randomization_factor,
            max_elapsed_time: if !self.enabled {
                Some(std::time::Duration::ZERO)
            } else if max.is_zero() {
                None
            } else {
                Some(max)
            },
        }
    }

    /// Every problem, with paths below `key` (the exporter's `retry_on_failure`).
    pub fn validate_at(&self, key: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let at = |field: &str| format!("{key}.{field}");
        if self.initial_interval.get().is_zero() {
            errors.push(FieldError::new(
                at("initial_interval"),
                "must be greater than 0, e.g. 5s",
            ));
        }
        if self.max_interval < self.initial_interval {
            errors.push(FieldError::new(
                at("max_interval"),
                format!(
                    "({}) must not be less than initial_interval ({})",
                    self.max_interval, self.initial_interval
                ),
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            errors.push(FieldError::new(
                at("multiplier"),
                "must be a number of at least 1, e.g. 1.5",
            ));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            errors.push(FieldError::new(
                at("randomization_factor"),
                "must be between 0 and 1, e.g. 0.5",
            ));
        }
        errors
    }
}

/// `compression`: how an exporter compresses what it sends (`none` or `gzip`). The
/// type's default is `gzip`, the Collector's for network exporters (the `otlp` exporter
/// keeps it); the `s3` exporter's config picks `none`, so trace files stay plain `.json`
/// as the gateway writes them and existing readers keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Sent as is.
    None,
    /// gzip (RFC 1952).
    #[default]
    Gzip,
}

/// The default dead-letter folder bound: 256 MiB (a quarter of the default
/// `service.queue.max_size`).
pub const DEFAULT_DEAD_LETTER_MAX_SIZE: ByteSize = ByteSize::mib(256);

/// Checks `timeout` (one request, from connect to the end of the answer): greater than 0.
pub fn validate_timeout(timeout: Duration) -> Option<FieldError> {
    timeout
        .get()
        .is_zero()
        .then(|| FieldError::new("timeout", "must be greater than 0, e.g. 10s"))
}

/// Checks `dead_letter_dir`: absent (the default folder) or a non-empty path.
pub fn validate_dead_letter_dir(dir: Option<&Path>) -> Option<FieldError> {
    dir.is_some_and(|p| p.as_os_str().is_empty()).then(|| {
        FieldError::new(
            "dead_letter_dir",
            "is empty; give a folder path or remove the key (default ./tracecast-data/dead-letter/<exporter id>)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_collectors() {
        let p = RetryOnFailure::default().policy();
        assert_eq!(p, RetryPolicy::default());
    }

    #[test]
    fn zero_max_elapsed_time_means_no_limit_and_disabled_means_one_attempt() {
        let mut r = RetryOnFailure {
            max_elapsed_time: Duration::from_secs(0),
            ..Default::default()
        };
        assert_eq!(r.policy().max_elapsed_time, None);
        assert_eq!(r.validate_at("retry_on_failure"), vec![]);
        r.enabled = false;
        assert_eq!(r.policy().max_elapsed_time, Some(std::time::Duration::ZERO));
    }

    #[test]
    fn every_problem_has_its_path() {
        let r = RetryOnFailure {
            initial_interval: Duration::from_secs(0),
            max_interval: Duration::from_secs(0),
            multiplier: 0.5,
            randomization_factor: 2.0,
            ..Default::default()
        };
        let paths: Vec<_> = r
            .validate_at("retry_on_failure")
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "retry_on_failure.initial_interval",
                "retry_on_failure.multiplier",
                "retry_on_failure.randomization_factor"
            ]
        );
    }
}
