//! Messages flattened into indexed attributes: OpenLLMetry (`gen_ai.prompt.N.role`,
//! `gen_ai.prompt.N.content`, `gen_ai.prompt.N.tool_calls.M.{id,name,arguments}`, ...)
//! and OpenInference (`llm.input_messages.N.message.role`, `.message.content`,
//! `.message.contents.M.message_content.{type,text,image.image.url}`,
//! `.message.tool_calls.M.tool_call.{id,function.name,function.arguments}`).
//!
//! One pass over the attributes groups the keys of each message by index (a sparse map:
//! an index of 10^9 costs what an index of 0 does); the messages come out in index order.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::messages::{messages_from_json, ChatMessage};
use super::value::to_json;
use crate::proto::common::v1::KeyValue;

/// The fields of one message: sub-key (after `<prefix>N.`) -> value.
type Fields = BTreeMap<String, Value>;

/// Groups `<prefix><N>.<rest>` attributes by `N`; returns the groups and the keys used.
fn group<'a>(attrs: &'a [KeyValue], prefix: &str) -> (BTreeMap<u64, Fields>, Vec<&'a str>) {
    let mut groups: BTreeMap<u64, Fields> = BTreeMap::new();
    let mut keys = Vec::new();
    for kv in attrs {
        let Some(rest) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(index) = index.parse::<u64>() else {
            continue;
        };
        let entry = groups.entry(index).or_default();
        if !entry.contains_key(field) {
            entry.insert(field.to_string(), to_json(kv.value.as_ref()));
        }
        keys.push(kv.key.as_str());
    }
    (groups, keys)
}

/// Sub-fields `<head>.<M>.<tail>` of one message, by `M`, as JSON objects keyed by tail.
fn nested(fields: &Fields, head: &str) -> Vec<Map<String, Value>> {
    let mut by_index: BTreeMap<u64, Map<String, Value>> = BTreeMap::new();
    let prefix = format!("{head}.");
    for (k, v) in fields.range(prefix.clone()..) {
        let Some(rest) = k.strip_prefix(&prefix) else {
            break;
        };
        let Some((index, tail)) = rest.split_once('.') else {
            continue;
        };
        if let Ok(i) = index.parse::<u64>() {
            by_index
                .entry(i)
                .or_default()
                .insert(tail.to_string(), v.clone());
        }
    }
    by_index.into_values().collect()
}

/// The messages of a convention and the attribute keys they were read from.
pub struct Indexed<'a> {
    pub messages: Vec<ChatMessage>,
    pub keys: Vec<&'a str>,
    /// Per message: its `finish_reason` (OpenLLMetry completions).
    pub finish_reasons: Vec<String>,
}

/// OpenLLMetry `gen_ai.prompt.N.*` / `gen_ai.completion.N.*` (`prefix` with the dot).
pub fn openllmetry<'a>(attrs: &'a [KeyValue], prefix: &str, default_role: &str) -> Indexed<'a> {
    let (groups, keys) = group(attrs, prefix);
    let mut messages = Vec::new();
    let mut finish_reasons = Vec::new();
    for fields in groups.values() {
        let mut obj = Map::new();
        for k in [
            "role",
            "content",
            "name",
            "tool_call_id",
            "reasoning",
            "reasoning_content",
        ] {
            if let Some(v) = fields.get(k) {
                obj.insert(k.to_string(), v.clone());
            }
        }
        let calls: Vec<Value> = nested(fields, "tool_calls")
            .into_iter()
            .map(Value::Object)
            .collect();
        if !calls.is_empty() {
            obj.insert("tool_calls".into(), Value::Array(calls));
        }
        if let Some(name) = fields.get("function_call.name") {
            let mut call = Map::new();
            call.insert("name".into(), name.clone());
            if let Some(a) = fields.get("function_call.arguments") {
                call.insert("arguments".into(), a.clone());
            }
            obj.insert("function_call".into(), Value::Object(call));
        }
        if let Some(Value::String(r)) = fields.get("finish_reason") {
            finish_reasons.push(r.clone());
        }
        messages.extend(messages_from_json(&Value::Object(obj), default_role));
    }
    Indexed {
        messages,
        keys,
        finish_reasons,
    }
}

/// OpenInference `llm.input_messages.N.message.*` / `llm.output_messages.N.message.*`.
pub fn openinference<'a>(attrs: &'a [KeyValue], prefix: &str, default_role: &str) -> Indexed<'a> {
    let (groups, keys) = group(attrs, prefix);
    let mut messages = Vec::new();
    for fields in groups.values() {
        let get = |k: &str| fields.get(&format!("message.{k}"));
        let mut obj = Map::new();
        for k in ["role", "content", "name", "tool_call_id"] {
            if let Some(v) = get(k) {
                obj.insert(k.to_string(), v.clone());
            }
        }
        let contents: Vec<Value> = nested(fields, "message.contents")
            .into_iter()
            // An item with neither type, text nor image (ids only, as Privacy Mode leaves
            // them) holds nothing.
            .filter(|c| {
                ["type", "text", "image.image.url"]
                    .iter()
                    .any(|k| c.contains_key(&format!("message_content.{k}")))
            })
            .map(|c| {
                let ty = c.get("message_content.type").cloned();
                let text = c.get("message_content.text").cloned();
                let url = c.get("message_content.image.image.url").cloned();
                match (ty.as_ref().and_then(Value::as_str), text, url) {
                    (Some("text") | None, Some(t), _) => {
                        serde_json::json!({"type": "text", "text": t})
                    }
                    (_, _, Some(u)) => {
                        serde_json::json!({"type": "image_url", "image_url": {"url": u}})
                    }
                    _ => Value::Object(c),
                }
            })
            .collect();
        if !contents.is_empty() && !obj.contains_key("content") {
            obj.insert("content".into(), Value::Array(contents));
        }
        let calls: Vec<Value> = nested(fields, "message.tool_calls")
            .into_iter()
            .map(|c| {
                let mut call = Map::new();
                if let Some(id) = c.get("tool_call.id") {
                    call.insert("id".into(), id.clone());
                }
                call.insert(
                    "name".into(),
                    c.get("tool_call.function.name")
                        .cloned()
                        .unwrap_or(Value::String(String::new())),
                );
                if let Some(a) = c.get("tool_call.function.arguments") {
                    call.insert("arguments".into(), a.clone());
                }
                Value::Object(call)
            })
            .collect();
        if !calls.is_empty() {
            obj.insert("tool_calls".into(), Value::Array(calls));
        }
        messages.extend(messages_from_json(&Value::Object(obj), default_role));
    }
    Indexed {
        messages,
        keys,
        finish_reasons: Vec::new(),
    }
}
