//! Reads the compact JSON fixtures in `testdata/` (format in `testdata/README.md`) and
//! small helpers shared by the integration tests.
#![allow(dead_code)]

use serde_json::Value as J;
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::common::v1::{AnyValue, KeyValue};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::span::{Event, Link};
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecast_core::{BatchContext, ExportTraceServiceRequest, TraceBatch};
use tracecast_processors::attrs;

/// A fixture: the request and what `privacy` must remove from it.
pub struct Fixture {
    pub request: ExportTraceServiceRequest,
    pub content: Vec<String>,
    pub removed: Vec<String>,
    pub removed_events: Vec<String>,
}

pub fn load(name: &str) -> Fixture {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: J = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let strings = |key: &str| -> Vec<String> {
        json[key]
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    Fixture {
        request: ExportTraceServiceRequest {
            resource_spans: json["resource_spans"]
                .as_array()
                .unwrap()
                .iter()
                .map(resource_spans)
                .collect(),
        },
        content: strings("content"),
        removed: strings("removed"),
        removed_events: strings("removed_events"),
    }
}

fn attributes(v: &J) -> Vec<KeyValue> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| attrs::kv(k.clone(), attrs::from_json(v)))
                .collect()
        })
        .unwrap_or_default()
}

fn id(v: &J) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or("")).unwrap()
}

fn resource_spans(v: &J) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: attributes(&v["resource"]),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: None,
            spans: v["spans"].as_array().unwrap().iter().map(span).collect(),
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn span(v: &J) -> Span {
    Span {
        name: v["name"].as_str().unwrap().to_string(),
        trace_id: id(&v["trace_id"]),
        span_id: id(&v["span_id"]),
        parent_span_id: id(&v["parent_span_id"]),
        kind: 1,
        start_time_unix_nano: v["start"].as_u64().unwrap_or(0),
        end_time_unix_nano: v["end"].as_u64().unwrap_or(0),
        attributes: attributes(&v["attributes"]),
        events: v["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| Event {
                        name: e["name"].as_str().unwrap().to_string(),
                        time_unix_nano: e["time"].as_u64().unwrap_or(0),
                        attributes: attributes(&e["attributes"]),
                        dropped_attributes_count: 0,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        links: v["links"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| Link {
                        trace_id: id(&l["trace_id"]),
                        span_id: id(&l["span_id"]),
                        attributes: attributes(&l["attributes"]),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// A batch as the receiver would make it (with the received protobuf bytes).
pub fn batch(request: ExportTraceServiceRequest) -> TraceBatch {
    let bytes = TraceBatch::new(BatchContext::new("otlp"), request.clone(), None).to_protobuf();
    TraceBatch::new(BatchContext::new("otlp"), request, Some(bytes))
}

/// Every span of a request, in order.
pub fn spans(req: &ExportTraceServiceRequest) -> Vec<&Span> {
    req.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|ss| ss.spans.iter())
        .collect()
}

pub fn spans_mut(req: &mut ExportTraceServiceRequest) -> Vec<&mut Span> {
    req.resource_spans
        .iter_mut()
        .flat_map(|rs| rs.scope_spans.iter_mut())
        .flat_map(|ss| ss.spans.iter_mut())
        .collect()
}

pub fn span_named<'a>(req: &'a ExportTraceServiceRequest, name: &str) -> &'a Span {
    spans(req)
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span named {name:?}"))
}

pub fn str_attr<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attrs::get(list, key).and_then(attrs::as_str)
}

pub fn int_attr(list: &[KeyValue], key: &str) -> Option<i64> {
    match attrs::get(list, key)?.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

pub fn string(s: &str) -> AnyValue {
    attrs::string(s)
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
