//! The deprecated OTel GenAI message events on a span: `gen_ai.{system,user,assistant,tool}
//! .message` (input, in order), `gen_ai.choice` (output), and the older
//! `gen_ai.content.prompt` / `gen_ai.content.completion` events carrying `gen_ai.prompt` /
//! `gen_ai.completion`. An event's message is its attributes (`content`, `role`,
//! `tool_calls`, `id`, `message` for a choice) or its body as JSON in `gen_ai.event.content`.

use serde_json::{Map, Value};

use super::messages::{messages_from_json, ChatMessage};
use super::value::{as_string, embed_json, to_json};
use super::{completion_of_value, messages_of};
use crate::proto::trace::v1::span::Event;

/// Messages read from events, with the indexes of the events used.
#[derive(Default)]
pub struct EventContent {
    pub input: Option<(Vec<ChatMessage>, Vec<usize>)>,
    /// Output messages, the events used, and the choices' finish reasons.
    pub output: Option<(Vec<ChatMessage>, Vec<usize>, Vec<String>)>,
}

/// An event's message body as one JSON object.
fn body(event: &Event) -> Map<String, Value> {
    let mut obj = Map::new();
    for kv in &event.attributes {
        if kv.key == "gen_ai.event.content" {
            if let Value::Object(inner) = embed_json(to_json(kv.value.as_ref())) {
                for (k, v) in inner {
                    obj.entry(k).or_insert(v);
                }
            }
            continue;
        }
        let key = kv.key.strip_prefix("gen_ai.").unwrap_or(&kv.key);
        if matches!(
            key,
            "content" | "role" | "tool_calls" | "id" | "name" | "message" | "finish_reason"
        ) {
            let v = to_json(kv.value.as_ref());
            // `message` and `tool_calls` arrive as JSON strings from SDKs without maps.
            let v = if key == "message" || key == "tool_calls" {
                embed_json(v)
            } else {
                v
            };
            obj.entry(key.to_string()).or_insert(v);
        }
    }
    obj
}

fn has_content(messages: &[ChatMessage]) -> bool {
    messages.iter().any(ChatMessage::has_content)
}

/// Reads the message events of a span.
pub fn read(events: &[Event]) -> EventContent {
    let mut input = Vec::new();
    let mut input_idx = Vec::new();
    let mut output = Vec::new();
    let mut output_idx = Vec::new();
    let mut reasons = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let role = match e.name.as_str() {
            "gen_ai.system.message" => "system",
            "gen_ai.user.message" => "user",
            "gen_ai.assistant.message" => "assistant",
            "gen_ai.tool.message" => "tool",
            "gen_ai.choice" => {
                let b = body(e);
                if let Some(r) = b.get("finish_reason").and_then(as_string) {
                    reasons.push(r);
                }
                let m = messages_from_json(&Value::Object(b), "assistant");
                if has_content(&m) {
                    output.extend(m);
                    output_idx.push(i);
                }
                continue;
            }
            "gen_ai.content.prompt" => {
                let m = e
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "gen_ai.prompt")
                    .and_then(|kv| messages_of(&to_json(kv.value.as_ref()), Some("user")));
                if let Some(m) = m.filter(|m| has_content(m)) {
                    input.extend(m);
                    input_idx.push(i);
                }
                continue;
            }
            "gen_ai.content.completion" => {
                let c = e
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "gen_ai.completion")
                    .and_then(|kv| completion_of_value(&to_json(kv.value.as_ref()), true));
                if let Some(c) = c {
                    output.push(ChatMessage {
                        role: "assistant".into(),
                        content: Some(Value::String(c.completion)),
                        tool_calls: c.tool_calls,
                        reasoning: c.reasoning,
                        ..Default::default()
                    });
                    output_idx.push(i);
                }
                continue;
            }
            _ => continue,
        };
        let mut b = body(e);
        b.entry("role".to_string())
            .or_insert_with(|| Value::String(role.to_string()));
        let m = messages_from_json(&Value::Object(b), role);
        if has_content(&m) {
            input.extend(m);
            input_idx.push(i);
        }
    }
    EventContent {
        input: (!input.is_empty()).then_some((input, input_idx)),
        output: (!output.is_empty()).then_some((output, output_idx, reasons)),
    }
}
