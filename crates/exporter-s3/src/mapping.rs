//! Span attributes -> observation fields: the `gen_ai.*` conventions (current and
//! deprecated names), the gateway's cost attributes, and the metadata processor's
//! `trace.metadata.*`, `user.id`, `session.id`, `tracecast.custom_trace_id`.
//!
//! Every attribute that maps to no field is kept in `attributes`, so nothing is lost; an
//! attribute that lost a priority contest (e.g. `gen_ai.prompt` when `gen_ai.input.messages`
//! is also present) is kept there too.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tracecast_core::proto::common::v1::{AnyValue, KeyValue};

use crate::values::{as_f64, as_i64, as_string, content_json, to_json};

/// Attribute prefix of custom trace metadata (set by the metadata processor).
pub const METADATA_PREFIX: &str = "trace.metadata.";
/// Custom trace id that was not 32 hex chars (set by the metadata processor).
pub const CUSTOM_TRACE_ID: &str = "tracecast.custom_trace_id";

const INPUT_KEYS: &[&str] = &[
    "gen_ai.input.messages",
    "gen_ai.prompt",
    "span.input",
    "input.value",
    "langfuse.observation.input",
    "traceloop.entity.input",
];
const OUTPUT_KEYS: &[&str] = &[
    "gen_ai.output.messages",
    "gen_ai.completion",
    "span.output",
    "output.value",
    "langfuse.observation.output",
    "traceloop.entity.output",
];
const TRACE_INPUT_KEYS: &[&str] = &["trace.input", "langfuse.trace.input"];
const TRACE_OUTPUT_KEYS: &[&str] = &["trace.output", "langfuse.trace.output"];
const MODEL_KEYS: &[&str] = &["gen_ai.response.model", "gen_ai.request.model"];
const PROMPT_TOKENS: &[&str] = &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"];
const COMPLETION_TOKENS: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
];
const TOTAL_TOKENS: &[&str] = &["gen_ai.usage.total_tokens"];
const INPUT_COST: &[&str] = &["gen_ai.usage.input_cost"];
const OUTPUT_COST: &[&str] = &["gen_ai.usage.output_cost"];
const TOTAL_COST: &[&str] = &["gen_ai.usage.total_cost", "gen_ai.usage.cost"];
const PROVIDER: &[&str] = &["gen_ai.provider.name", "gen_ai.system"];
const FINISH_REASONS: &[&str] = &["gen_ai.response.finish_reasons"];
const GENERATION_MARKERS: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
];

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
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub input_cost: Option<f64>,
    pub output_cost: Option<f64>,
    pub total_cost: Option<f64>,
    pub finish_reason: Option<String>,
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

/// Maps one attribute list (a span's or a span event's).
pub fn map_attributes(attrs: &[KeyValue]) -> Mapped {
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
    m.input_cost = take(INPUT_COST).as_ref().and_then(as_f64);
    m.output_cost = take(OUTPUT_COST).as_ref().and_then(as_f64);
    m.total_cost = take(TOTAL_COST)
        .as_ref()
        .and_then(as_f64)
        .or_else(|| Some(m.input_cost? + m.output_cost?));
    m.provider_name = take(PROVIDER).as_ref().and_then(as_string);
    m.finish_reason = take(FINISH_REASONS).and_then(|v| match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(as_string).collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
        other => as_string(&other),
    });
    m.user_id = take(&["user.id"]).as_ref().and_then(as_string);
    m.session_id = take(&["session.id"]).as_ref().and_then(as_string);
    m.custom_trace_id = take(&[CUSTOM_TRACE_ID]).as_ref().and_then(as_string);

    let mut take_content =
        |keys: &[&str]| take_first(&mut rest, keys).map(|v| content_json(Some(v)));
    m.input = take_content(INPUT_KEYS);
    m.output = take_content(OUTPUT_KEYS);
    m.trace_input = take_content(TRACE_INPUT_KEYS);
    m.trace_output = take_content(TRACE_OUTPUT_KEYS);

    for (key, value) in rest {
        if let Some(meta_key) = key.strip_prefix(METADATA_PREFIX) {
            m.metadata
                .insert(meta_key.to_string(), to_json(Some(value)));
        } else if let Some(param) = key.strip_prefix("gen_ai.request.") {
            m.model_parameters
                .insert(param.to_string(), to_json(Some(value)));
        } else {
            m.attributes.insert(key.to_string(), to_json(Some(value)));
        }
    }
    m
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
                Av::StringValue("[{\"role\":\"user\"}]".into()),
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
        assert_eq!(m.input, Some(serde_json::json!([{"role": "user"}])));
        assert_eq!(m.total_tokens, Some(15));
        assert_eq!(m.total_cost, None, "no output cost: no total invented");
        assert_eq!(m.provider_name.as_deref(), Some("openai"));
        assert_eq!(m.metadata["env"], serde_json::json!("prod"));
        assert_eq!(m.attributes.len(), 1);
        assert_eq!(m.output, None);
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
