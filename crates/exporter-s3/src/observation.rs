//! One observation of the trace file: a span (`GENERATION` or `SPAN`) or a span event
//! (`EVENT`), with the gateway's per-generation fields (tokens and their details, costs,
//! unit prices, finish reasons raw and normalized, time to first token).

use serde::Serialize;
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracecast_core::proto::trace::v1::{span::SpanKind, status::StatusCode};

use crate::assembly::SpanRecord;
use crate::document::{merged_metadata, ResourceRef, Shared};
use crate::mapping::{map_attributes, normalize_finish_reason, CompletionStart, Mapped};
use crate::values::{as_string, attributes_map};

/// One span or span event.
#[derive(Debug, Clone, Default, Serialize)]
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
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_cost: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_unit_price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_unit_price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub normalized_finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_name: Option<String>,
    /// When the first token came (time to first token), when the span says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_start_time: Option<String>,
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
    pub(crate) start_nanos: u64,
}

/// `promptTokensDetails`: parts of the prompt tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptTokensDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<i64>,
}

/// `completionTokensDetails`: parts of the completion tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletionTokensDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tokens: Option<i64>,
}

impl Observation {
    /// Whether this is an LLM generation.
    pub fn is_generation(&self) -> bool {
        self.kind_of == "GENERATION"
    }
}

/// The time of the first token: given, or the span's start plus the given delay.
fn completion_start_time(start_nanos: u64, given: Option<CompletionStart>) -> Option<String> {
    let at = match given? {
        CompletionStart::At(n) => n,
        CompletionStart::After(d) => i128::from(start_nanos).checked_add(d)?,
    };
    OffsetDateTime::from_unix_timestamp_nanos(at)
        .ok()
        .map(rfc3339)
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

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn from_nanos(nanos: u64) -> Option<OffsetDateTime> {
    if nanos == 0 {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).ok()
}

pub(crate) fn hex_or_zero(id: &[u8], width: usize) -> String {
    if id.is_empty() {
        "0".repeat(width)
    } else {
        hex::encode(id)
    }
}

pub(crate) fn push_span(
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
    attributes.sort_keys();
    let normalized_finish_reason = m
        .finish_reason
        .as_deref()
        .and_then(normalize_finish_reason)
        .or((m.is_generation && is_error).then_some("error"));
    let prompt_details =
        (m.cached_tokens.is_some() || m.audio_tokens.is_some()).then_some(PromptTokensDetails {
            cached_tokens: m.cached_tokens,
            audio_tokens: m.audio_tokens,
        });
    let completion_details = (m.reasoning_tokens.is_some() || m.image_tokens.is_some()).then_some(
        CompletionTokensDetails {
            reasoning_tokens: m.reasoning_tokens,
            image_tokens: m.image_tokens,
        },
    );
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
        prompt_tokens_details: prompt_details,
        completion_tokens_details: completion_details,
        input_cost: m.input_cost,
        output_cost: m.output_cost,
        total_cost: m.total_cost,
        input_unit_price: m.input_unit_price,
        output_unit_price: m.output_unit_price,
        finish_reason: m.finish_reason.clone(),
        normalized_finish_reason,
        provider_name: m.provider_name.clone(),
        completion_start_time: completion_start_time(span.start_time_unix_nano, m.completion_start),
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
            input: em.input,
            output: em.output,
            finish_reason: em.finish_reason,
            level: if exception { "ERROR" } else { "DEFAULT" },
            status_message: exception
                .then(|| em.attributes.get("exception.message").and_then(as_string))
                .flatten(),
            metadata: merged_metadata(shared, &em.metadata),
            attributes: em.attributes,
            start_nanos: event.time_unix_nano,
            ..Default::default()
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
