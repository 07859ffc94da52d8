//! OTLP attribute values as JSON, shared by the content conversion and the trace file.

use serde_json::{Number, Value};

use crate::proto::common::v1::any_value::Value as Av;
use crate::proto::common::v1::AnyValue;

/// An OTLP value as JSON: ints and finite doubles as numbers, non-finite doubles as strings
/// (`"NaN"`, as proto3 JSON writes them), bytes as hex, lists and maps as JSON.
pub fn to_json(v: Option<&AnyValue>) -> Value {
    match v.and_then(|v| v.value.as_ref()) {
        // Dictionary indexes (profiles signal) never occur in traces.
        None | Some(Av::StringValueStrindex(_)) => Value::Null,
        Some(Av::StringValue(s)) => Value::String(s.clone()),
        Some(Av::BoolValue(b)) => Value::Bool(*b),
        Some(Av::IntValue(i)) => Value::Number((*i).into()),
        Some(Av::DoubleValue(d)) => match Number::from_f64(*d) {
            Some(n) => Value::Number(n),
            None => Value::String(if d.is_nan() {
                "NaN".into()
            } else if *d > 0.0 {
                "Infinity".into()
            } else {
                "-Infinity".into()
            }),
        },
        Some(Av::BytesValue(b)) => Value::String(hex::encode(b)),
        Some(Av::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| to_json(Some(v))).collect())
        }
        Some(Av::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), to_json(kv.value.as_ref())))
                .collect(),
        ),
    }
}

/// Content as JSON: a string holding a JSON object or array is embedded as JSON (readers
/// query it with JSON tools, not as an escaped string); anything else is kept as is.
pub fn content_json(v: Option<&AnyValue>) -> Value {
    embed_json(to_json(v))
}

/// A string holding a JSON object or array, parsed; any other value unchanged.
pub fn embed_json(v: Value) -> Value {
    match v {
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(parsed @ (Value::Object(_) | Value::Array(_))) => parsed,
            _ => Value::String(s),
        },
        other => other,
    }
}

/// A string from a string value; other scalars are written out.
pub fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Text of a value as a chat message carries it: strings as they are, anything else as
/// its JSON text (tool arguments and results are JSON strings in the chat format).
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
