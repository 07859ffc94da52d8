//! Span attributes -> observation fields: the `gen_ai.*` conventions (current and
//! deprecated names), OpenInference `llm.*` and Vercel `ai.*` usage names, the gateway's
//! cost and unit price attributes, and the metadata processor's `trace.metadata.*`,
//! `user.id`, `session.id`, `tracecast.custom_trace_id`. Content (input and output, every
//! convention) is converted to the chat format by [`tracecast_core::genai`]. The source keys
//! of each field are listed in `docs/trace-file.md`.
//!
//! Every attribute that maps to no field is kept in `attributes`, so nothing is lost; an
//! attribute that lost a priority contest (e.g. `gen_ai.prompt` when `gen_ai.input.messages`
//! is also present) is kept there too.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tracecast_core::genai;
use tracecast_core::proto::common::v1::{AnyValue, KeyValue};
use tracecast_core::proto::trace::v1::span::Event;

use crate::values::{as_f64, as_i64, as_string, content_json, to_json};

/// Attribute prefix of custom trace metadata (set by the metadata processor).
pub const METADATA_PREFIX: &str = "trace.metadata.";
/// Custom trace id that was not 32 hex chars (set by the metadata processor).
pub const CUSTOM_TRACE_ID: &str = "tracecast.custom_trace_id";

const MODEL_KEYS: &[&str] = &[
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "ai.response.model",
    "ai.model.id",
    "langfuse.observation.model.name",
];
const PROMPT_TOKENS: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "ai.usage.inputTokens",
    "ai.usage.promptTokens",
];
const COMPLETION_TOKENS: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "ai.usage.outputTokens",
    "ai.usage.completionTokens",
];
const TOTAL_TOKENS: &[&str] = &[
    "gen_ai.usage.total_tokens",
    "llm.token_count.total",
    "ai.usage.totalTokens",
];
const CACHED_TOKENS: &[&str] = &[
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.input_tokens_details.cached_tokens",
    "gen_ai.usage.prompt_tokens_details.cached_tokens",
    "gen_ai.usage.cached_tokens",
    "llm.token_count.prompt_details.cache_read",
    "ai.usage.cachedInputTokens",
];
const AUDIO_TOKENS: &[&str] = &[
    "gen_ai.usage.input_tokens_details.audio_tokens",
    "gen_ai.usage.prompt_tokens_details.audio_tokens",
    "gen_ai.usage.audio_input_tokens",
    "llm.token_count.prompt_details.audio",
];
const REASONING_TOKENS: &[&str] = &[
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.output_tokens_details.reasoning_tokens",
    "gen_ai.usage.completion_tokens_details.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
    "ai.usage.reasoningTokens",
];
const IMAGE_TOKENS: &[&str] = &[
    "gen_ai.usage.output_tokens_details.image_tokens",
    "gen_ai.usage.completion_tokens_details.image_tokens",
    "gen_ai.usage.image_output_tokens",
];
const INPUT_COST: &[&str] = &["gen_ai.usage.input_cost", "llm.cost.prompt"];
const OUTPUT_COST: &[&str] = &["gen_ai.usage.output_cost", "llm.cost.completion"];
const TOTAL_COST: &[&str] = &[
    "gen_ai.usage.total_cost",
    "gen_ai.usage.cost",
    "llm.cost.total",
];
const INPUT_UNIT_PRICE: &[&str] = &[
    "gen_ai.usage.input_unit_price",
    "gen_ai.usage.prompt_unit_price",
];
const OUTPUT_UNIT_PRICE: &[&str] = &[
    "gen_ai.usage.output_unit_price",
    "gen_ai.usage.completion_unit_price",
];
const PROVIDER: &[&str] = &[
    "gen_ai.provider.name",
    "gen_ai.system",
    "llm.provider",
    "llm.system",
    "ai.model.provider",
];
const FINISH_REASONS: &[&str] = &["gen_ai.response.finish_reasons", "ai.response.finishReason"];
/// Time of the first token as a timestamp (RFC 3339 string or unix nanoseconds).
const COMPLETION_START_AT: &[&str] = &[
    "gen_ai.response.completion_start_time",
    "langfuse.observation.completion_start_time",
];
/// Time to the first token after the span's start, in milliseconds (Vercel AI SDK).
const COMPLETION_START_MS: &[&str] = &["ai.response.msToFirstChunk"];
/// Time to the first token after the span's start, in seconds.
const COMPLETION_START_SECS: &[&str] = &[
    "gen_ai.response.time_to_first_token",
    "gen_ai.server.time_to_first_token",
];
const GENERATION_MARKERS: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "llm.model_name",
];

