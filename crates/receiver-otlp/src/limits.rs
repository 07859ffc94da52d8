//! Bounds on what one request may decode to, all checked before the answer: span count and
//! decoded size (from the protobuf pre-scan, `prescan.rs`, or while decoding JSON), and,
//! on the decoded request, custom trace id length, trace metadata size, and resource
//! attributes times the ScopeSpans that repeat them. A request over any of them gets 413
//! with a message naming the limit's config key, never a 2xx followed by a failure later.
//!
//! Why these and not attribute sizes in general: an LLM prompt in one attribute can be
//! megabytes and is stored once; the values bounded here are the ones later stages repeat
//! (the `metadata` processor applies a request's `trace` metadata to every span of it; the
//! trace file repeats resource attributes per scope) or use in names (custom trace ids).

use prost::Message;
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::common::v1::KeyValue;
use tracecast_core::ExportTraceServiceRequest;

use crate::config::OtlpReceiverConfig;
use crate::error::{RequestError, RequestLimit};
use crate::prescan::Shape;

/// The attribute holding a request's `trace` object (the `metadata` processor's default
/// `trace_attribute`), and the prefix of its flattened form (`trace.trace_id`, ...).
const TRACE_ATTRIBUTE: &str = "trace";
const TRACE_PREFIX: &str = "trace.";
/// Flattened `trace.*` keys that are content, not metadata, and output already namespaced
/// by the processor: neither is applied to other spans.
const NOT_METADATA: [&str; 2] = ["trace.input", "trace.output"];
const NAMESPACED_PREFIX: &str = "trace.metadata.";
/// The `trace` key holding a custom trace id, and the span attribute the `metadata`
/// processor keeps a custom id in.
const TRACE_ID_KEY: &str = "trace_id";
const CUSTOM_TRACE_ID_ATTRIBUTE: &str = "tracecast.custom_trace_id";

/// One receiver's request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The receiver's id, for the config path in messages (`receivers.<id>.<key>`).
    receiver: String,
    pub max_spans: u64,
    pub max_decoded_size: u64,
    max_custom_trace_id_length: u64,
    max_trace_metadata_size: u64,
}

impl Limits {
    pub fn new(receiver: &str, config: &OtlpReceiverConfig) -> Self {
        Self {
            receiver: receiver.to_string(),
            max_spans: config.max_spans_per_request,
            max_decoded_size: config.decoded_size_limit(),
            max_custom_trace_id_length: config.max_custom_trace_id_length,
            max_trace_metadata_size: config.max_trace_metadata_size.get(),
        }
    }

    pub fn over(&self, limit: RequestLimit, what: String) -> RequestError {
        let max = match limit {
            RequestLimit::Spans => self.max_spans,
            RequestLimit::DecodedSize => self.max_decoded_size,
            RequestLimit::CustomTraceIdLength => self.max_custom_trace_id_length,
            RequestLimit::TraceMetadataSize => self.max_trace_metadata_size,
        };
        RequestError::OverLimit {
            receiver: self.receiver.clone(),
            limit,
            max,
            what,
        }
    }

    /// Checks the pre-scan's counts of a protobuf request.
    pub fn check_shape(&self, shape: Shape) -> Result<(), RequestError> {
        if shape.spans > self.max_spans {
            return Err(self.over(
                RequestLimit::Spans,
                format!("request has {} spans", shape.spans),
            ));
        }
        if shape.decoded_size > self.max_decoded_size {
            return Err(self.over(
                RequestLimit::DecodedSize,
                format!(
                    "request would take about {} bytes once decoded",
                    shape.decoded_size
                ),
            ));
        }
        Ok(())
    }

