//! Small helpers over OTLP `AnyValue` / `KeyValue` lists, shared by the processors.
//!
//! OTLP attribute lists are plain vectors (duplicates are possible in bad input); these
//! helpers treat the first occurrence of a key as its value, as most backends do.

use std::collections::HashMap;

use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};

/// How deep nested maps are flattened before the rest of a value is kept whole. Real
/// metadata is one or two levels deep; the cap only bounds work on hostile input.
pub const MAX_FLATTEN_DEPTH: usize = 16;

/// A string value.
pub fn string(s: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.into())),
    }
}

/// An integer value.
pub fn int(i: i64) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(i)),
    }
}

/// A `KeyValue` pair.
pub fn kv(key: impl Into<String>, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// The value of the first attribute named `key`.
pub fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
}

/// Whether an attribute named `key` is present (with or without a value).
pub fn has(attrs: &[KeyValue], key: &str) -> bool {
    attrs.iter().any(|a| a.key == key)
}

/// Sets `key` to `value`: replaces the first occurrence (dropping later duplicates) or
/// appends.
pub fn set(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    let mut seen = false;
    attrs.retain_mut(|a| {
        if a.key != key {
            return true;
        }
        if seen {
            return false;
        }
        seen = true;
        a.value = Some(value.clone());
        true
    });
    if !seen {
        attrs.push(kv(key, value));
    }
}

/// Sets every `(key, value)` of `updates` (keys distinct) in one pass: the first occurrence
/// of a key gets the new value in place, later duplicates are dropped, missing keys are
/// appended in `updates` order. Same result as calling [`set`] for each pair, but linear in
/// `attrs.len() + updates.len()` (per-key [`set`] is quadratic when a request carries
/// thousands of keys).
pub fn set_all(attrs: &mut Vec<KeyValue>, updates: Vec<(String, AnyValue)>) {
    if updates.is_empty() {
        return;
    }
    let mut slots: Vec<Option<(String, AnyValue)>> = updates.into_iter().map(Some).collect();
    let index: HashMap<String, usize> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_ref().map(|(k, _)| (k.clone(), i)))
        .collect();
    let mut placed = vec![false; slots.len()];
    attrs.retain_mut(|a| {
        let Some(&i) = index.get(a.key.as_str()) else {
            return true;
        };
        if placed[i] {
            return false;
        }
        placed[i] = true;
        if let Some((_, v)) = slots[i].take() {
            a.value = Some(v);
        }
        true
    });
    attrs.extend(slots.into_iter().flatten().map(|(k, v)| kv(k, v)));
}

/// Roughly how many bytes a value adds where it is copied (string and key bytes, 8 per
/// scalar): what the metadata processor weighs before copying a value onto many spans.
pub fn value_bytes(v: &AnyValue) -> usize {
    match &v.value {
        None => 0,
        Some(Value::StringValue(s)) => s.len(),
        Some(Value::BytesValue(b)) => b.len(),
        Some(Value::ArrayValue(a)) => a.values.iter().map(|v| 2 + value_bytes(v)).sum(),
        Some(Value::KvlistValue(l)) => l
            .values
            .iter()
            .map(|kv| 4 + kv.key.len() + kv.value.as_ref().map_or(0, value_bytes))
            .sum(),
        Some(_) => 8,
    }
}

/// Removes every attribute named `key`, returning the first one's value (`None` if absent
/// or valueless).
pub fn take(attrs: &mut Vec<KeyValue>, key: &str) -> Option<Option<AnyValue>> {
    let pos = attrs.iter().position(|a| a.key == key)?;
    let first = attrs.remove(pos).value;
    attrs.retain(|a| a.key != key);
    Some(first)
}

