//! Periodic re-test of every destination while tracecast runs.
//!
//! Start-up tests each destination once; a backend that goes away later would otherwise
//! leave `/readyz` green while data piles up in retries. Every
//! `service.admin.recheck_interval` this task re-runs the same connection tests as
//! `tracecast check` ([`crate::check::test_destinations`]), sets
//! `tracecast_destination_up{component=...}` to 1 or 0 per destination, and sets
//! [`Readiness::destinations_ok`] to "all passed". It logs only changes (a destination going
//! down or coming back), not every failed attempt, so a long outage is one line, not one per
//! interval.
//!
//! The config comes through a `watch` channel so a reload can hand over the new set of
//! destinations: the next round tests those, and gauges of removed destinations are dropped.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracecast_core::{metrics, CancellationToken, ComponentId};
use tracing::{info, warn};

use crate::admin::Readiness;
use crate::check::{self, DestinationResult};
use crate::registry::ValidatedConfig;

/// Starts the re-test loop; it ends when `stop` fires. The first round runs one
/// `recheck_interval` after the call (start-up has just tested everything).
pub fn spawn(
    config: watch::Receiver<Arc<ValidatedConfig>>,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: BTreeMap<ComponentId, bool> = BTreeMap::new();
        loop {
            let current = config.borrow().clone();
            let interval = current.raw.service.admin.recheck_interval.get();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
            let current = config.borrow().clone();
            let results = tokio::select! {
                _ = stop.cancelled() => break,
                r = check::test_destinations(&current) => r,
            };
            let all_ok = record(&results, &mut last);
            readiness.destinations_ok.store(all_ok, Ordering::Relaxed);
        }
    })
}

/// Updates the gauges and logs changes; returns whether every destination passed.
/// `last` holds the previous round's outcome per destination.
fn record(results: &[DestinationResult], last: &mut BTreeMap<ComponentId, bool>) -> bool {
    let mut now = BTreeMap::new();
    for r in results {
        let up = r.outcome.is_ok();
        metrics::DESTINATION_UP
            .get_or_create(&metrics::component(r.id.as_str()))
            .set(i64::from(up));
        match (last.get(&r.id), &r.outcome) {
            (Some(true) | None, Err(why)) => {
                warn!(destination = %r.id, "connection test failed; /readyz reports not ready until it passes again: {why}");
            }
            (Some(false), Ok(())) => {
                info!(destination = %r.id, "connection test passes again");
            }
            _ => {}
        }
        now.insert(r.id.clone(), up);
    }
    for gone in last.keys().filter(|id| !now.contains_key(*id)) {
        metrics::DESTINATION_UP.remove(&metrics::component(gone.as_str()));
    }
    *last = now;
    results.iter().all(|r| r.outcome.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, ok: bool) -> DestinationResult {
        DestinationResult {
            id: ComponentId::parse(id).unwrap(),
            outcome: if ok { Ok(()) } else { Err("down".into()) },
        }
    }

    fn gauge(id: &str) -> i64 {
        metrics::DESTINATION_UP
            .get_or_create(&metrics::component(id))
            .get()
    }

    #[test]
    fn gauges_follow_results_and_removed_destinations_are_dropped() {
        let mut last = BTreeMap::new();
        assert!(!record(
            &[
                result("otlp/health_a", true),
                result("otlp/health_b", false)
            ],
            &mut last
        ));
        assert_eq!(gauge("otlp/health_a"), 1);
        assert_eq!(gauge("otlp/health_b"), 0);
        assert!(record(&[result("otlp/health_a", true)], &mut last));
        assert_eq!(last.len(), 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &crate::admin::registry()).unwrap();
        assert!(
            text.contains("tracecast_destination_up{component=\"otlp/health_a\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("otlp/health_b"),
            "removed destination dropped: {text}"
        );
    }
}
