//! OTLP request builders for tests: spans with valid random ids, plain multi-span requests,
//! and a request shaped like what an LLM gateway sends (a root span plus a generation span
//! carrying `gen_ai.*` attributes and the request's `user`, `session_id` and `trace` fields).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use tracecast_core::proto::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use tracecast_core::ExportTraceServiceRequest;

/// The `trace` field of the gateway example in the OTLP destination document
/// (`seeds/002_*.txt`), as the JSON-object string the gateway puts on the root span.
pub const GATEWAY_TRACE_JSON: &str = r#"{"trace_id":"app_trace_001","trace_name":"Chat Handler","generation_name":"Generate Response","environment":"staging","deployment":"us-east-1"}"#;

/// Model named in [`gateway_request`]'s generation span.
pub const GATEWAY_MODEL: &str = "openai/gpt-4o";

/// A string attribute.
pub fn attr_str(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

/// An integer attribute.
pub fn attr_int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

/// A floating-point attribute.
pub fn attr_f64(key: &str, value: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(value))
}

/// A boolean attribute.
pub fn attr_bool(key: &str, value: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(value))
}

/// An attribute holding a map (`kvlistValue`), e.g. `trace` sent as an object.
pub fn attr_map(key: &str, entries: Vec<KeyValue>) -> KeyValue {
    kv(
        key,
        any_value::Value::KvlistValue(tracecast_core::proto::common::v1::KeyValueList {
            values: entries,
        }),
    )
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The value of attribute `key` on `span` as a string, if it is a string attribute.
pub fn attr_value_str<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

/// A random, valid (non-zero) 16-byte trace id.
pub fn random_trace_id() -> Vec<u8> {
    random_id(16)
}

/// A random, valid (non-zero) 8-byte span id.
pub fn random_span_id() -> Vec<u8> {
    random_id(8)
}

fn random_id(len: usize) -> Vec<u8> {
    loop {
        let id: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
        // An all-zero id is invalid in OTLP; redraw (practically never happens).
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

/// Now, in unix nanoseconds (OTLP's time unit).
pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A root span named `name` in a new trace, with random ids, lasting 100 ms and ended.
pub fn span(name: &str) -> Span {
    let end = now_unix_nanos();
    Span {
        trace_id: random_trace_id(),
        span_id: random_span_id(),
        name: name.to_string(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: end.saturating_sub(100_000_000),
        end_time_unix_nano: end,
        ..Default::default()
    }
}

/// A span named `name` in `parent`'s trace, with `parent` as its parent, inside its time range.
pub fn child_span(parent: &Span, name: &str) -> Span {
    Span {
        trace_id: parent.trace_id.clone(),
        span_id: random_span_id(),
        parent_span_id: parent.span_id.clone(),
        name: name.to_string(),
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: parent.start_time_unix_nano + 10_000_000,
        end_time_unix_nano: parent.end_time_unix_nano.saturating_sub(10_000_000),
        ..Default::default()
    }
}

/// A request holding `spans` under one resource (`service.name = llm-gateway`) and one scope.
pub fn request_from_spans(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attr_str("service.name", "llm-gateway")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tracecast-test-util".to_string(),
                    version: "1.0.0".to_string(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// A request with one trace of `n` spans: `span-0` is the root, `span-1..` its children.
/// Names are unique within the request, so tests can check each arrives exactly once.
pub fn request_with_spans(n: usize) -> ExportTraceServiceRequest {
    request_with_named_spans("span", n)
}

/// Like [`request_with_spans`], with names `{prefix}-0`, `{prefix}-1`, ... so several
/// requests in one test stay distinguishable.
pub fn request_with_named_spans(prefix: &str, n: usize) -> ExportTraceServiceRequest {
    let mut spans = Vec::with_capacity(n);
    if n > 0 {
        let root = span(&format!("{prefix}-0"));
        for i in 1..n {
            spans.push(child_span(&root, &format!("{prefix}-{i}")));
        }
        spans.insert(0, root);
    }
    request_from_spans(spans)
}

/// A request like the LLM gateway sends for one chat completion: a root span carrying the
/// request's `user`, `session_id` and `trace` (a JSON-object string, [`GATEWAY_TRACE_JSON`])
/// fields, and an LLM generation child span with `gen_ai.*` model, token usage, cost and
/// prompt/completion content.
pub fn gateway_request() -> ExportTraceServiceRequest {
    let mut root = span("POST /api/v1/chat/completions");
    root.kind = span::SpanKind::Server as i32;
    root.attributes = vec![
        attr_str("http.request.method", "POST"),
        attr_int("http.response.status_code", 200),
        attr_str("user", "user_12345"),
        attr_str("session_id", "session_abc"),
        attr_str("trace", GATEWAY_TRACE_JSON),
    ];
    root.status = Some(Status {
        code: status::StatusCode::Ok as i32,
        message: String::new(),
    });

    let mut generation = child_span(&root, &format!("chat {GATEWAY_MODEL}"));
    generation.kind = span::SpanKind::Client as i32;
    generation.attributes = vec![
        attr_str("gen_ai.operation.name", "chat"),
        attr_str("gen_ai.system", "openai"),
        attr_str("gen_ai.request.model", GATEWAY_MODEL),
        attr_str("gen_ai.response.model", "gpt-4o-2024-08-06"),
        attr_f64("gen_ai.request.temperature", 0.7),
        attr_int("gen_ai.request.max_tokens", 256),
        attr_int("gen_ai.usage.input_tokens", 12),
        attr_int("gen_ai.usage.output_tokens", 9),
        attr_f64("gen_ai.usage.cost", 0.000_12),
        attr_str("gen_ai.response.finish_reasons", "stop"),
        attr_str("gen_ai.prompt", r#"[{"role":"user","content":"Hello!"}]"#),
        attr_str(
            "gen_ai.completion",
            r#"[{"role":"assistant","content":"Hello! How can I help you today?"}]"#,
        ),
    ];
    generation.status = root.status.clone();
    request_from_spans(vec![root, generation])
}

/// Every span of a request, in order.
pub fn flatten_spans(request: &ExportTraceServiceRequest) -> Vec<Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|ss| ss.spans.iter().cloned())
        .collect()
}

/// Gzip-compresses `data` (for posting `Content-Encoding: gzip` bodies).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_with_spans_is_one_valid_trace() {
        let req = request_with_spans(3);
        let spans = flatten_spans(&req);
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].trace_id.len(), 16);
        assert_eq!(spans[0].span_id.len(), 8);
        assert!(spans[0].parent_span_id.is_empty());
        assert!(spans[1..]
            .iter()
            .all(|s| s.trace_id == spans[0].trace_id && s.parent_span_id == spans[0].span_id));
        assert_eq!(
            request_with_spans(0).resource_spans[0].scope_spans[0]
                .spans
                .len(),
            0
        );
    }

    #[test]
    fn gateway_request_carries_the_documented_fields() {
        let spans = flatten_spans(&gateway_request());
        assert_eq!(attr_value_str(&spans[0], "trace"), Some(GATEWAY_TRACE_JSON));
        assert_eq!(attr_value_str(&spans[0], "user"), Some("user_12345"));
        assert_eq!(
            attr_value_str(&spans[1], "gen_ai.request.model"),
            Some(GATEWAY_MODEL)
        );
        let trace: serde_json::Value = serde_json::from_str(GATEWAY_TRACE_JSON).unwrap();
        assert_eq!(trace["trace_name"], "Chat Handler");
    }
}
