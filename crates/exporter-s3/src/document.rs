//! The trace file: one JSON object per trace in the shape of the gateway's own S3 files
//! (schema: `docs/trace-file.schema.json`, fields: `docs/trace-file.md`), so readers written
//! for those read tracecast's unchanged: `input: {messages}` and `output: {completion}` in
//! the chat format ([`tracecast_core::genai`]), a `usage` summary, and the generations
//! first among the observations (`observation.rs`).
//!
//! Decisions: span events become `EVENT` observations whose parent is their span (message
//! events too, besides being read into their span's input/output); fields without a value are absent
//! rather than `null` (so Privacy Mode's missing content means absent `input`/`output`);
//! maps are sorted and observations ordered generations first, then by start time and id,
//! so the same trace always serialises to the same bytes (a replay after a crash is
//! recognised as already written).
//!
//! Size: the file is linear in the trace's size. Values that apply to many observations
//! are written once and repeated only while small: each distinct resource once in the
//! top-level `resources` list (observations point at it with `resource`, and repeat its
//! attributes as `resourceAttributes` only when they serialise to at most
//! [`REPEAT_BYTES`]); trace metadata once at the trace level (observations repeat its
//! smallest entries, up to [`REPEAT_BYTES`]); a scope larger than that only on the first
//! observation of it; an observation's `traceId` is the trace `id` shortened like a file
//! name when the id is longer than [`MAX_OBSERVATION_TRACE_ID_BYTES`].

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tracecast_core::proto::trace::v1::Span;

use crate::assembly::{AssembledTrace, SpanRecord};
use crate::key::shorten;
use crate::mapping::{map_span, Mapped};
use crate::observation::{from_nanos, hex_or_zero, push_span, rfc3339};
pub use crate::observation::{
    CompletionTokensDetails, Link, Observation, PromptTokensDetails, Scope,
};
use crate::values::{as_string, attributes_map, find, to_json};

/// Name used for `{apiKeyName}` / `apiKeyName` when nothing names the ingest key.
pub const DEFAULT_API_KEY_NAME: &str = "default";

/// Serialised bytes of values repeated in every observation at most: resource attributes,
/// trace metadata entries, a scope. Larger ones are written once (see the module docs).
pub const REPEAT_BYTES: usize = 1024;

/// Longest trace `id` repeated whole as each observation's `traceId`.
pub const MAX_OBSERVATION_TRACE_ID_BYTES: usize = 256;

/// One distinct resource of the trace (top-level `resources`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResourceEntry {
    pub attributes: Map<String, Value>,
}

/// One trace file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceDocument {
    pub id: String,
    pub otel_trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub api_key_name: String,
    pub metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Sums over the trace's generations, so per-trace queries need no unnesting.
    pub usage: Usage,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late_fragment: bool,
    /// Each distinct resource once; observations refer to it by index (`resource`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceEntry>,
    pub observations: Vec<Observation>,
    /// Trace start, for the object key (not serialised).
    #[serde(skip)]
    pub start: OffsetDateTime,
}

/// Picks the trace's root: a span without parent, else the earliest span whose parent is
/// not in this trace, else the earliest span.
fn root_index(spans: &[SpanRecord]) -> Option<usize> {
    let ids: HashSet<&[u8]> = spans.iter().map(|s| s.span.span_id.as_slice()).collect();
    let by_start = |pred: &dyn Fn(&Span) -> bool| {
        spans
            .iter()
            .enumerate()
            .filter(|(_, s)| pred(&s.span))
            .min_by_key(|(_, s)| s.span.start_time_unix_nano)
            .map(|(i, _)| i)
    };
    by_start(&|s| s.parent_span_id.is_empty())
        .or_else(|| by_start(&|s| !ids.contains(s.parent_span_id.as_slice())))
        .or_else(|| by_start(&|_| true))
}

/// The trace's `usage`: token counts and cost summed over its generations (0 when none
/// says; counts saturate rather than wrap; non-finite costs are skipped).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub total_cost: f64,
}

