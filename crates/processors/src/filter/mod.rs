//! The `filter` processor: keeps or drops whole requests by rule groups, as the gateway's
//! destination filter rules do.
//!
//! A request is the spans of one trace id in one received batch (the `metadata`
//! processor's definition); put `filter` before `batch` in a pipeline, so that batches are
//! still the received ones. A request is kept when it matches any `include` group (or there
//! is none) and no `exclude` group; a group matches when all its rules hold (`logic: and`)
//! or any does (`logic: or`). Fields and how they are read: [`request`]; operators and
//! several values per field: [`rules`]. Key scoping (a destination for one ingest key's
//! traffic) is a rule on `api_key_name`.
//!
//! Dropped spans are counted in `tracecast_processor_dropped_spans_total{component,
//! reason="filtered"}`. A batch whose requests are all kept passes untouched (no copy,
//! received bytes kept).

pub mod config;
pub mod request;
pub mod rules;

use std::collections::{HashMap, HashSet};

use tracecast_core::{ComponentId, Processor, TraceBatch};

use crate::metadata::MetadataProcessorConfig;
use crate::retain::{pass_on, retain_spans};
pub use config::{FilterProcessorConfig, RuleConfig, RuleGroupConfig};
use request::{Request, SpanRef};
pub use rules::FilterRules;
use rules::Group;

/// Reason label of spans this processor drops.
pub const DROP_REASON: &str = "filtered";

/// The `filter` processor. See the module docs.
#[derive(Debug)]
pub struct FilterProcessor {
    id: ComponentId,
    rules: FilterRules,
    /// Attributes that make a span a generation.
    generation_attributes: Vec<String>,
}

impl FilterProcessor {
    /// Builds the processor from its validated config (rules type-checked, regular
    /// expressions compiled).
    pub fn new(id: ComponentId, rules: FilterRules) -> Self {
        Self {
            id,
            rules,
            generation_attributes: MetadataProcessorConfig::default().generation_attributes,
        }
    }

    /// Whether a request is kept.
    pub fn keeps(&self, request: &Request<'_>) -> bool {
        let matches = |g: &Group| {
            let holds = |r: &rules::Rule| r.op.holds(&request.values(&r.field, &self.rules));
            if g.any {
                g.rules.iter().any(holds)
            } else {
                g.rules.iter().all(holds)
            }
        };
        (self.rules.include.is_empty() || self.rules.include.iter().any(matches))
            && !self.rules.exclude.iter().any(matches)
    }

    /// The trace ids of the batch's requests that are not kept, and whether that is all
    /// of them.
    fn dropped_requests(&self, batch: &TraceBatch) -> (HashSet<Vec<u8>>, bool) {
        let mut requests: Vec<Vec<SpanRef<'_>>> = Vec::new();
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        for rs in &batch.request().resource_spans {
            let resource = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                let i = *index.entry(&span.trace_id).or_insert_with(|| {
                    requests.push(Vec::new());
                    requests.len() - 1
                });
                requests[i].push(SpanRef { span, resource });
            }
        }
        let key = batch.context().api_key_name.as_deref();
        let total = requests.len();
        let mut dropped = HashSet::new();
        for spans in requests {
            let trace_id = spans[0].span.trace_id.clone();
            let request = Request::new(spans, key, &self.generation_attributes);
            if !self.keeps(&request) {
                dropped.insert(trace_id);
            }
        }
        let all = dropped.len() == total;
        (dropped, all)
    }
}

impl Processor for FilterProcessor {
    fn process(&mut self, mut batch: TraceBatch, out: &mut Vec<TraceBatch>) {
        let spans_in = batch.span_count();
        let (dropped_ids, all) = self.dropped_requests(&batch);
        let dropped = if dropped_ids.is_empty() {
            0
        } else if all {
            // Nothing left to pass on: no copy of a request another pipeline shares.
            spans_in
        } else {
            retain_spans(batch.request_mut(), |span| {
                !dropped_ids.contains(&span.trace_id)
            })
        };
        pass_on(&self.id, batch, spans_in, dropped, DROP_REASON, out);
    }
}
