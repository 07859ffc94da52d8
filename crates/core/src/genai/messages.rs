//! Chat messages in the OpenAI chat format, built from the JSON message shapes of the
//! conventions: OTel GenAI `parts` (`text`, `tool_call`, `tool_call_response`,
//! `reasoning`, anything else kept), OpenAI `content` strings or part arrays with
//! `tool_calls` / legacy `function_call`, the Vercel AI SDK parts (`text`, `tool-call`,
//! `tool-result`, `reasoning`) and Anthropic blocks (`tool_use`, `tool_result`,
//! `thinking`), which the deprecated `gen_ai.prompt` JSON and the message events also use.

use serde::Serialize;
use serde_json::{Map, Value};

use super::value::{as_string, embed_json, text_of};

/// One chat message: `{role, content, tool_calls, tool_call_id, name}` (OpenAI format).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    /// The text (text parts joined with `\n`); an array of parts, text parts as
    /// `{"type":"text","text":...}` and the others as they came, when the message has
    /// parts other than text; absent when there is neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Reasoning parts of an assistant message, joined (an extra of tracecast's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

/// A tool call: `{id, type: "function", function: {name, arguments}}`, `arguments` a JSON
/// string.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

/// The function of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

impl ToolCall {
    pub fn new(id: Option<String>, name: String, arguments: Option<&Value>) -> Self {
        Self {
            id,
            kind: "function",
            function: FunctionCall {
                name,
                arguments: arguments.map(text_of).unwrap_or_default(),
            },
        }
    }
}

impl ChatMessage {
    /// A message with only text.
    pub fn text(role: &str, text: String) -> Self {
        Self {
            role: role.to_string(),
            content: Some(Value::String(text)),
            ..Default::default()
        }
    }

    /// The message's text: `content` when a string, its text parts joined otherwise.
    pub fn text_content(&self) -> Option<String> {
        match self.content.as_ref()? {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                (!texts.is_empty()).then(|| texts.join("\n"))
            }
            _ => None,
        }
    }

    /// Whether the message carries anything besides its role and ids: what Privacy Mode
    /// removes. A list of messages with none of it is no content at all.
    pub fn has_content(&self) -> bool {
        self.content.is_some() || !self.tool_calls.is_empty() || self.reasoning.is_some()
    }
}

/// Collects a message's parts: text joins, tool calls and reasoning are lifted out,
/// anything else is kept as it came.
#[derive(Default)]
struct Parts {
    texts: Vec<String>,
    /// In order, text parts as `None` (placed back as `{"type":"text"}` parts).
    ordered: Vec<Option<Value>>,
    tool_calls: Vec<ToolCall>,
    reasoning: Vec<String>,
    /// Tool results found inside the message: each becomes a `tool` message.
    tool_results: Vec<ChatMessage>,
}

impl Parts {
    fn text(&mut self, t: String) {
        self.texts.push(t);
        self.ordered.push(None);
    }

    fn part(&mut self, part: &Value) {
        let Some(obj) = part.as_object() else {
            match part {
                Value::String(s) => self.text(s.clone()),
                Value::Null => {}
                other => self.ordered.push(Some(other.clone())),
            }
            return;
        };
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
        let s = |k: &str| obj.get(k).and_then(as_string);
        match ty {
            "text" | "input_text" | "output_text" => {
                match obj.get("content").or_else(|| obj.get("text")) {
                    Some(v) => self.text(text_of(v)),
                    None => self.ordered.push(Some(part.clone())),
                }
            }
            "reasoning" | "thinking" => {
                if let Some(t) = s("content").or_else(|| s("text")).or_else(|| s("thinking")) {
                    self.reasoning.push(t);
                }
            }
            "tool_call" | "tool-call" | "tool_use" | "function_call" => {
                let name = s("name").or_else(|| s("toolName")).unwrap_or_default();
                let args = obj
                    .get("arguments")
                    .or_else(|| obj.get("args"))
                    .or_else(|| obj.get("input"));
                let id = s("id").or_else(|| s("toolCallId")).or_else(|| s("call_id"));
                self.tool_calls.push(ToolCall::new(id, name, args));
            }
            "tool_call_response" | "tool-result" | "tool_result" => {
                let id = s("id")
                    .or_else(|| s("toolCallId"))
                    .or_else(|| s("tool_use_id"));
                let result = ["response", "result", "output", "content"]
                    .iter()
                    .find_map(|k| obj.get(*k));
                self.tool_results.push(ChatMessage {
                    role: "tool".into(),
                    content: result.map(|r| Value::String(tool_result_text(r))),
                    tool_call_id: id,
                    name: s("toolName"),
                    ..Default::default()
                });
            }
            _ => self.ordered.push(Some(part.clone())),
        }
    }

    /// The message content: joined text, or the parts when some are not text.
    fn content(&self) -> Option<Value> {
        if self.ordered.iter().all(Option::is_none) {
            return (!self.texts.is_empty()).then(|| Value::String(self.texts.join("\n")));
        }
        let mut texts = self.texts.iter();
        let parts = self
            .ordered
            .iter()
            .map(|p| match p {
                Some(v) => v.clone(),
                None => serde_json::json!({"type": "text", "text": texts.next()}),
            })
            .collect();
        Some(Value::Array(parts))
    }
}

