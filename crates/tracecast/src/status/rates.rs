//! Spans/s over the last minute, from a small ring of counter samples.
//!
//! Every [`SAMPLE_EVERY`] the sampler copies the counters the page shows as rates (spans
//! accepted per receiver, spans sent per exporter) into a ring of at most [`SAMPLES`]
//! samples; a rate is the difference between the newest sample and the oldest one within
//! [`WINDOW`], over the time between them. The counters are read without creating series
//! (an idle exporter keeps no `/metrics` line because of the page).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tracecast_core::metrics;
use tracecast_core::CancellationToken;

use crate::pipeline::used_exporters;
use crate::ValidatedConfig;

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The window rates are computed over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Samples kept: one window's worth plus the one that starts it.
pub const SAMPLES: usize = 13;

/// The sample key of receiver `id`'s accepted spans.
pub fn received_key(id: &str) -> String {
    format!("in:{id}")
}

/// The sample key of exporter `id`'s sent spans.
pub fn sent_key(id: &str) -> String {
    format!("out:{id}")
}

type Sample = (Instant, BTreeMap<String, u64>);

/// The ring of samples.
#[derive(Debug, Default)]
pub struct Rates {
    samples: Mutex<VecDeque<Sample>>,
}

impl Rates {
    /// Adds a sample of `config`'s receivers and used exporters taken now.
    pub fn sample(&self, config: &ValidatedConfig) {
        self.push(Instant::now(), Self::read(config));
    }

    /// Per key, the rate from the oldest sample within the last minute up to the counters
    /// now (so a page opened seconds after the start already shows traffic).
    pub fn per_second_now(&self, config: &ValidatedConfig) -> BTreeMap<String, f64> {
        let now = (Instant::now(), Self::read(config));
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        rates(samples.iter().chain(std::iter::once(&now)))
    }

    /// The counters of `config`'s receivers and used exporters.
    fn read(config: &ValidatedConfig) -> BTreeMap<String, u64> {
        let get = |family: &Family<metrics::ComponentLabels, Counter>, id: &str| {
            family.get(&metrics::component(id)).map_or(0, |c| c.get())
        };
        let mut values = BTreeMap::new();
        for id in config.receivers.keys() {
            values.insert(
                received_key(id.as_str()),
                get(&metrics::SPANS_RECEIVED, id.as_str()),
            );
        }
        for id in used_exporters(config) {
            values.insert(
                sent_key(id.as_str()),
                get(&metrics::SPANS_EXPORTED, id.as_str()),
            );
        }
        values
    }

    fn push(&self, at: Instant, values: BTreeMap<String, u64>) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back((at, values));
    }

    /// Per key, the rate over the last minute of the stored samples (0 until two exist).
    pub fn per_second(&self) -> BTreeMap<String, f64> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        rates(samples.iter())
    }

    /// Samples every [`SAMPLE_EVERY`] (the config read afresh each time, so a reload's
    /// components are followed) until `stop` fires.
    pub fn spawn(
        state: std::sync::Arc<super::StatusState>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                state.rates.sample(&state.config());
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                }
            }
        })
    }
}

/// Per key, the rate between the last of `samples` and the oldest one within [`WINDOW`]
/// of it (empty with fewer than two).
fn rates<'a>(samples: impl Iterator<Item = &'a Sample> + Clone) -> BTreeMap<String, f64> {
    let Some((last_at, last)) = samples.clone().last() else {
        return BTreeMap::new();
    };
    let Some((first_at, first)) = samples
        .clone()
        .find(|(at, _)| last_at.duration_since(*at) <= WINDOW)
    else {
        return BTreeMap::new();
    };
    let secs = last_at.duration_since(*first_at).as_secs_f64();
    if secs <= 0.0 {
        return BTreeMap::new();
    }
    last.iter()
        .map(|(k, v)| {
            // A key new since the first sample started from 0 then.
            let before = first.get(k).copied().unwrap_or(0);
            (k.clone(), v.saturating_sub(before) as f64 / secs)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_cover_the_last_minute_only() {
        let r = Rates::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let one = |v: u64| BTreeMap::from([("out:x".to_string(), v)]);
        assert!(r.per_second().is_empty());
        r.push(at(0), one(0));
        assert!(r.per_second().is_empty(), "one sample: no rate");
        r.push(at(10), one(100));
        assert_eq!(r.per_second()["out:x"], 10.0);
        // 70 s later: the sample at 0 is out of the window; 10 -> 70 is 60 s.
        r.push(at(70), one(700));
        assert_eq!(r.per_second()["out:x"], 10.0);
        // A counter that went back (a reopened exporter) gives 0, not a huge number.
        r.push(at(75), one(5));
        assert_eq!(r.per_second()["out:x"], 0.0);
        for i in 0..(SAMPLES as u64 + 3) {
            r.push(at(80 + i), one(0));
        }
        assert_eq!(r.samples.lock().unwrap().len(), SAMPLES);
    }
}