/// The value as a string if it is a scalar (strings as is, numbers and booleans printed);
/// `None` for arrays, maps, bytes and empty values.
pub fn scalar_to_string(v: &AnyValue) -> Option<String> {
    match v.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

/// The string inside a string value.
pub fn as_str(v: &AnyValue) -> Option<&str> {
    match v.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Converts a JSON value. Objects become OTLP maps, arrays OTLP arrays, integers that fit
/// `i64` ints, other numbers doubles, `null` an empty value.
pub fn from_json(v: &serde_json::Value) -> AnyValue {
    use serde_json::Value as J;
    let value = match v {
        J::Null => None,
        J::Bool(b) => Some(Value::BoolValue(*b)),
        J::Number(n) => match n.as_i64() {
            Some(i) => Some(Value::IntValue(i)),
            None => n.as_f64().map(Value::DoubleValue),
        },
        J::String(s) => Some(Value::StringValue(s.clone())),
        J::Array(items) => Some(Value::ArrayValue(ArrayValue {
            values: items.iter().map(from_json).collect(),
        })),
        J::Object(map) => Some(Value::KvlistValue(KeyValueList {
            values: map
                .iter()
                .map(|(k, v)| kv(k.clone(), from_json(v)))
                .collect(),
        })),
    };
    AnyValue { value }
}

/// Flattens a value into `(dotted key, leaf value)` pairs under `prefix`: nested maps join
/// their keys with dots, arrays and scalars are leaves (arrays stay OTLP arrays), empty
/// values are skipped. Below [`MAX_FLATTEN_DEPTH`] levels the remaining map is one leaf.
pub fn flatten(prefix: &str, v: &AnyValue, out: &mut Vec<(String, AnyValue)>) {
    flatten_at(prefix, v, 0, out);
}

fn flatten_at(prefix: &str, v: &AnyValue, depth: usize, out: &mut Vec<(String, AnyValue)>) {
    match &v.value {
        None => {}
        Some(Value::KvlistValue(list)) if depth < MAX_FLATTEN_DEPTH => {
            for item in &list.values {
                let Some(child) = &item.value else { continue };
                let key = if prefix.is_empty() {
                    item.key.clone()
                } else {
                    format!("{prefix}.{}", item.key)
                };
                flatten_at(&key, child, depth + 1, out);
            }
        }
        Some(_) => out.push((prefix.to_string(), v.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_first_and_drops_duplicates() {
        let mut attrs = vec![kv("a", int(1)), kv("b", int(2)), kv("a", int(3))];
        set(&mut attrs, "a", int(9));
        assert_eq!(attrs, vec![kv("a", int(9)), kv("b", int(2))]);
        set(&mut attrs, "c", string("x"));
        assert_eq!(attrs.len(), 3);
    }

    #[test]
    fn flatten_joins_nested_keys_and_keeps_arrays() {
        let json = serde_json::json!({"a": {"b": 1, "c": [1, "x"]}, "d": "e", "n": null});
        let mut out = Vec::new();
        flatten("", &from_json(&json), &mut out);
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["a.b", "a.c", "d"]);
        assert!(matches!(out[1].1.value, Some(Value::ArrayValue(_))));
    }

    #[test]
    fn set_all_equals_sequential_sets() {
        let base = vec![
            kv("a", int(1)),
            kv("b", int(2)),
            kv("a", int(3)),
            kv("c", int(4)),
        ];
        let updates = vec![
            ("c".to_string(), string("C")),
            ("a".to_string(), string("A")),
            ("new".to_string(), int(7)),
        ];
        let mut one_by_one = base.clone();
        for (k, v) in &updates {
            set(&mut one_by_one, k, v.clone());
        }
        let mut at_once = base;
        set_all(&mut at_once, updates);
        assert_eq!(at_once, one_by_one);
    }

    #[test]
    fn take_removes_all_occurrences() {
        let mut attrs = vec![kv("a", int(1)), kv("a", int(2))];
        assert_eq!(take(&mut attrs, "a"), Some(Some(int(1))));
        assert!(attrs.is_empty());
        assert_eq!(take(&mut attrs, "a"), None);
    }
}
