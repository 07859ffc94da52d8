//! Periodic readiness check of every destination while tracecast runs.
//!
//! Start-up tests each destination once; a backend that goes away later would otherwise
//! leave `/readyz` green while data piles up in retries. Every
//! `service.admin.recheck_interval` this task judges each destination:
//!
//! - by its real traffic when it had any since the last round: spans delivered means up;
//!   only retries and dead letters (no delivery) means down. This costs the destination
//!   nothing: a busy S3 exporter gets no extra objects, a busy OTLP backend no extra
//!   requests;
//! - by the connection test otherwise (an idle destination): the same test as
//!   `tracecast check` ([`crate::check::test_some_destinations`]), which for S3 overwrites
//!   one fixed probe object, so an idle exporter never adds objects either.
//!
//! It sets `tracecast_destination_up{component=...}` to 1 or 0 per destination and tells
//! [`Readiness`] which are down. It logs only changes (a destination going down or coming
//! back), not every failed round, so a long outage is one line, not one per interval.
//!
//! The config comes through a `watch` channel so a reload can hand over the new set of
//! destinations: the next round judges those, and gauges of removed destinations are dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracecast_core::{metrics, CancellationToken, ComponentId};
use tracing::{info, warn};

use crate::check::{self, DestinationResult};
use crate::pipeline::used_exporters;
use crate::registry::ValidatedConfig;

/// A destination's counters at the last round: spans delivered, and failed attempts
/// (retries plus dead letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Traffic {
    delivered: u64,
    failed: u64,
}

impl Traffic {
    /// Reads the counters without creating absent series (an exporter that never
    /// dead-lettered has no `tracecast_dead_letters_total` line, and keeps none).
    fn now(id: &ComponentId) -> Self {
        let labels = metrics::component(id.as_str());
        let read = |family: &Family<metrics::ComponentLabels, Counter>| {
            family.get(&labels).map_or(0, |c| c.get())
        };
        Self {
            delivered: read(&metrics::SPANS_EXPORTED),
            failed: read(&metrics::EXPORT_RETRIES) + read(&metrics::DEAD_LETTERS),
        }
    }
}

/// What real traffic says about a destination since the last round (`None`: no traffic,
/// so the connection test decides).
fn judge_by_traffic(before: Traffic, now: Traffic) -> Option<Result<(), String>> {
    let delivered = now.delivered.saturating_sub(before.delivered);
    let failed = now.failed.saturating_sub(before.failed);
    if delivered > 0 {
        Some(Ok(()))
    } else if failed > 0 {
        Some(Err(format!(
            "exports are failing: {failed} failed attempt(s) and nothing delivered since the last check (see the log)"
        )))
    } else {
        None
    }
}

/// Starts the check loop; it ends when `stop` fires. The first round runs one
/// `recheck_interval` after the call (start-up has just tested everything).
pub fn spawn(
    config: watch::Receiver<Arc<ValidatedConfig>>,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: BTreeMap<ComponentId, bool> = BTreeMap::new();
        let mut traffic: BTreeMap<ComponentId, Traffic> = BTreeMap::new();
        loop {
            let current = config.borrow().clone();
            for id in used_exporters(&current) {
                traffic
                    .entry(id.clone())
                    .or_insert_with(|| Traffic::now(&id));
            }
            let interval = current.raw.service.admin.recheck_interval.get();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
            let current = config.borrow().clone();
            let used = used_exporters(&current);
            traffic.retain(|id, _| used.contains(id));
            let mut results = Vec::new();
            let mut idle = Vec::new();
            for id in &used {
                let now = Traffic::now(id);
                let judged = traffic
                    .get(id)
                    .and_then(|before| judge_by_traffic(*before, now));
                traffic.insert(id.clone(), now);
                match judged {
                    Some(outcome) => results.push(DestinationResult {
                        id: id.clone(),
                        outcome,
                    }),
                    None => idle.push(id.clone()),
                }
            }
            if !idle.is_empty() {
                let tested = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = check::test_some_destinations(&current, Some(&idle)) => r,
                };
                results.extend(tested.into_iter().map(|r| {
                    DestinationResult {
                        outcome: r
                            .outcome
                            .map_err(|why| format!("connection test failed: {why}")),
                        id: r.id,
                    }
                }));
            }
            record(&results, &mut last);
            readiness.set_destinations(&results);
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
                warn!(destination = %r.id, "destination down; /readyz reports not ready until it answers again: {why}");
            }
            (Some(false), Ok(())) => {
                info!(destination = %r.id, "destination up again");
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

/// What `/readyz` reports, updated by the service.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Receivers are listening.
    pub listening: AtomicBool,
    /// Destinations known to be down, with why. Per destination (not one flag) so that a
    /// daemon started on a taken config during an outage says which backend it waits for.
    down: Mutex<BTreeMap<ComponentId, String>>,
    /// Each destination's latest judgement (test or traffic) and when it was made, for the
    /// status page ([`Readiness::destination_states`]).
    judged: Mutex<BTreeMap<ComponentId, Judged>>,
}

