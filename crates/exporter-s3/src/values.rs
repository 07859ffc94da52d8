//! OTLP attribute values as JSON, and lookups over attribute lists.

use serde_json::{Map, Value};
use tracecast_core::proto::common::v1::{AnyValue, KeyValue};

pub use tracecast_core::genai::value::{as_string, content_json, to_json};

/// A finite number from an int, a double or a numeric string (`"NaN"` and `"inf"` are no
/// cost: JSON cannot hold them as numbers).
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
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
    use tracecast_core::proto::common::v1::any_value::Value as Av;

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
        assert_eq!(as_f64(&Value::String("NaN".into())), None);
        assert_eq!(as_f64(&Value::String("-inf".into())), None);
    }
}