/// When the first token came, as the span said it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CompletionStart {
    /// Unix nanoseconds.
    At(i128),
    /// Nanoseconds after the span's start.
    After(i128),
}

/// Everything read from one attribute list.
#[derive(Debug, Default, Clone)]
pub struct Mapped {
    pub is_generation: bool,
    pub model: Option<String>,
    pub model_parameters: Map<String, Value>,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub trace_input: Option<Value>,
    pub trace_output: Option<Value>,
    /// The input was chat messages (not a value kept as it came).
    pub input_is_chat: bool,
    /// The output was a completion (not a value kept as it came).
    pub output_is_chat: bool,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub audio_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub image_tokens: Option<i64>,
    pub input_cost: Option<f64>,
    pub output_cost: Option<f64>,
    pub total_cost: Option<f64>,
    pub input_unit_price: Option<f64>,
    pub output_unit_price: Option<f64>,
    pub finish_reason: Option<String>,
    pub completion_start: Option<CompletionStart>,
    pub provider_name: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub custom_trace_id: Option<String>,
    pub metadata: Map<String, Value>,
    /// Attributes mapped to no field.
    pub attributes: Map<String, Value>,
}

/// Removes and returns the value of the first of `keys` present.
fn take_first<'a>(rest: &mut BTreeMap<&str, &'a AnyValue>, keys: &[&str]) -> Option<&'a AnyValue> {
    keys.iter().find_map(|k| rest.remove(*k))
}

/// Maps one attribute list without events (a span event's).
pub fn map_attributes(attrs: &[KeyValue]) -> Mapped {
    map_span(attrs, &[])
}

/// Maps a span's attributes and the message events among its `events`.
pub fn map_span(attrs: &[KeyValue], events: &[Event]) -> Mapped {
    let mut rest: BTreeMap<&str, &AnyValue> = BTreeMap::new();
    for kv in attrs {
        if let Some(v) = kv.value.as_ref() {
            rest.entry(kv.key.as_str()).or_insert(v);
        }
    }
    let mut m = Mapped {
        is_generation: GENERATION_MARKERS.iter().any(|k| rest.contains_key(k)),
        ..Default::default()
    };
    let mut take = |keys: &[&str]| take_first(&mut rest, keys).map(|v| to_json(Some(v)));
    m.model = take(MODEL_KEYS).as_ref().and_then(as_string);
    m.prompt_tokens = take(PROMPT_TOKENS).as_ref().and_then(as_i64);
    m.completion_tokens = take(COMPLETION_TOKENS).as_ref().and_then(as_i64);
    m.total_tokens = take(TOTAL_TOKENS)
        .as_ref()
        .and_then(as_i64)
        // Checked: token counts come from clients; a sum past i64 is no total at all (it
        // used to panic with overflow checks and wrap without them; found by fuzzing).
        .or_else(|| m.prompt_tokens?.checked_add(m.completion_tokens?));
    m.cached_tokens = take(CACHED_TOKENS).as_ref().and_then(as_i64);
    m.audio_tokens = take(AUDIO_TOKENS).as_ref().and_then(as_i64);
    m.reasoning_tokens = take(REASONING_TOKENS).as_ref().and_then(as_i64);
    m.image_tokens = take(IMAGE_TOKENS).as_ref().and_then(as_i64);
    m.input_cost = take(INPUT_COST).as_ref().and_then(as_f64);
    m.output_cost = take(OUTPUT_COST).as_ref().and_then(as_f64);
    m.total_cost = take(TOTAL_COST)
        .as_ref()
        .and_then(as_f64)
        .or_else(|| Some(m.input_cost? + m.output_cost?));
    m.input_unit_price = take(INPUT_UNIT_PRICE).as_ref().and_then(as_f64);
    m.output_unit_price = take(OUTPUT_UNIT_PRICE).as_ref().and_then(as_f64);
    m.provider_name = take(PROVIDER).as_ref().and_then(as_string);
    m.finish_reason = take(FINISH_REASONS).and_then(|v| match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(as_string).collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
        other => as_string(&other),
    });
    m.completion_start = take(COMPLETION_START_AT)
        .and_then(|v| timestamp_nanos(&v))
        .map(CompletionStart::At)
        .or_else(|| {
            let ms = take(COMPLETION_START_MS).as_ref().and_then(as_f64);
            duration_nanos(ms, 1e6)
        })
        .or_else(|| {
            let secs = take(COMPLETION_START_SECS).as_ref().and_then(as_f64);
            duration_nanos(secs, 1e9)
        });
    m.user_id = take(&["user.id"]).as_ref().and_then(as_string);
    m.session_id = take(&["session.id"]).as_ref().and_then(as_string);
    m.custom_trace_id = take(&[CUSTOM_TRACE_ID]).as_ref().and_then(as_string);

    let content = genai::span_content(attrs, events);
    for k in &content.used_keys {
        rest.remove(k.as_str());
    }
    m.input_is_chat = matches!(content.input, Some(genai::Input::Messages(_)));
    m.output_is_chat = matches!(content.output, Some(genai::Output::Completion(_)));
    m.input = content.input.as_ref().map(genai::Input::to_json);
    m.output = content.output.as_ref().map(genai::Output::to_json);
    if m.finish_reason.is_none() && !content.finish_reasons.is_empty() {
        m.finish_reason = Some(content.finish_reasons.join(","));
    }
    // The trace-level keys stay attributes too (as they came, JSON embedded): the trace's
    // `input`/`output` show them converted, and only for the root span.
    let (trace_input, trace_output, _) = genai::trace_content(attrs);
    m.trace_input = trace_input.as_ref().map(genai::Input::to_json);
    m.trace_output = trace_output.as_ref().map(genai::Output::to_json);

    for (key, value) in rest {
        if let Some(meta_key) = key.strip_prefix(METADATA_PREFIX) {
            m.metadata
                .insert(meta_key.to_string(), to_json(Some(value)));
        } else if let Some(param) = key.strip_prefix("gen_ai.request.") {
            m.model_parameters
                .insert(param.to_string(), to_json(Some(value)));
        } else if genai::TRACE_INPUT_KEYS.contains(&key) || genai::TRACE_OUTPUT_KEYS.contains(&key)
        {
            m.attributes
                .insert(key.to_string(), content_json(Some(value)));
        } else {
            m.attributes.insert(key.to_string(), to_json(Some(value)));
        }
    }
    m
}