impl Usage {
    fn of(observations: &[Observation]) -> Self {
        let mut u = Usage::default();
        for o in observations.iter().filter(|o| o.is_generation()) {
            u.prompt_tokens = u.prompt_tokens.saturating_add(o.prompt_tokens.unwrap_or(0));
            u.completion_tokens = u
                .completion_tokens
                .saturating_add(o.completion_tokens.unwrap_or(0));
            u.total_tokens = u.total_tokens.saturating_add(o.total_tokens.unwrap_or(0));
            if let Some(c) = o.total_cost.filter(|c| c.is_finite()) {
                u.total_cost += c;
            }
        }
        if !u.total_cost.is_finite() {
            u.total_cost = 0.0;
        }
        u
    }
}

/// Builds the document of an assembled trace. `api_key_name_attribute` names the attribute
/// read when the batch context carries no ingest key name.
pub fn build(trace: &AssembledTrace, api_key_name_attribute: Option<&str>) -> TraceDocument {
    let otel_trace_id = hex_or_zero(&trace.trace_id, 32);
    let root = root_index(&trace.spans);
    // Root first, so its values win when spans disagree.
    let mut order: Vec<usize> = (0..trace.spans.len()).collect();
    if let Some(r) = root {
        order.retain(|i| *i != r);
        order.insert(0, r);
    }
    let mapped: Vec<Mapped> = trace
        .spans
        .iter()
        .map(|s| map_span(&s.span.attributes, &s.span.events))
        .collect();
    let first = |f: &dyn Fn(&Mapped) -> Option<String>| order.iter().find_map(|i| f(&mapped[*i]));

    let id = first(&|m| m.custom_trace_id.clone()).unwrap_or_else(|| otel_trace_id.clone());
    let mut metadata = Map::new();
    for i in &order {
        for (k, v) in &mapped[*i].metadata {
            metadata.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    metadata.sort_keys();

    let api_key_name = trace
        .api_key_name
        .as_deref()
        .map(str::to_string)
        .or_else(|| {
            let attr = api_key_name_attribute?;
            // Each resource is looked at once, not once per span.
            let mut seen_resources = HashSet::new();
            order.iter().find_map(|i| {
                let rec = &trace.spans[*i];
                let resource = &rec.origin.resource_attributes;
                find(&rec.span.attributes, attr)
                    .or_else(|| {
                        seen_resources
                            .insert(resource.as_ptr() as usize)
                            .then(|| find(resource, attr))
                            .flatten()
                    })
                    .and_then(|v| as_string(&to_json(Some(v))))
            })
        })
        .unwrap_or_else(|| DEFAULT_API_KEY_NAME.to_string());

    let min_start = trace
        .spans
        .iter()
        .map(|s| s.span.start_time_unix_nano)
        .filter(|n| *n > 0)
        .min();
    let start = min_start
        .and_then(from_nanos)
        .unwrap_or_else(|| OffsetDateTime::from(trace.first_received));

    let observation_trace_id = shorten(&id, &id, MAX_OBSERVATION_TRACE_ID_BYTES);
    let shared = Shared {
        trace_id: observation_trace_id,
        metadata: repeated_metadata(&metadata),
        trace_metadata: &metadata,
    };
    let mut resources = Resources::default();
    let mut large_scopes_seen = HashSet::new();
    let mut observations = Vec::new();
    for (rec, m) in trace.spans.iter().zip(&mapped) {
        let resource = resources.index_of(rec);
        let scope = rec.origin.scope.as_ref().and_then(|s| {
            let small = s.name.len() + s.version.len() <= REPEAT_BYTES;
            let show =
                small || large_scopes_seen.insert(std::sync::Arc::as_ptr(&rec.origin) as usize);
            show.then(|| Scope {
                name: s.name.clone(),
                version: s.version.clone(),
            })
        });
        push_span(rec, m, &shared, resource, scope, &mut observations);
    }
    // Generations first (readers take `observations[0]` as the request's generation), each
    // group by start time, then id.
    observations.sort_by(|a, b| {
        (!a.is_generation(), a.start_nanos, &a.id).cmp(&(!b.is_generation(), b.start_nanos, &b.id))
    });

    // The request's conversation: the gateway's `trace.input` on the root, else the earliest
    // generation's input, else the root's own; the answer: `trace.output`, else the latest
    // generation's output, else the root's own.
    let root_mapped = root.map(|r| &mapped[r]);
    let generations = || observations.iter().filter(|o| o.is_generation());
    let input = root_mapped
        .and_then(|m| m.trace_input.clone())
        .or_else(|| generations().find_map(|o| o.input.clone()))
        .or_else(|| root_mapped.and_then(|m| m.input.clone()));
    let output = root_mapped
        .and_then(|m| m.trace_output.clone())
        .or_else(|| {
            let mut with_output: Vec<&Observation> =
                generations().filter(|o| o.output.is_some()).collect();
            with_output.pop().and_then(|o| o.output.clone())
        })
        .or_else(|| root_mapped.and_then(|m| m.output.clone()));
    let usage = Usage::of(&observations);

    TraceDocument {
        otel_trace_id,
        name: root.map(|r| trace.spans[r].span.name.clone()),
        timestamp: rfc3339(start),
        user_id: first(&|m| m.user_id.clone()),
        session_id: first(&|m| m.session_id.clone()),
        api_key_name,
        metadata,
        input,
        output,
        usage,
        late_fragment: trace.late_fragment,
        resources: resources.list,
        observations,
        start,
        id,
    }
}

/// What every observation of a trace repeats.
pub(crate) struct Shared<'a> {
    /// The trace `id`, shortened when long.
    pub(crate) trace_id: String,
    /// The trace metadata entries small enough to repeat.
    pub(crate) metadata: Map<String, Value>,
    /// The whole trace-level metadata.
    pub(crate) trace_metadata: &'a Map<String, Value>,
}

/// The trace metadata entries repeated in observations: smallest first (ties by key), up to
/// [`REPEAT_BYTES`] serialised bytes in total. The rest stays at the trace level only.
fn repeated_metadata(metadata: &Map<String, Value>) -> Map<String, Value> {
    let mut by_size: Vec<(usize, &String, &Value)> = metadata
        .iter()
        .map(|(k, v)| {
            (
                k.len() + serde_json::to_vec(v).map_or(usize::MAX, |b| b.len()),
                k,
                v,
            )
        })
        .collect();
    by_size.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    let mut out = Map::new();
    let mut spent = 0usize;
    for (size, k, v) in by_size {
        if spent.saturating_add(size) > REPEAT_BYTES {
            break;
        }
        spent += size;
        out.insert(k.clone(), v.clone());
    }
    out.sort_keys();
    out
}

/// A span's resource: its index in `resources`, and its attributes when small enough to
/// repeat in the observation.
pub(crate) type ResourceRef = (usize, Option<Map<String, Value>>);

/// The trace's distinct resources, found once per shared resource allocation and deduplicated
/// by content (the same service sends the same resource in every request).
#[derive(Default)]
struct Resources {
    list: Vec<ResourceEntry>,
    by_content: HashMap<String, usize>,
    /// Resource allocation -> (index, attributes to repeat when small).
    by_ptr: HashMap<usize, Option<ResourceRef>>,
}

impl Resources {
    fn index_of(&mut self, rec: &SpanRecord) -> Option<ResourceRef> {
        let attrs = &rec.origin.resource_attributes;
        let ptr = attrs.as_ptr() as usize;
        if let Some(known) = self.by_ptr.get(&ptr) {
            return known.clone();
        }
        let found = (!attrs.is_empty()).then(|| {
            let map = attributes_map(attrs);
            let text = serde_json::to_string(&map).unwrap_or_default();
            let small = text.len() <= REPEAT_BYTES;
            let next = self.list.len();
            let index = *self.by_content.entry(text).or_insert(next);
            if index == next {
                self.list.push(ResourceEntry {
                    attributes: map.clone(),
                });
            }
            (index, small.then_some(map))
        });
        self.by_ptr.insert(ptr, found.clone());
        found
    }
}

/// An observation's `metadata`: the repeated trace entries, then its own entries (which
/// win), except own entries equal to a trace-level entry too large to repeat: those are
/// the trace's value, written once at the trace level.
pub(crate) fn merged_metadata(shared: &Shared<'_>, own: &Map<String, Value>) -> Map<String, Value> {
    let mut out = shared.metadata.clone();
    for (k, v) in own {
        let trace_level_only =
            !shared.metadata.contains_key(k) && shared.trace_metadata.get(k) == Some(v);
        if !trace_level_only {
            out.insert(k.clone(), v.clone());
        }
    }
    out.sort_keys();
    out
}
