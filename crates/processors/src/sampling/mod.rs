//! The `sampling` processor: keeps a deterministic share of traces, sessions or users.
//!
//! The decision is a pure function of a key and the ratio, so it is the same on every node,
//! across restarts and reloads, and for every span of a trace whatever request it came in:
//!
//! - `by: trace_id` (default): the OpenTelemetry consistent-probability rule (see
//!   [`tracestate`]): kept when the trace's 56-bit randomness (the `rv` in the span's
//!   `tracestate` if present, else the rightmost 56 bits of the trace id) is at least the
//!   rejection threshold `(1 - ratio) * 2^56`. An upstream sampler at the same ratio makes
//!   the same decision; one at a lower ratio already dropped what this one would.
//! - `by: session_id` / `by: user_id`: the same comparison on 56 bits of SHA-256 of the
//!   request's session (`session.id`, else the gateway's raw `session_id`) or user
//!   (`user.id`, else `user`). The key is the request's (the spans of one trace id in the
//!   batch): read from its root spans first, then its other spans, then their resources,
//!   so a session is kept or dropped whole. A request without the key falls back to the
//!   trace id rule.
//!
//! Kept spans record the ratio in two places backends read: the `sampling.ratio` attribute
//! (double; when a span already has a smaller one, the smaller stays) and, for decisions
//! made on the trace's randomness, the W3C threshold `ot=th:...` in the span's
//! `trace_state` (combined with a threshold already there: the larger wins, as the
//! OpenTelemetry spec asks of chained samplers). Session and user decisions write no `th`:
//! it would promise a decision made on the trace's randomness. Dropped spans are counted in
//! `tracecast_processor_dropped_spans_total{component, reason="sampled_out"}`.

pub mod config;
pub mod tracestate;

use std::collections::HashMap;

use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::common::v1::KeyValue;
use tracecast_core::proto::trace::v1::Span;
use tracecast_core::{ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};

use crate::attrs;
use crate::metadata::{SESSION_ID_ATTRIBUTE, USER_ID_ATTRIBUTE};
use crate::retain::{pass_on, retain_spans};
pub use config::{SampleBy, SamplingProcessorConfig};

/// Attribute recording the ratio on kept spans.
pub const RATIO_ATTRIBUTE: &str = "sampling.ratio";
/// Reason label of spans this processor drops.
pub const DROP_REASON: &str = "sampled_out";

/// The `sampling` processor. See the module docs.
#[derive(Debug)]
pub struct SamplingProcessor {
    id: ComponentId,
    ratio: f64,
    by: SampleBy,
    threshold: u64,
}

/// How one request was decided.
#[derive(Debug, Clone, Copy)]
enum Decision {
    /// On the hashed session or user id.
    Key(bool),
    /// On each span's trace randomness (no key, or `by: trace_id`).
    Trace,
}

impl SamplingProcessor {
    /// Builds the processor from a validated config.
    pub fn new(id: ComponentId, cfg: &SamplingProcessorConfig) -> Self {
        Self {
            id,
            ratio: cfg.ratio,
            by: cfg.by,
            threshold: tracestate::threshold(cfg.ratio),
        }
    }

    /// Whether a trace with this id and `tracestate` is kept (`by: trace_id`).
    pub fn keeps_trace(&self, trace_id: &[u8], trace_state: &str) -> bool {
        randomness(trace_id, trace_state) >= self.threshold
    }

    /// Whether a session or user with this id is kept (`by: session_id` / `user_id`).
    pub fn keeps_key(&self, key: &str) -> bool {
        tracestate::hashed_randomness(key.as_bytes()) >= self.threshold
    }

    /// The attributes that hold the key, the namespaced one first.
    fn key_attributes(&self) -> Option<[&'static str; 2]> {
        match self.by {
            SampleBy::TraceId => None,
            SampleBy::SessionId => Some([SESSION_ID_ATTRIBUTE, "session_id"]),
            SampleBy::UserId => Some([USER_ID_ATTRIBUTE, "user"]),
        }
    }

