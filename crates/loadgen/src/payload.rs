//! Gateway-like OTLP requests: traces made of a root `POST /api/v1/chat/completions` span
//! (carrying the gateway's `user`, `session_id` and `trace` fields) and LLM generation
//! children with `gen_ai.*` attributes and prompt/completion content of a chosen size.
//!
//! The content is pseudo-English drawn from a fixed word list with a seeded generator, so
//! it compresses like real chat text (a run of one repeated byte would make gzip look
//! free) and every run with the same [`PayloadSpec`] sends the same bytes.

use std::io::Write;

use tracecast_core::proto::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use tracecast_core::ExportTraceServiceRequest;

/// The seeded generator [`build_request`] takes (re-exported so callers need no `fastrand`).
pub use fastrand::Rng;

/// The gateway's `trace` request field, as the JSON-object string it puts on root spans.
const TRACE_FIELD: &str = r#"{"trace_id":"app_trace_001","trace_name":"Chat Handler","generation_name":"Generate Response","environment":"production","deployment":"us-east-1"}"#;

/// Words the content is made of (common English plus some code-ish tokens).
const WORDS: &[&str] = &[
    "the",
    "model",
    "answer",
    "request",
    "user",
    "please",
    "explain",
    "how",
    "to",
    "configure",
    "a",
    "service",
    "with",
    "retries",
    "and",
    "timeouts",
    "in",
    "production",
    "here",
    "is",
    "an",
    "example",
    "of",
    "JSON",
    "output",
    "that",
    "you",
    "can",
    "use",
    "for",
    "your",
    "pipeline",
    "first",
    "then",
    "check",
    "whether",
    "latency",
    "budget",
    "allows",
    "it",
    "summary:",
    "tokens",
    "context",
    "window",
    "function",
    "returns",
    "value",
    "error",
    "handling",
    "should",
    "be",
    "explicit",
    "because",
    "silent",
    "failures",
    "hide",
    "bugs",
    "let",
    "me",
    "know",
    "if",
    "need",
    "more",
    "detail.",
    "{\"id\":",
    "42}",
    "fn",
    "main()",
    "SELECT",
    "FROM",
    "WHERE",
    "customer",
    "order",
    "total",
    "cost",
    "price",
    "2024-06-01",
];

/// The shape of generated requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSpec {
    /// Spans in one export request (at least 1).
    pub spans_per_request: usize,
    /// Spans in one trace: a root plus `spans_per_trace - 1` generation spans (at least 1;
    /// with 1, the root carries the generation attributes itself).
    pub spans_per_trace: usize,
    /// Extra `gen_ai.extra.N` string attributes on each generation span, beyond the
    /// standard set (12 attributes).
    pub extra_attributes: usize,
    /// Bytes of message text in each of `gen_ai.prompt` and `gen_ai.completion`.
    pub content_bytes: usize,
    /// Seed of the content and id generator.
    pub seed: u64,
}

impl Default for PayloadSpec {
    /// 10 spans per request in traces of 2 (root + generation), 2 KiB of prompt and of
    /// completion text: a busy gateway's typical export.
    fn default() -> Self {
        Self {
            spans_per_request: 10,
            spans_per_trace: 2,
            extra_attributes: 0,
            content_bytes: 2048,
            seed: 1,
        }
    }
}