/// A destination's latest judgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// `Ok` or why it is down, in plain words.
    pub outcome: Result<(), String>,
    pub at: std::time::SystemTime,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.listening.load(Ordering::Relaxed) && self.down_destinations().is_empty()
    }

    /// Replaces what is known about every destination with `results`.
    pub fn set_destinations(&self, results: &[DestinationResult]) {
        let down = results
            .iter()
            .filter_map(|r| r.outcome.clone().err().map(|why| (r.id.clone(), why)))
            .collect();
        *self.down.lock().unwrap_or_else(|p| p.into_inner()) = down;
        self.judge(results);
    }

    fn judge(&self, results: &[DestinationResult]) {
        let at = std::time::SystemTime::now();
        let mut judged = self.judged.lock().unwrap_or_else(|p| p.into_inner());
        for r in results {
            let outcome = r.outcome.clone();
            judged.insert(r.id.clone(), Judged { outcome, at });
        }
    }

    /// Each destination's latest judgement (connection test or traffic) and its time;
    /// destinations never judged yet (started with `--skip-connection-test`) are absent.
    pub fn destination_states(&self) -> BTreeMap<ComponentId, Judged> {
        self.judged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a reload: forgets destinations not in `running`, and takes `tested` (the new or
    /// changed ones, which just passed their test) as they are.
    pub fn reconcile(&self, running: &[ComponentId], tested: &[DestinationResult]) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        down.retain(|id, _| running.contains(id));
        for r in tested {
            match &r.outcome {
                Ok(()) => down.remove(&r.id),
                Err(why) => down.insert(r.id.clone(), why.clone()),
            };
        }
        drop(down);
        self.judged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| running.contains(id));
        self.judge(tested);
    }

    /// The destinations that are down, with why.
    pub fn down_destinations(&self) -> Vec<(ComponentId, String)> {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, why)| (id.clone(), why.clone()))
            .collect()
    }
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
    fn readiness_keeps_each_destinations_latest_judgement() {
        let r = Readiness::default();
        r.set_destinations(&[result("otlp/a", true), result("otlp/b", false)]);
        let states = r.destination_states();
        assert_eq!(states.len(), 2);
        assert_eq!(
            states[&ComponentId::parse("otlp/b").unwrap()].outcome,
            Err("down".into())
        );
        let running = [ComponentId::parse("otlp/b").unwrap()];
        r.reconcile(&running, &[result("otlp/b", true)]);
        let states = r.destination_states();
        assert_eq!(states.keys().cloned().collect::<Vec<_>>(), running);
        assert!(states[&running[0]].outcome.is_ok());
    }

    #[test]
    fn traffic_decides_when_there_was_some() {
        let t = |delivered, failed| Traffic { delivered, failed };
        assert_eq!(judge_by_traffic(t(5, 1), t(5, 1)), None, "idle: probe");
        assert_eq!(judge_by_traffic(t(5, 1), t(9, 3)), Some(Ok(())));
        assert!(
            matches!(judge_by_traffic(t(5, 1), t(5, 2)), Some(Err(why)) if why.contains("1 failed attempt"))
        );
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
        prometheus_client::encoding::text::encode(&mut text, &crate::metrics_registry()).unwrap();
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
