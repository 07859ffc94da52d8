//! Reading the request fields (`trace`, `user`, `session_id`) out of an attribute list.
//! `trace` arrives in three forms, read the same way: an OTLP map, a JSON-object string, or
//! flattened into `trace.<key>` attributes (SDKs that cannot set map values send it so).

use std::collections::HashSet;

use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::common::v1::{AnyValue, KeyValue};

use super::config::MetadataProcessorConfig;
use super::METADATA_PREFIX;
use crate::attrs;
use crate::warn::Warner;

/// The request fields found on one span or resource. Metadata keys are flattened and
/// carry no prefix yet.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields {
    pub trace_id: Option<String>,
    pub trace_name: Option<String>,
    pub span_name: Option<String>,
    pub generation_name: Option<String>,
    pub parent_span_id: Option<String>,
    pub metadata: Vec<(String, AnyValue)>,
    pub user: Option<String>,
    pub session_id: Option<String>,
}

impl Fields {
    /// Merges layers, the first layer that has a field winning (per metadata key too).
    /// Linear in the layers' size: keys are deduplicated with a hash set, and each winning
    /// value is cloned once.
    pub fn layered(layers: &[&Fields]) -> Fields {
        let first =
            |pick: fn(&Fields) -> &Option<String>| layers.iter().find_map(|l| pick(l).clone());
        let mut metadata: Vec<(String, AnyValue)> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for layer in layers {
            for (k, v) in &layer.metadata {
                if seen.insert(k.as_str()) {
                    metadata.push((k.clone(), v.clone()));
                }
            }
        }
        Fields {
            trace_id: first(|f| &f.trace_id),
            trace_name: first(|f| &f.trace_name),
            span_name: first(|f| &f.span_name),
            generation_name: first(|f| &f.generation_name),
            parent_span_id: first(|f| &f.parent_span_id),
            metadata,
            user: first(|f| &f.user),
            session_id: first(|f| &f.session_id),
        }
    }
}

/// Key in the `trace` object and what it sets.
const RESERVED: [&str; 5] = [
    "trace_id",
    "trace_name",
    "span_name",
    "generation_name",
    "parent_span_id",
];

/// Metadata key under which a `trace` value that is not an object is kept
/// (`trace.metadata.raw`), so nothing the gateway sent is lost.
pub const RAW_KEY: &str = "raw";

/// Removes the source attributes from `attrs` and returns what they said. Values it cannot
/// interpret are kept (as `trace.metadata.raw`, or left in place for `user`/`session_id`)
/// and counted as warnings.
pub fn take_fields(
    attrs: &mut Vec<KeyValue>,
    cfg: &MetadataProcessorConfig,
    warner: &mut Warner,
) -> Fields {
    let mut fields = Fields::default();
    if let Some(value) = attrs::take(attrs, &cfg.trace_attribute) {
        read_trace(value, &cfg.trace_attribute, &mut fields, warner);
    }
    fields.user = take_scalar(attrs, &cfg.user_attribute, "user_not_scalar", warner);
    fields.session_id = take_scalar(
        attrs,
        &cfg.session_id_attribute,
        "session_id_not_scalar",
        warner,
    );
    // The flattened form after the map / JSON one (a key in both takes the map's value) and
    // after `user` / `session_id` (whose configured names may look flattened).
    let flattened = take_flattened(attrs, &cfg.trace_attribute);
    if !flattened.is_empty() {
        read_entries(flattened, &mut fields, warner);
    }
    fields
}

/// Takes a scalar attribute as a string; a map/array/bytes value stays where it is.
fn take_scalar(
    attrs: &mut Vec<KeyValue>,
    key: &str,
    reason: &'static str,
    warner: &mut Warner,
) -> Option<String> {
    let value = attrs::get(attrs, key)?;
    match attrs::scalar_to_string(value) {
        Some(s) => {
            attrs::take(attrs, key);
            Some(s)
        }
        None => {
            warner.warn(reason, || {
                format!("attribute {key:?} is not a string or number; left unchanged")
            });
            None
        }
    }
}