/// One export request of `spec`'s shape; ids and content come from `rng`.
pub fn build_request(spec: &PayloadSpec, rng: &mut fastrand::Rng) -> ExportTraceServiceRequest {
    let per_trace = spec.spans_per_trace.max(1);
    let total = spec.spans_per_request.max(1);
    let end = now_unix_nanos();
    let mut spans = Vec::with_capacity(total);
    while spans.len() < total {
        let trace_id = random_id(rng, 16);
        let root_id = random_id(rng, 8);
        let in_trace = per_trace.min(total - spans.len());
        let mut root = Span {
            trace_id: trace_id.clone(),
            span_id: root_id.clone(),
            name: "POST /api/v1/chat/completions".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: end.saturating_sub(2_000_000_000),
            end_time_unix_nano: end,
            attributes: vec![
                attr_str("http.request.method", "POST"),
                attr_int("http.response.status_code", 200),
                attr_str("user", &format!("user_{}", rng.u32(..100_000))),
                attr_str("session_id", &format!("session_{}", rng.u32(..10_000))),
                attr_str("trace", TRACE_FIELD),
            ],
            status: Some(ok_status()),
            ..Default::default()
        };
        if in_trace == 1 {
            root.attributes
                .extend(generation_attributes(spec, rng, spans.len()));
        }
        spans.push(root);
        for _ in 1..in_trace {
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: random_id(rng, 8),
                parent_span_id: root_id.clone(),
                name: "chat openai/gpt-4o".into(),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: end.saturating_sub(1_900_000_000),
                end_time_unix_nano: end.saturating_sub(100_000_000),
                attributes: generation_attributes(spec, rng, spans.len()),
                status: Some(ok_status()),
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attr_str("service.name", "llm-gateway"),
                    attr_str("service.version", "1.8.2"),
                    attr_str("deployment.environment.name", "production"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "llm-gateway.tracing".into(),
                    version: "1.8.2".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn generation_attributes(spec: &PayloadSpec, rng: &mut fastrand::Rng, n: usize) -> Vec<KeyValue> {
    let input_tokens = 50 + rng.i64(0..2000);
    let output_tokens = 20 + rng.i64(0..800);
    let mut attrs = vec![
        attr_str("gen_ai.operation.name", "chat"),
        attr_str("gen_ai.system", "openai"),
        attr_str("gen_ai.request.model", "openai/gpt-4o"),
        attr_str("gen_ai.response.model", "gpt-4o-2024-08-06"),
        attr_f64("gen_ai.request.temperature", 0.7),
        attr_int("gen_ai.request.max_tokens", 1024),
        attr_int("gen_ai.usage.input_tokens", input_tokens),
        attr_int("gen_ai.usage.output_tokens", output_tokens),
        attr_f64(
            "gen_ai.usage.cost",
            (input_tokens + 3 * output_tokens) as f64 * 2.5e-6,
        ),
        attr_str("gen_ai.response.finish_reasons", "stop"),
        attr_str("gen_ai.prompt", &messages("user", spec.content_bytes, rng)),
        attr_str(
            "gen_ai.completion",
            &messages("assistant", spec.content_bytes, rng),
        ),
    ];
    for i in 0..spec.extra_attributes {
        attrs.push(attr_str(
            &format!("gen_ai.extra.{i}"),
            &format!("value-{n}-{i}"),
        ));
    }
    attrs
}

/// A one-message chat array as the gateway records it, with `bytes` of text.
fn messages(role: &str, bytes: usize, rng: &mut fastrand::Rng) -> String {
    let mut out = format!(r#"[{{"role":"{role}","content":""#);
    out.push_str(&text(bytes, rng).replace('"', "'"));
    out.push_str("\"}]");
    out
}

/// `bytes` of ASCII words separated by spaces.
pub fn text(bytes: usize, rng: &mut fastrand::Rng) -> String {
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[rng.usize(..WORDS.len())]);
    }
    out.truncate(bytes);
    out
}

fn ok_status() -> Status {
    Status {
        code: status::StatusCode::Ok as i32,
        message: String::new(),
    }
}

/// A non-zero random id of `len` bytes (all-zero ids are invalid in OTLP).
fn random_id(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut id: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
    id[0] |= 1;
    id
}

fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn attr_str(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

fn attr_int(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

fn attr_f64(key: &str, value: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(value))
}

/// Gzip-compresses `data` at `level` (0-9).
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        flate2::Compression::new(level.min(9)),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracecast_core::batch::span_count;

    #[test]
    fn request_has_the_asked_shape() {
        let spec = PayloadSpec {
            spans_per_request: 7,
            spans_per_trace: 3,
            extra_attributes: 4,
            content_bytes: 1000,
            seed: 9,
        };
        let req = build_request(&spec, &mut fastrand::Rng::with_seed(9));
        assert_eq!(span_count(&req), 7);
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        // Traces of 3, 3 and 1 span(s): roots at 0, 3 and 6.
        let roots: Vec<usize> = (0..7)
            .filter(|i| spans[*i].parent_span_id.is_empty())
            .collect();
        assert_eq!(roots, vec![0, 3, 6]);
        assert_eq!(spans[1].trace_id, spans[0].trace_id);
        assert_eq!(spans[1].parent_span_id, spans[0].span_id);
        assert_ne!(spans[3].trace_id, spans[0].trace_id);
        assert_eq!(spans[1].attributes.len(), 12 + 4);
        let prompt = spans[1]
            .attributes
            .iter()
            .find(|kv| kv.key == "gen_ai.prompt")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        assert!(
            prompt.len() >= 1000 && prompt.len() < 1100,
            "{}",
            prompt.len()
        );
        let parsed: serde_json::Value = serde_json::from_str(&prompt).unwrap();
        assert_eq!(parsed[0]["role"], "user");
        // A single-span trace's root carries the generation attributes.
        assert!(spans[6]
            .attributes
            .iter()
            .any(|kv| kv.key == "gen_ai.prompt"));
    }

    #[test]
    fn content_compresses_like_text_not_like_a_repeated_byte() {
        let t = text(64 * 1024, &mut fastrand::Rng::with_seed(1));
        assert_eq!(t.len(), 64 * 1024);
        let packed = gzip(t.as_bytes(), 6).len();
        // English-like text from an 80-word list lands around 3-4x; a repeated byte ~1000x.
        assert!(packed > t.len() / 8 && packed < t.len() / 2, "{packed}");
    }
}