    /// Per trace id in the batch, the decision on its key (none: decide per span).
    fn key_decisions(&self, req: &ExportTraceServiceRequest) -> HashMap<Vec<u8>, Decision> {
        let mut decisions = HashMap::new();
        let Some(keys) = self.key_attributes() else {
            return decisions;
        };
        let find = |list: &[KeyValue]| keys.iter().find_map(|k| key_value(list, k));
        let spans = || {
            req.resource_spans.iter().flat_map(|rs| {
                rs.scope_spans
                    .iter()
                    .flat_map(move |ss| ss.spans.iter().map(move |s| (rs, s)))
            })
        };
        // Roots, then other spans, then resources: the first key found is the request's.
        let mut keys_of: HashMap<&[u8], String> = HashMap::new();
        for pass in 0..3 {
            for (rs, span) in spans() {
                if keys_of.contains_key(span.trace_id.as_slice()) {
                    continue;
                }
                let found = match pass {
                    0 if span.parent_span_id.is_empty() => find(&span.attributes),
                    1 => find(&span.attributes),
                    2 => rs.resource.as_ref().and_then(|r| find(&r.attributes)),
                    _ => None,
                };
                if let Some(key) = found {
                    keys_of.insert(&span.trace_id, key);
                }
            }
        }
        for (_, span) in spans() {
            if !decisions.contains_key(&span.trace_id) {
                let decision = match keys_of.get(span.trace_id.as_slice()) {
                    Some(key) => Decision::Key(self.keeps_key(key)),
                    None => Decision::Trace,
                };
                decisions.insert(span.trace_id.clone(), decision);
            }
        }
        decisions
    }

    /// Whether one span is kept (read only).
    fn keeps(&self, span: &Span, decision: Decision) -> bool {
        match decision {
            Decision::Key(kept) => kept,
            Decision::Trace => randomness(&span.trace_id, &span.trace_state) >= self.threshold,
        }
    }

    /// Decides one span; records the ratio on it when kept.
    fn decide(&self, span: &mut Span, decision: Decision) -> bool {
        match decision {
            Decision::Key(false) => false,
            Decision::Key(true) => {
                record_ratio(&mut span.attributes, self.ratio);
                true
            }
            Decision::Trace => {
                let r = randomness(&span.trace_id, &span.trace_state);
                if r < self.threshold {
                    return false;
                }
                // An upstream threshold is only honoured when the span satisfies it (the
                // spec's rule for inconsistent values: erase them).
                let upstream = tracestate::recorded_threshold(&span.trace_state)
                    .filter(|t| *t <= r)
                    .unwrap_or(0);
                let effective = upstream.max(self.threshold);
                span.trace_state = tracestate::with_threshold(&span.trace_state, effective);
                let ratio = if effective == self.threshold {
                    self.ratio
                } else {
                    tracestate::ratio_of(effective)
                };
                record_ratio(&mut span.attributes, ratio);
                true
            }
        }
    }
}

/// The randomness of a span's trace: the explicit `rv` if its `tracestate` has one, else
/// the trace id's.
fn randomness(trace_id: &[u8], trace_state: &str) -> u64 {
    tracestate::explicit_randomness(trace_state)
        .unwrap_or_else(|| tracestate::trace_id_randomness(trace_id))
}

/// A non-empty scalar key value as a string (ids sent as numbers count too).
fn key_value(list: &[KeyValue], key: &str) -> Option<String> {
    attrs::get(list, key)
        .and_then(attrs::scalar_to_string)
        .filter(|s| !s.is_empty())
}

/// Sets `sampling.ratio`, keeping a smaller one already there.
fn record_ratio(list: &mut Vec<KeyValue>, ratio: f64) {
    let previous = match attrs::get(list, RATIO_ATTRIBUTE).and_then(|v| v.value.as_ref()) {
        Some(Value::DoubleValue(d)) if d.is_finite() && *d > 0.0 => Some(*d),
        _ => None,
    };
    let value = previous.map_or(ratio, |p| p.min(ratio));
    attrs::set(
        list,
        RATIO_ATTRIBUTE,
        tracecast_core::proto::common::v1::AnyValue {
            value: Some(Value::DoubleValue(value)),
        },
    );
}

impl Processor for SamplingProcessor {
    fn process(&mut self, mut batch: TraceBatch, out: &mut Vec<TraceBatch>) {
        let spans_in = batch.span_count();
        let decisions = self.key_decisions(batch.request());
        let decision_of = |span: &Span| {
            decisions
                .get(&span.trace_id)
                .copied()
                .unwrap_or(Decision::Trace)
        };
        let any_kept = batch
            .request()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .any(|span| self.keeps(span, decision_of(span)));
        let dropped = if any_kept {
            retain_spans(batch.request_mut(), |span| {
                let decision = decision_of(span);
                self.decide(span, decision)
            })
        } else {
            // Nothing kept: no copy of a request another pipeline shares.
            spans_in
        };
        pass_on(&self.id, batch, spans_in, dropped, DROP_REASON, out);
    }
}
