//! OTLP attribute values as JSON, and lookups over attribute lists.

use serde_json::{Map, Number, Value};
use tracecast_core::proto::common::v1::any_value::Value as Av;
use tracecast_core::proto::common::v1::{AnyValue, KeyValue};

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
    match to_json(v) {
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(parsed @ (Value::Object(_) | Value::Array(_))) => parsed,
            _ => Value::String(s),
        },
        other => other,
    }
}

/// A number from an int, a double or a numeric string.
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An integer from an int, an integral double or a numeric string.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
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

/// Attribute list as an ordered JSON map (deterministic output, so replays compare equal).
pub fn attributes_map(attrs: &[KeyValue]) -> Map<String, Value> {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    sorted
        .into_iter()
        .map(|kv| (kv.key.clone(), to_json(kv.value.as_ref())))
        .collect()
}

/// The first attribute named `key`.
pub fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AnyValue {
        AnyValue {
            value: Some(Av::StringValue(v.into())),
        }
    }

    #[test]
    fn embeds_json_strings_only_for_objects_and_arrays() {
        assert_eq!(
            content_json(Some(&s(r#"[{"role":"user","content":"hi"}]"#))),
            serde_json::json!([{"role": "user", "content": "hi"}])
        );
        assert_eq!(content_json(Some(&s("42"))), Value::String("42".into()));
        assert_eq!(
            content_json(Some(&s("hello"))),
            Value::String("hello".into())
        );
        let nan = AnyValue {
            value: Some(Av::DoubleValue(f64::NAN)),
        };
        assert_eq!(to_json(Some(&nan)), Value::String("NaN".into()));
        assert_eq!(as_i64(&serde_json::json!(12.0)), Some(12));
        assert_eq!(as_f64(&Value::String("0.5".into())), Some(0.5));
    }
}