    /// The checks that need the decoded request (bounded in size by then). Linear in its
    /// size; allocates only to parse a JSON-string `trace` value whose length alone does
    /// not settle its `trace_id`.
    pub fn check_decoded(&self, request: &ExportTraceServiceRequest) -> Result<(), RequestError> {
        for (ri, rs) in request.resource_spans.iter().enumerate() {
            if let Some(resource) = &rs.resource {
                let place = || format!("resourceSpans[{ri}].resource");
                self.check_carrier(&resource.attributes, place)?;
                let size = resource.encoded_len() as u64;
                let scopes = rs.scope_spans.len() as u64;
                if scopes > 1 && size.saturating_mul(scopes) > self.max_decoded_size {
                    return Err(self.over(
                        RequestLimit::DecodedSize,
                        format!(
                            "resourceSpans[{ri}] has {size} bytes of resource attributes repeated over {scopes} ScopeSpans ({} bytes in trace files)",
                            size.saturating_mul(scopes)
                        ),
                    ));
                }
            }
            for (si, ss) in rs.scope_spans.iter().enumerate() {
                for (pi, span) in ss.spans.iter().enumerate() {
                    let place = || format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]");
                    self.check_carrier(&span.attributes, place)?;
                }
            }
        }
        Ok(())
    }

    /// Trace metadata size and custom trace id length on one span's or resource's
    /// attributes.
    fn check_carrier(
        &self,
        attributes: &[KeyValue],
        place: impl Fn() -> String,
    ) -> Result<(), RequestError> {
        let mut metadata = 0u64;
        let mut flattened = 0u64;
        for kv in attributes {
            if is_trace_metadata(&kv.key) {
                metadata = metadata.saturating_add(kv.encoded_len() as u64);
                flattened = flattened.saturating_add(flattened_len(kv));
            }
        }
        if metadata > self.max_trace_metadata_size {
            return Err(self.over(
                RequestLimit::TraceMetadataSize,
                format!(
                    "{} carries {metadata} bytes of trace metadata (attribute {TRACE_ATTRIBUTE:?} and {TRACE_PREFIX}* attributes)",
                    place()
                ),
            ));
        }
        if flattened > self.max_trace_metadata_size {
            return Err(self.over(
                RequestLimit::TraceMetadataSize,
                format!(
                    "{}'s trace metadata flattens to {flattened} bytes of trace.metadata.* attributes (each nested value repeats its whole key path)",
                    place()
                ),
            ));
        }
        for kv in attributes {
            let length = match kv.key.as_str() {
                TRACE_ATTRIBUTE => self.trace_id_in_trace_value(kv),
                "trace.trace_id" | CUSTOM_TRACE_ID_ATTRIBUTE => scalar_len(kv),
                _ => 0,
            };
            if length > self.max_custom_trace_id_length {
                return Err(self.over(
                    RequestLimit::CustomTraceIdLength,
                    format!(
                        "{} has a {length}-byte custom trace id (attribute {:?})",
                        place(),
                        kv.key
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Length of the `trace_id` inside a `trace` value (a map, or a JSON-object string).
    fn trace_id_in_trace_value(&self, kv: &KeyValue) -> u64 {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::KvlistValue(list)) => list
                .values
                .iter()
                .find(|entry| entry.key == TRACE_ID_KEY)
                .map_or(0, scalar_len),
            // A string no longer than the limit cannot hold a longer id: parse only above.
            Some(Value::StringValue(s)) if s.len() as u64 > self.max_custom_trace_id_length => {
                #[derive(serde::Deserialize)]
                struct TraceObject {
                    trace_id: Option<serde_json::Value>,
                }
                match serde_json::from_str::<TraceObject>(s) {
                    Ok(TraceObject {
                        trace_id: Some(serde_json::Value::String(id)),
                    }) => id.len() as u64,
                    Ok(TraceObject {
                        trace_id: Some(other),
                    }) => other.to_string().len() as u64,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }
}

/// Nesting the `metadata` processor flattens (its `MAX_FLATTEN_DEPTH`); deeper maps are one
/// leaf.
const FLATTEN_DEPTH: usize = 16;

/// Bytes the `metadata` processor writes for `kv` once flattened into
/// `trace.metadata.<dotted path>` attributes: every leaf repeats its whole key path, so a
/// long key over many leaves grows as their product (22.5 KB of JSON became 4.5 MB per span;
/// found by fuzzing). The limit counts this, not only the encoded size. A `trace` value
/// given as a JSON string is parsed as the processor parses it.
fn flattened_len(kv: &KeyValue) -> u64 {
    let base = (NAMESPACED_PREFIX.len() + kv.key.len()) as u64;
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::KvlistValue(list)) => list
            .values
            .iter()
            .filter_map(|item| Some((item, item.value.as_ref()?)))
            .map(|(item, child)| walk(base + 1 + item.key.len() as u64, child, 1))
            .fold(0, u64::saturating_add),
        Some(Value::StringValue(s)) if s.trim_start().starts_with('{') => {
            match serde_json::from_str::<serde_json::Value>(s) {
                Ok(json) => walk_json(base, &json, 0),
                Err(_) => base + s.len() as u64,
            }
        }
        _ => base + kv.value.as_ref().map_or(0, |v| v.encoded_len() as u64),
    }
}

fn walk(prefix: u64, v: &tracecast_core::proto::common::v1::AnyValue, depth: usize) -> u64 {
    match &v.value {
        Some(Value::KvlistValue(list)) if depth < FLATTEN_DEPTH => list
            .values
            .iter()
            .filter_map(|item| Some((item, item.value.as_ref()?)))
            .map(|(item, child)| walk(prefix + 1 + item.key.len() as u64, child, depth + 1))
            .fold(0, u64::saturating_add),
        _ => prefix.saturating_add(v.encoded_len() as u64),
    }
}

fn walk_json(prefix: u64, v: &serde_json::Value, depth: usize) -> u64 {
    match v {
        serde_json::Value::Object(map) if depth < FLATTEN_DEPTH => map
            .iter()
            .map(|(k, child)| walk_json(prefix + 1 + k.len() as u64, child, depth + 1))
            .fold(0, u64::saturating_add),
        serde_json::Value::String(s) => prefix.saturating_add(s.len() as u64),
        other => prefix.saturating_add(other.to_string().len() as u64),
    }
}

fn is_trace_metadata(key: &str) -> bool {
    key == TRACE_ATTRIBUTE
        || (key.starts_with(TRACE_PREFIX)
            && !key.starts_with(NAMESPACED_PREFIX)
            && !NOT_METADATA.contains(&key))
}

/// Length of a scalar attribute value as the `metadata` processor reads it (a string,
/// or a number/bool printed); containers and bytes are not ids.
fn scalar_len(kv: &KeyValue) -> u64 {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.len() as u64,
        Some(Value::IntValue(i)) => i.to_string().len() as u64,
        Some(Value::DoubleValue(d)) => d.to_string().len() as u64,
        Some(Value::BoolValue(b)) => b.to_string().len() as u64,
        _ => 0,
    }
}
