//! The trace file: one Langfuse-like JSON object per trace (schema:
//! `docs/trace-file.schema.json`, fields: `docs/trace-file.md`).
//!
//! Decisions: span events become `EVENT` observations whose parent is their span (readers of
//! Langfuse exports expect events there); fields without a value are absent rather than
//! `null` (so Privacy Mode's missing content means absent `input`/`output`); maps are sorted
//! and observations ordered by start time then id, so the same trace always serialises to
//! the same bytes (a replay after a crash is recognised as already written).
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
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracecast_core::proto::trace::v1::{span::SpanKind, status::StatusCode, Span};

use crate::assembly::{AssembledTrace, SpanRecord};
use crate::key::shorten;
use crate::mapping::{map_attributes, Mapped};
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

/// One span or span event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub id: String,
    pub trace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_observation_id: Option<String>,
    #[serde(rename = "type")]
    pub kind_of: &'static str,
    pub name: String,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub model_parameters: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    pub level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    pub metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_kind: Option<&'static str>,
    pub attributes: Map<String, Value>,
    /// Index into the trace's `resources`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<usize>,
    /// The resource's attributes repeated, when they are small (else see `resources`).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub resource_attributes: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Sort key (not serialised).
    #[serde(skip)]
    start_nanos: u64,
}

/// Instrumentation scope of a span.
#[derive(Debug, Clone, Serialize)]
pub struct Scope {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// A span link.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Link {
    pub trace_id: String,
    pub span_id: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn from_nanos(nanos: u64) -> Option<OffsetDateTime> {
    if nanos == 0 {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).ok()
}

fn hex_or_zero(id: &[u8], width: usize) -> String {
    if id.is_empty() {
        "0".repeat(width)
    } else {
        hex::encode(id)
    }
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
        .map(|s| map_attributes(&s.span.attributes))
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
    observations.sort_by(|a, b| (a.start_nanos, &a.id).cmp(&(b.start_nanos, &b.id)));

    let root_mapped = root.map(|r| &mapped[r]);
    let first_generation = observations
        .iter()
        .find(|o| o.kind_of == "GENERATION" && (o.input.is_some() || o.output.is_some()));
    let input = root_mapped
        .and_then(|m| m.trace_input.clone().or_else(|| m.input.clone()))
        .or_else(|| first_generation.and_then(|o| o.input.clone()));
    let output = root_mapped
        .and_then(|m| m.trace_output.clone().or_else(|| m.output.clone()))
        .or_else(|| first_generation.and_then(|o| o.output.clone()));

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
        late_fragment: trace.late_fragment,
        resources: resources.list,
        observations,
        start,
        id,
    }
}

/// What every observation of a trace repeats.
struct Shared<'a> {
    /// The trace `id`, shortened when long.
    trace_id: String,
    /// The trace metadata entries small enough to repeat.
    metadata: Map<String, Value>,
    /// The whole trace-level metadata.
    trace_metadata: &'a Map<String, Value>,
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
type ResourceRef = (usize, Option<Map<String, Value>>);

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
fn merged_metadata(shared: &Shared<'_>, own: &Map<String, Value>) -> Map<String, Value> {
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

fn push_span(
    rec: &SpanRecord,
    m: &Mapped,
    shared: &Shared<'_>,
    resource: Option<ResourceRef>,
    scope: Option<Scope>,
    out: &mut Vec<Observation>,
) {
    let trace_id = shared.trace_id.as_str();
    let (resource, resource_attributes) = match resource {
        Some((i, repeated)) => (Some(i), repeated.unwrap_or_default()),
        None => (None, Map::new()),
    };
    let span = &rec.span;
    let span_id = hex_or_zero(&span.span_id, 16);
    let status = span.status.as_ref();
    let is_error = status.is_some_and(|s| s.code == StatusCode::Error as i32);
    let mut attributes = m.attributes.clone();
    // Content that only the trace level shows is kept here too, so nothing is lost.
    if let Some(v) = &m.trace_input {
        attributes.insert("trace.input".into(), v.clone());
    }
    if let Some(v) = &m.trace_output {
        attributes.insert("trace.output".into(), v.clone());
    }
    attributes.sort_keys();
    out.push(Observation {
        id: span_id.clone(),
        trace_id: trace_id.to_string(),
        parent_observation_id: (!span.parent_span_id.is_empty())
            .then(|| hex::encode(&span.parent_span_id)),
        kind_of: if m.is_generation {
            "GENERATION"
        } else {
            "SPAN"
        },
        name: span.name.clone(),
        start_time: rfc3339(
            from_nanos(span.start_time_unix_nano).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        ),
        end_time: from_nanos(span.end_time_unix_nano).map(rfc3339),
        model: m.model.clone(),
        model_parameters: m.model_parameters.clone(),
        input: m.input.clone(),
        output: m.output.clone(),
        prompt_tokens: m.prompt_tokens,
        completion_tokens: m.completion_tokens,
        total_tokens: m.total_tokens,
        input_cost: m.input_cost,
        output_cost: m.output_cost,
        total_cost: m.total_cost,
        finish_reason: m.finish_reason.clone(),
        provider_name: m.provider_name.clone(),
        level: if is_error { "ERROR" } else { "DEFAULT" },
        status_message: status.map(|s| s.message.clone()).filter(|s| !s.is_empty()),
        metadata: merged_metadata(shared, &m.metadata),
        span_kind: span_kind(span.kind),
        attributes,
        resource,
        resource_attributes,
        scope,
        links: span
            .links
            .iter()
            .map(|l| Link {
                trace_id: hex::encode(&l.trace_id),
                span_id: hex::encode(&l.span_id),
                attributes: attributes_map(&l.attributes),
            })
            .collect(),
        start_nanos: span.start_time_unix_nano,
    });
    for (i, event) in span.events.iter().enumerate() {
        let em = map_attributes(&event.attributes);
        let exception = event.name == "exception";
        let at = from_nanos(event.time_unix_nano).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        out.push(Observation {
            id: format!("{span_id}-event-{i}"),
            trace_id: trace_id.to_string(),
            parent_observation_id: Some(span_id.clone()),
            kind_of: "EVENT",
            name: event.name.clone(),
            start_time: rfc3339(at),
            end_time: None,
            model: None,
            model_parameters: Map::new(),
            input: em.input,
            output: em.output,
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            input_cost: None,
            output_cost: None,
            total_cost: None,
            finish_reason: em.finish_reason,
            provider_name: None,
            level: if exception { "ERROR" } else { "DEFAULT" },
            status_message: exception
                .then(|| em.attributes.get("exception.message").and_then(as_string))
                .flatten(),
            metadata: merged_metadata(shared, &em.metadata),
            span_kind: None,
            attributes: em.attributes,
            resource: None,
            resource_attributes: Map::new(),
            scope: None,
            links: Vec::new(),
            start_nanos: event.time_unix_nano,
        });
    }
}

fn span_kind(kind: i32) -> Option<&'static str> {
    Some(match SpanKind::try_from(kind).ok()? {
        SpanKind::Unspecified => return None,
        SpanKind::Internal => "INTERNAL",
        SpanKind::Server => "SERVER",
        SpanKind::Client => "CLIENT",
        SpanKind::Producer => "PRODUCER",
        SpanKind::Consumer => "CONSUMER",
    })
}
