//! Counted, rate-limited warnings for bad input that does not stop a span.
//!
//! Every occurrence is counted in `tracecast_warnings{component, reason}`; the log line is
//! written at most once per reason per [`WARN_INTERVAL`], so a gateway sending the same
//! malformed field on every request cannot flood the log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracecast_core::metrics;
use tracecast_core::ComponentId;

/// Minimum time between two log lines for the same reason.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// Counts warnings for one component and logs them at a bounded rate.
#[derive(Debug)]
pub struct Warner {
    component: ComponentId,
    last_logged: HashMap<&'static str, Instant>,
}

impl Warner {
    pub fn new(component: ComponentId) -> Self {
        Self {
            component,
            last_logged: HashMap::new(),
        }
    }

    /// Counts one warning with `reason` (a short snake_case label) and logs `detail` unless
    /// the same reason was logged within [`WARN_INTERVAL`].
    pub fn warn(&mut self, reason: &'static str, detail: impl FnOnce() -> String) {
        metrics::WARNINGS
            .get_or_create(&metrics::reason(self.component.as_str(), reason))
            .inc();
        let now = Instant::now();
        let due = self
            .last_logged
            .get(reason)
            .is_none_or(|last| now.duration_since(*last) >= WARN_INTERVAL);
        if due {
            self.last_logged.insert(reason, now);
            tracing::warn!(
                component = %self.component,
                reason,
                "{} (the span was kept; further warnings for this reason are counted in \
                 tracecast_warnings and logged at most every {}s)",
                detail(),
                WARN_INTERVAL.as_secs()
            );
        }
    }
}