/// A tool result as the text of a `tool` message: strings as is, the AI SDK v5
/// `{type, value}` output unwrapped, other JSON as its text.
fn tool_result_text(v: &Value) -> String {
    if let Some(obj) = v.as_object() {
        if obj.len() == 2 && obj.contains_key("type") {
            if let Some(inner) = obj.get("value") {
                return text_of(inner);
            }
        }
    }
    text_of(v)
}

/// A tool call in the OpenAI shape (`{id, function: {name, arguments}}`) or flat
/// (`{id, name, arguments}`, the Vercel `{toolCallId, toolName, args}`).
pub fn tool_call_from_json(v: &Value) -> Option<ToolCall> {
    let obj = v.as_object()?;
    let s = |o: &Map<String, Value>, k: &str| o.get(k).and_then(as_string);
    let id = s(obj, "id").or_else(|| s(obj, "toolCallId"));
    if let Some(f) = obj.get("function").and_then(Value::as_object) {
        return Some(ToolCall::new(
            id,
            s(f, "name").unwrap_or_default(),
            f.get("arguments"),
        ));
    }
    let name = s(obj, "name").or_else(|| s(obj, "toolName"))?;
    let args = obj
        .get("arguments")
        .or_else(|| obj.get("args"))
        .or_else(|| obj.get("input"));
    Some(ToolCall::new(id, name, args))
}

/// Tool calls from a JSON array (or a JSON string of one).
pub fn tool_calls_from_json(v: &Value) -> Vec<ToolCall> {
    match embed_json(v.clone()) {
        Value::Array(items) => items.iter().filter_map(tool_call_from_json).collect(),
        single @ Value::Object(_) => tool_call_from_json(&single).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Whether a JSON object looks like a chat message of some convention.
pub fn is_message(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        o.contains_key("role")
            && ["content", "parts", "tool_calls", "function_call", "message"]
                .iter()
                .any(|k| o.contains_key(*k))
    })
}

/// Whether a JSON array is a list of chat messages (every item one).
pub fn is_message_list(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|items| !items.is_empty() && items.iter().all(is_message))
}

/// One JSON message (any shape above) as chat messages: usually one; tool results inside
/// a message each become their own `tool` message, as the OpenAI format has them.
/// `default_role` applies when the message names none.
pub fn messages_from_json(v: &Value, default_role: &str) -> Vec<ChatMessage> {
    let Some(obj) = v.as_object() else {
        return match v {
            Value::String(s) => vec![ChatMessage::text(default_role, s.clone())],
            _ => Vec::new(),
        };
    };
    // A `gen_ai.choice` body: `{index, finish_reason, message: {...}}`.
    if let Some(inner) = obj.get("message").filter(|m| m.is_object()) {
        if !obj.contains_key("content") && !obj.contains_key("parts") {
            return messages_from_json(inner, default_role);
        }
    }
    let s = |k: &str| obj.get(k).and_then(as_string);
    let role = s("role").unwrap_or_else(|| default_role.to_string());
    let mut parts = Parts::default();
    if let Some(list) = obj.get("parts").and_then(Value::as_array) {
        for p in list {
            parts.part(p);
        }
    }
    match obj.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => match embed_json(Value::String(text.clone())) {
            // OpenLLMetry writes multimodal content as a JSON string of the parts.
            Value::Array(list) if list.iter().all(|p| p.get("type").is_some()) => {
                for p in &list {
                    parts.part(p);
                }
            }
            _ => parts.text(text.clone()),
        },
        Some(Value::Array(list)) => {
            for p in list {
                parts.part(p);
            }
        }
        Some(other) => parts.ordered.push(Some(other.clone())),
    }
    for key in ["reasoning", "reasoning_content"] {
        if let Some(t) = s(key) {
            parts.reasoning.push(t);
        }
    }
    if let Some(calls) = obj.get("tool_calls") {
        parts.tool_calls.extend(tool_calls_from_json(calls));
    }
    if let Some(call) = obj.get("function_call").and_then(tool_call_from_json) {
        parts.tool_calls.push(call);
    }
    let tool_call_id = s("tool_call_id").or_else(|| {
        // The deprecated `gen_ai.tool.message` event names the call `id`.
        (role == "tool").then(|| s("id")).flatten()
    });
    let mut out = Vec::new();
    let has_own = parts.content().is_some()
        || !parts.tool_calls.is_empty()
        || !parts.reasoning.is_empty()
        || parts.tool_results.is_empty();
    if has_own {
        out.push(ChatMessage {
            content: parts.content(),
            tool_calls: std::mem::take(&mut parts.tool_calls),
            tool_call_id,
            name: s("name"),
            reasoning: (!parts.reasoning.is_empty()).then(|| parts.reasoning.join("\n")),
            role,
        });
    }
    out.append(&mut parts.tool_results);
    out
}

/// A list of JSON messages as chat messages.
pub fn messages_from_list(items: &[Value], default_role: &str) -> Vec<ChatMessage> {
    items
        .iter()
        .flat_map(|m| messages_from_json(m, default_role))
        .collect()
}