/// A timestamp attribute: an RFC 3339 string, or unix nanoseconds.
fn timestamp_nanos(v: &Value) -> Option<i128> {
    match v {
        Value::String(s) => OffsetDateTime::parse(s.trim(), &Rfc3339)
            .ok()
            .map(OffsetDateTime::unix_timestamp_nanos),
        other => as_i64(other).filter(|n| *n > 0).map(i128::from),
    }
}

/// A non-negative, finite duration in `unit` nanoseconds as [`CompletionStart::After`].
fn duration_nanos(value: Option<f64>, unit: f64) -> Option<CompletionStart> {
    let nanos = value? * unit;
    (0.0..1e18)
        .contains(&nanos)
        .then_some(CompletionStart::After(nanos as i128))
}

/// The gateway's normalized finish reason (`stop`, `length`, `tool_calls`,
/// `content_filter`, `error`) of a provider's raw one (OpenAI, Anthropic, Gemini, Bedrock,
/// Vercel AI SDK spellings); `None` for reasons it cannot place. Several reasons joined
/// with `,` (one per choice): the first decides.
pub fn normalize_finish_reason(raw: &str) -> Option<&'static str> {
    let first = raw.split(',').next().unwrap_or("").trim();
    let key = first.to_ascii_lowercase().replace('-', "_");
    Some(match key.as_str() {
        "stop" | "end_turn" | "stop_sequence" | "eos" | "end" | "complete" | "completed"
        | "finished" | "finish_reason_stop" => "stop",
        "length"
        | "max_tokens"
        | "max_output_tokens"
        | "max_length"
        | "token_limit"
        | "model_length"
        | "finish_reason_max_tokens" => "length",
        "tool_calls" | "tool_call" | "tool_use" | "function_call" | "tools" => "tool_calls",
        "content_filter"
        | "content_filtered"
        | "safety"
        | "recitation"
        | "blocklist"
        | "prohibited_content"
        | "spii"
        | "guardrail_intervened"
        | "refusal" => "content_filter",
        "error" | "failed" | "failure" | "cancelled" | "canceled" | "timeout" => "error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracecast_core::proto::common::v1::any_value::Value as Av;

    fn kv(k: &str, v: Av) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn maps_current_and_deprecated_names() {
        let m = map_attributes(&[
            kv("gen_ai.request.model", Av::StringValue("gpt-4o".into())),
            kv("gen_ai.request.temperature", Av::DoubleValue(0.2)),
            kv(
                "gen_ai.prompt",
                Av::StringValue("[{\"role\":\"user\",\"content\":\"hi\"}]".into()),
            ),
            kv("gen_ai.usage.prompt_tokens", Av::IntValue(10)),
            kv("gen_ai.usage.completion_tokens", Av::IntValue(5)),
            kv("gen_ai.usage.input_cost", Av::DoubleValue(0.001)),
            kv("gen_ai.system", Av::StringValue("openai".into())),
            kv("trace.metadata.env", Av::StringValue("prod".into())),
            kv("http.method", Av::StringValue("POST".into())),
        ]);
        assert!(m.is_generation);
        assert_eq!(m.model.as_deref(), Some("gpt-4o"));
        assert_eq!(m.model_parameters["temperature"], serde_json::json!(0.2));
        assert_eq!(
            m.input,
            Some(serde_json::json!({"messages": [{"role": "user", "content": "hi"}]}))
        );
        assert_eq!(m.total_tokens, Some(15));
        assert_eq!(m.total_cost, None, "no output cost: no total invented");
        assert_eq!(m.provider_name.as_deref(), Some("openai"));
        assert_eq!(m.metadata["env"], serde_json::json!("prod"));
        assert_eq!(m.attributes.len(), 1);
        assert_eq!(m.output, None);
    }

    #[test]
    fn token_details_unit_prices_and_completion_start() {
        let m = map_attributes(&[
            kv(
                "gen_ai.usage.input_tokens_details.cached_tokens",
                Av::IntValue(7),
            ),
            kv("llm.token_count.prompt_details.audio", Av::IntValue(2)),
            kv("ai.usage.reasoningTokens", Av::IntValue(30)),
            kv("gen_ai.usage.input_unit_price", Av::DoubleValue(2.5e-6)),
            kv(
                "gen_ai.usage.output_unit_price",
                Av::StringValue("1e-5".into()),
            ),
            kv("ai.response.msToFirstChunk", Av::DoubleValue(120.5)),
        ]);
        assert_eq!(m.cached_tokens, Some(7));
        assert_eq!(m.audio_tokens, Some(2));
        assert_eq!(m.reasoning_tokens, Some(30));
        assert_eq!(m.image_tokens, None);
        assert_eq!(m.input_unit_price, Some(2.5e-6));
        assert_eq!(m.output_unit_price, Some(1e-5));
        assert_eq!(
            m.completion_start,
            Some(CompletionStart::After(120_500_000))
        );
        assert!(m.attributes.is_empty(), "{:?}", m.attributes);
        let at = map_attributes(&[kv(
            "gen_ai.response.completion_start_time",
            Av::StringValue("2024-01-15T09:40:00.25Z".into()),
        )]);
        assert_eq!(
            at.completion_start,
            Some(CompletionStart::At(1_705_311_600_250_000_000))
        );
        // Hostile: negative, non-finite and unparsable values give no start time.
        for v in [
            Av::DoubleValue(-1.0),
            Av::DoubleValue(f64::INFINITY),
            Av::StringValue("soon".into()),
        ] {
            let m = map_attributes(&[kv("ai.response.msToFirstChunk", v)]);
            assert_eq!(m.completion_start, None);
        }
    }

    #[test]
    fn finish_reasons_normalize_to_the_gateway_set() {
        for (raw, want) in [
            ("stop", Some("stop")),
            ("end_turn", Some("stop")),
            ("STOP", Some("stop")),
            ("max_tokens", Some("length")),
            ("MAX_TOKENS", Some("length")),
            ("tool_use", Some("tool_calls")),
            ("tool-calls", Some("tool_calls")),
            ("SAFETY", Some("content_filter")),
            ("content-filter", Some("content_filter")),
            ("error", Some("error")),
            ("length,stop", Some("length")),
            ("whatever", None),
            ("", None),
        ] {
            assert_eq!(normalize_finish_reason(raw), want, "{raw}");
        }
    }

    #[test]
    fn token_counts_whose_sum_overflows_give_no_total() {
        let m = map_attributes(&[
            kv("gen_ai.usage.input_tokens", Av::IntValue(i64::MAX)),
            kv("gen_ai.usage.output_tokens", Av::IntValue(1)),
        ]);
        assert_eq!(m.prompt_tokens, Some(i64::MAX));
        assert_eq!(m.total_tokens, None);
    }
}