fn read_trace(value: Option<AnyValue>, key: &str, fields: &mut Fields, warner: &mut Warner) {
    let Some(value) = value else { return };
    let entries = match value.value {
        None => return,
        Some(Value::KvlistValue(list)) => list.values,
        Some(Value::StringValue(ref s)) => {
            if s.trim().is_empty() {
                return;
            }
            match serde_json::from_str::<serde_json::Value>(s) {
                Ok(json @ serde_json::Value::Object(_)) => match attrs::from_json(&json).value {
                    Some(Value::KvlistValue(list)) => list.values,
                    _ => Vec::new(),
                },
                _ => {
                    warner.warn("trace_not_json_object", || {
                        format!(
                            "attribute {key:?} is a string but not a JSON object; kept as \
                             trace.metadata.{RAW_KEY}"
                        )
                    });
                    fields.metadata.push((RAW_KEY.into(), value));
                    return;
                }
            }
        }
        Some(_) => {
            warner.warn("trace_not_object", || {
                format!(
                    "attribute {key:?} is neither a map nor a JSON-object string; kept as \
                     trace.metadata.{RAW_KEY}"
                )
            });
            fields.metadata.push((RAW_KEY.into(), value));
            return;
        }
    };
    read_entries(entries, fields, warner);
}

/// Whether `key` is a flattened `trace` field (`<trace_attribute>.<k>`): not the output
/// namespace `trace.metadata.*` (passes unchanged, so the processor stays idempotent) and
/// not the content keys `<trace_attribute>.input` / `.output` (and their sub-keys), which
/// Privacy Mode removes and the trace file reads as the request's input and output.
pub fn is_flattened_trace_key(key: &str, trace_attribute: &str) -> bool {
    let Some(sub) = key
        .strip_prefix(trace_attribute)
        .and_then(|rest| rest.strip_prefix('.'))
    else {
        return false;
    };
    let content = ["input", "output"].iter().any(|c| {
        sub.strip_prefix(c)
            .is_some_and(|r| r.is_empty() || r.starts_with('.'))
    });
    !sub.is_empty() && !key.starts_with(METADATA_PREFIX) && !content
}

/// Removes the flattened `trace` fields (see [`is_flattened_trace_key`]) in one pass and
/// returns them as entries of the `trace` object (`trace.environment` -> `environment`), in
/// their order.
fn take_flattened(attrs: &mut Vec<KeyValue>, trace_attribute: &str) -> Vec<KeyValue> {
    let mut entries = Vec::new();
    attrs.retain_mut(|kv| {
        if !is_flattened_trace_key(&kv.key, trace_attribute) {
            return true;
        }
        entries.push(KeyValue {
            key: kv.key[trace_attribute.len() + 1..].to_string(),
            value: kv.value.take(),
            ..Default::default()
        });
        false
    });
    entries
}

/// Reads the entries of a `trace` object (any form) into `fields`: reserved keys set their
/// field, the first value of a key wins, other keys become metadata (nested maps flattened).
fn read_entries(entries: Vec<KeyValue>, fields: &mut Fields, warner: &mut Warner) {
    let mut seen: HashSet<String> = fields.metadata.iter().map(|(k, _)| k.clone()).collect();
    for entry in entries {
        let Some(v) = entry.value else { continue };
        if RESERVED.contains(&entry.key.as_str()) {
            let slot = match entry.key.as_str() {
                "trace_id" => &mut fields.trace_id,
                "trace_name" => &mut fields.trace_name,
                "span_name" => &mut fields.span_name,
                "generation_name" => &mut fields.generation_name,
                _ => &mut fields.parent_span_id,
            };
            if slot.is_some() {
                continue; // duplicate key: the first one wins
            }
            match attrs::scalar_to_string(&v) {
                Some(s) => *slot = Some(s),
                None => {
                    let k = entry.key.clone();
                    warner.warn("reserved_key_not_scalar", || {
                        format!("trace.{k} is not a string; kept as trace.metadata.{k}")
                    });
                    if seen.insert(entry.key.clone()) {
                        fields.metadata.push((entry.key, v));
                    }
                }
            }
            continue;
        }
        let mut flat = Vec::new();
        attrs::flatten(&entry.key, &v, &mut flat);
        for (k, v) in flat {
            if seen.insert(k.clone()) {
                fields.metadata.push((k, v));
            }
        }
    }
}
