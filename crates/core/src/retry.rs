//! The one retry loop, shared by every exporter (Collector `otlphttpexporter` +
//! `exporterhelper` semantics): exponential backoff with jitter on retryable errors,
//! `Retry-After` honoured, permanent errors returned at once, and a bound on the total time
//! so nothing is retried forever.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ExportError;
use crate::CancellationToken;

/// The longest `Retry-After` honoured as given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Backoff settings. Defaults follow the Collector's `retry_on_failure`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub initial_interval: Duration,
    pub max_interval: Duration,
    pub multiplier: f64,
    /// +/- fraction of each wait drawn at random, so clients do not retry in lockstep.
    pub randomization_factor: f64,
    /// Give up after this much time since the first attempt (`None`: only a hard stop
    /// ends the retries).
    pub max_elapsed_time: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            multiplier: 1.5,
            randomization_factor: 0.5,
            max_elapsed_time: Some(Duration::from_secs(300)),
        }
    }
}

/// Why [`retry`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error("permanent error: {0}")]
    Permanent(String),
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("shutdown deadline reached after {attempts} attempts: {last}")]
    Stopped { attempts: u32, last: String },
}

impl RetryPolicy {
    /// The wait before attempt `n + 1` (n >= 1) without jitter.
    fn base_delay(&self, attempts: u32) -> Duration {
        let factor = self.multiplier.powi(attempts.saturating_sub(1) as i32);
        let secs = self.initial_interval.as_secs_f64() * factor;
        Duration::from_secs_f64(secs.min(self.max_interval.as_secs_f64()))
    }

    fn jittered(&self, base: Duration) -> Duration {
        let r = self.randomization_factor.clamp(0.0, 1.0);
        let scale = 1.0 - r + 2.0 * r * fastrand::f64();
        Duration::from_secs_f64(base.as_secs_f64() * scale)
    }
}

/// Runs `attempt` until it succeeds, fails permanently, the policy's time runs out, or
/// `hard_stop` fires. `on_retry` is told about every retryable failure (for logs and
/// metrics) with the wait chosen.
pub async fn retry<F, Fut>(
    policy: &RetryPolicy,
    hard_stop: &CancellationToken,
    mut attempt: F,
    mut on_retry: impl FnMut(&ExportError, Duration),
) -> Result<u32, RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), ExportError>>,
{
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let err = tokio::select! {
            biased;
            _ = hard_stop.cancelled() => {
                return Err(RetryError::Stopped { attempts, last: "not attempted".into() });
            }
            res = attempt() => match res {
                Ok(()) => return Ok(attempts),
                Err(e) => e,
            },
        };
        let retry_after = match &err {
            ExportError::Permanent { message } => {
                return Err(RetryError::Permanent(message.clone()))
            }
            ExportError::Retryable { retry_after, .. } => *retry_after,
        };
        let wait = match retry_after {
            // The server knows best; only absurd values are capped.
            Some(ra) => ra.min(MAX_RETRY_AFTER),
            None => policy.jittered(policy.base_delay(attempts)),
        };
        if let Some(max) = policy.max_elapsed_time {
            if started.elapsed() + wait > max {
                return Err(RetryError::Exhausted {
                    attempts,
                    last: err.to_string(),
                });
            }
        }
        on_retry(&err, wait);
        tokio::select! {
            _ = hard_stop.cancelled() => {
                return Err(RetryError::Stopped { attempts, last: err.to_string() });
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_and_stops_on_permanent() {
        let policy = RetryPolicy::default();
        let stop = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let res = retry(
            &policy,
            &stop,
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(ExportError::retryable("503")),
                    _ => Ok(()),
                }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(res, Ok(3));

        let res = retry(
            &policy,
            &stop,
            || async { Err(ExportError::permanent("400 bad")) },
            |_, _| panic!("permanent errors are not retried"),
        )
        .await;
        assert_eq!(res, Err(RetryError::Permanent("400 bad".into())));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_and_gives_up_after_max_elapsed() {
        let policy = RetryPolicy {
            max_elapsed_time: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let stop = CancellationToken::new();
        let mut waits = Vec::new();
        let res = retry(
            &policy,
            &stop,
            || async {
                Err(ExportError::Retryable {
                    message: "429".into(),
                    retry_after: Some(Duration::from_secs(7)),
                })
            },
            |_, w| waits.push(w),
        )
        .await;
        assert!(matches!(res, Err(RetryError::Exhausted { .. })));
        assert!(waits.iter().all(|w| *w == Duration::from_secs(7)));
        assert_eq!(waits.len(), 8); // 8 * 7s = 56s; the 9th wait would pass 60s
    }
}
