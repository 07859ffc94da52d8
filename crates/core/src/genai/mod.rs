//! Prompt and completion content of a span, in the chat format of the gateway's trace files:
//! input as `{"messages": [{role, content, tool_calls, tool_call_id, name}]}` (OpenAI chat
//! format) and output as `{"completion": ..., "reasoning": ..., "toolCalls": [...]}`, from
//! every content convention Privacy Mode knows. The one place that reads content: the S3
//! trace file uses it, and so can any processor that looks at a request's text
//! ([`request_text`]).
//!
//! Files: `value.rs` (OTLP values as JSON), `messages.rs` (JSON message shapes to
//! [`ChatMessage`]), `indexed.rs` (OpenLLMetry / OpenInference indexed attributes),
//! `events.rs` (the deprecated OTel GenAI message events), this file (which convention wins).
//!
//! Priority per span (the first that holds content wins; the losers stay attributes):
//! input: OTel `gen_ai.input.messages` (with `gen_ai.system_instructions` as a leading system
//! message), deprecated `gen_ai.prompt`, the deprecated message events, OpenLLMetry
//! `gen_ai.prompt.N.*`, OpenInference `llm.input_messages.N.*`, Vercel `ai.prompt.messages`,
//! then `ai.prompt`, then the generic keys ([`GENERIC_INPUT_KEYS`]). Output likewise with
//! `gen_ai.output.messages`, `gen_ai.completion`, the `gen_ai.choice` events,
//! `gen_ai.completion.N.*`, `llm.output_messages.N.*`, Vercel `ai.response.{text,toolCalls,
//! reasoning,object}`, then [`GENERIC_OUTPUT_KEYS`]. Chat-shaped JSON converts; a plain
//! string converts where the key is a prompt or completion (`gen_ai.prompt`, `ai.prompt`'s
//! `prompt`, `gen_ai.completion`, `ai.response.text`) or where the span's other half is chat
//! (a plain string output beside chat input is the completion; a plain string input beside
//! a completion is the user's message); anything else is kept as it came
//! ([`Input::Raw`] / [`Output::Raw`]) rather than dropped. A convention whose messages carry
//! only roles and ids (what Privacy Mode leaves) is no content: input/output are absent.

mod events;
mod indexed;
pub mod messages;
pub mod value;

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use messages::{is_message, is_message_list, messages_from_list, tool_calls_from_json};
pub use messages::{ChatMessage, FunctionCall, ToolCall};
use value::{as_string, content_json, embed_json, text_of, to_json};

use crate::proto::common::v1::{AnyValue, KeyValue};
use crate::proto::trace::v1::span::Event;
use crate::proto::trace::v1::Span;

/// Input keys of no chat convention (gateway, Langfuse, OpenInference, OpenLLMetry entity,
/// tool spans), in priority order: chat-shaped JSON in them converts, the rest stays raw.
pub const GENERIC_INPUT_KEYS: &[&str] = &[
    "span.input",
    "langfuse.observation.input",
    "input.value",
    "traceloop.entity.input",
    "gen_ai.tool.call.arguments",
    "ai.toolCall.args",
];
/// Output counterpart of [`GENERIC_INPUT_KEYS`].
pub const GENERIC_OUTPUT_KEYS: &[&str] = &[
    "span.output",
    "langfuse.observation.output",
    "output.value",
    "traceloop.entity.output",
    "gen_ai.tool.call.result",
    "ai.toolCall.result",
];
/// Trace-level input keys (the gateway's duplicate of the request's input, Langfuse).
pub const TRACE_INPUT_KEYS: &[&str] = &["trace.input", "langfuse.trace.input"];
/// Trace-level output keys.
pub const TRACE_OUTPUT_KEYS: &[&str] = &["trace.output", "langfuse.trace.output"];

/// A span's input: chat messages, or a value of no chat shape kept as it came.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Messages(Vec<ChatMessage>),
    Raw(Value),
}

/// A span's output: the completion, or a value of no chat shape kept as it came.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Completion(Completion),
    Raw(Value),
}

/// The answer: `{completion, reasoning?, toolCalls?}`; `choices` only when the span holds
/// more than one output message (the first one is the completion).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completion {
    pub completion: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<ChatMessage>,
}

impl Input {
    /// As written in the trace file: `{"messages": [...]}` or the raw value.
    pub fn to_json(&self) -> Value {
        match self {
            Input::Messages(m) => serde_json::json!({ "messages": m }),
            Input::Raw(v) => v.clone(),
        }
    }

    /// The text of every message, one per line (raw values: strings as is, JSON as text).
    pub fn text(&self) -> String {
        match self {
            Input::Messages(m) => m
                .iter()
                .filter_map(ChatMessage::text_content)
                .collect::<Vec<_>>()
                .join("\n"),
            Input::Raw(v) => text_of(v),
        }
    }

    /// The messages, when chat-shaped.
    pub fn messages(&self) -> Option<&[ChatMessage]> {
        match self {
            Input::Messages(m) => Some(m),
            Input::Raw(_) => None,
        }
    }
}

impl Output {
    /// As written in the trace file: `{"completion": ...}` or the raw value.
    pub fn to_json(&self) -> Value {
        match self {
            Output::Completion(c) => serde_json::to_value(c).unwrap_or(Value::Null),
            Output::Raw(v) => v.clone(),
        }
    }

    /// The completion text (raw values: strings as is, JSON as text).
    pub fn text(&self) -> String {
        match self {
            Output::Completion(c) => c.completion.clone(),
            Output::Raw(v) => text_of(v),
        }
    }
}

/// What [`span_content`] found, and where.
#[derive(Debug, Default, Clone)]
pub struct SpanContent {
    pub input: Option<Input>,
    pub output: Option<Output>,
    /// Attribute keys the input and output were read from (the winners only).
    pub used_keys: HashSet<String>,
    /// Indexes of the span events that were read (message events).
    pub used_events: HashSet<usize>,
    /// Finish reasons found inside the output messages (OTel `finish_reason`, OpenLLMetry
    /// `gen_ai.completion.N.finish_reason`), for spans without `gen_ai.response.finish_reasons`.
    pub finish_reasons: Vec<String>,
}

/// The request's input and output text of one span, for rules that match on text (a
/// `filter` processor's `input` / `output` fields): every input message's text joined with
/// `\n`, and the completion. `None` where the span holds no content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestText {
    pub input: Option<String>,
    pub output: Option<String>,
}

/// [`RequestText`] of a span (its attributes and events, every convention).
pub fn request_text(span: &Span) -> RequestText {
    let c = span_content(&span.attributes, &span.events);
    let trace = trace_content(&span.attributes);
    RequestText {
        input: c.input.or(trace.0).map(|i| i.text()),
        output: c.output.or(trace.1).map(|o| o.text()),
    }
}

/// First value of each key (OTLP lists may repeat a key; the first wins, as elsewhere).
fn lookup(attrs: &[KeyValue]) -> HashMap<&str, &AnyValue> {
    let mut map = HashMap::with_capacity(attrs.len());
    for kv in attrs {
        if let Some(v) = kv.value.as_ref() {
            map.entry(kv.key.as_str()).or_insert(v);
        }
    }
    map
}

/// Messages with content only count as content (see the module docs).
fn with_content(messages: Vec<ChatMessage>) -> Option<Vec<ChatMessage>> {
    messages
        .iter()
        .any(ChatMessage::has_content)
        .then_some(messages)
}

/// A JSON value (or JSON string) as chat messages, when it is chat-shaped: a message list,
/// one message, an object with `messages` (a chat request; with `system` / `prompt` as the
/// Vercel `ai.prompt` has them). `text_role` makes a plain string one message of that role.
pub fn messages_of(v: &Value, text_role: Option<&str>) -> Option<Vec<ChatMessage>> {
    let v = embed_json(v.clone());
    match &v {
        Value::Array(items) if is_message_list(&v) => Some(messages_from_list(items, "user")),
        Value::Object(_) if is_message(&v) => {
            Some(messages_from_list(std::slice::from_ref(&v), "user"))
        }
        Value::Object(obj) => {
            let mut out = Vec::new();
            if let Some(system) = obj.get("system").and_then(as_string) {
                out.push(ChatMessage::text("system", system));
            }
            let list = obj.get("messages").and_then(Value::as_array);
            if let Some(list) = list {
                out.extend(messages_from_list(list, "user"));
            }
            match obj.get("prompt") {
                Some(Value::String(p)) => out.push(ChatMessage::text("user", p.clone())),
                Some(Value::Array(items)) => out.extend(messages_from_list(items, "user")),
                _ => {}
            }
            (list.is_some() || obj.contains_key("prompt")).then_some(out)
        }
        Value::String(s) => text_role.map(|role| vec![ChatMessage::text(role, s.clone())]),
        _ => None,
    }
}

/// Chat messages as a completion: the first assistant message (else the first message);
/// all of them in `choices` when there are several.
pub fn completion_of(messages: Vec<ChatMessage>) -> Completion {
    let first = messages
        .iter()
        .position(|m| m.role == "assistant")
        .unwrap_or(0);
    let Some(m) = messages.get(first) else {
        return Completion::default();
    };
    Completion {
        completion: m.text_content().unwrap_or_default(),
        reasoning: m.reasoning.clone(),
        tool_calls: m.tool_calls.clone(),
        choices: if messages.len() > 1 {
            messages
        } else {
            Vec::new()
        },
    }
}

/// An output value as a completion when chat-shaped: messages, an OpenAI response
/// (`choices[0].message`), `{completion}`; a plain string when `text_is_completion`.
pub fn completion_of_value(v: &Value, text_is_completion: bool) -> Option<Completion> {
    let v = embed_json(v.clone());
    if let Some(choices) = v.get("choices").and_then(Value::as_array) {
        let list: Vec<Value> = choices
            .iter()
            .filter_map(|c| c.get("message"))
            .cloned()
            .collect();
        if !list.is_empty() {
            return with_content(messages_from_list(&list, "assistant")).map(completion_of);
        }
    }
    if let Some(text) = v.get("completion").and_then(Value::as_str) {
        return Some(Completion {
            completion: text.to_string(),
            reasoning: v.get("reasoning").and_then(as_string),
            tool_calls: v
                .get("toolCalls")
                .map(tool_calls_from_json)
                .unwrap_or_default(),
            choices: Vec::new(),
        });
    }
    match &v {
        Value::String(s) if text_is_completion => Some(Completion {
            completion: s.clone(),
            ..Default::default()
        }),
        Value::String(_) => None,
        _ => messages_of(&v, None)
            .and_then(with_content)
            .map(completion_of),
    }
}

/// The input and output of a span (attributes and events), per the priority in the module
/// docs.
pub fn span_content(attrs: &[KeyValue], events: &[Event]) -> SpanContent {
    let map = lookup(attrs);
    let mut out = SpanContent::default();
    let get = |k: &str| map.get(k).map(|v| to_json(Some(v)));
    let used = |keys: &[&str], out: &mut SpanContent| {
        for k in keys {
            if map.contains_key(k) {
                out.used_keys.insert((*k).to_string());
            }
        }
    };

    // Input.
    let system = get("gen_ai.system_instructions").and_then(|v| {
        let parts = match embed_json(v) {
            Value::Array(parts) => parts,
            Value::String(s) => vec![Value::String(s)],
            other => vec![other],
        };
        let msg = serde_json::json!({"role": "system", "parts": parts});
        with_content(messages_from_list(&[msg], "system"))
    });
    let current = get("gen_ai.input.messages").and_then(|v| messages_of(&v, Some("user")));
    if current.is_some() || system.is_some() {
        let mut messages = system.unwrap_or_default();
        messages.extend(current.unwrap_or_default());
        if let Some(m) = with_content(messages) {
            out.input = Some(Input::Messages(m));
            used(
                &["gen_ai.input.messages", "gen_ai.system_instructions"],
                &mut out,
            );
        }
    }
    if out.input.is_none() {
        if let Some(m) = get("gen_ai.prompt")
            .and_then(|v| messages_of(&v, Some("user")))
            .and_then(with_content)
        {
            out.input = Some(Input::Messages(m));
            used(&["gen_ai.prompt"], &mut out);
        }
    }
    let ev = events::read(events);
    if out.input.is_none() {
        if let Some((m, idx)) = ev.input {
            out.input = Some(Input::Messages(m));
            out.used_events.extend(idx);
        }
    }
    if out.input.is_none() {
        for (prefix, openinference) in [("gen_ai.prompt.", false), ("llm.input_messages.", true)] {
            let found = if openinference {
                indexed::openinference(attrs, prefix, "user")
            } else {
                indexed::openllmetry(attrs, prefix, "user")
            };
            if let Some(m) = with_content(found.messages) {
                out.input = Some(Input::Messages(m));
                out.used_keys
                    .extend(found.keys.iter().map(|k| k.to_string()));
                break;
            }
        }
    }
    if out.input.is_none() {
        for key in ["ai.prompt.messages", "ai.prompt"] {
            if let Some(m) = get(key)
                .and_then(|v| messages_of(&v, Some("user")))
                .and_then(with_content)
            {
                out.input = Some(Input::Messages(m));
                used(&[key], &mut out);
                break;
            }
        }
    }
    if out.input.is_none() {
        if let Some((key, v)) = GENERIC_INPUT_KEYS
            .iter()
            .find_map(|k| map.get(k).map(|v| (*k, *v)))
        {
            let json = content_json(Some(v));
            out.input = Some(match messages_of(&json, None).and_then(with_content) {
                Some(m) => Input::Messages(m),
                None => Input::Raw(json),
            });
            used(&[key], &mut out);
        }
    }

    // Output.
    let output_messages = |v: Value| {
        let v = embed_json(v);
        let reasons: Vec<String> = v
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|m| m.get("finish_reason").and_then(as_string))
                    .collect()
            })
            .unwrap_or_default();
        (completion_of_value(&v, true), reasons)
    };
    if let Some((Some(c), reasons)) = get("gen_ai.output.messages").map(output_messages) {
        out.output = Some(Output::Completion(c));
        out.finish_reasons = reasons;
        used(&["gen_ai.output.messages"], &mut out);
    }
    if out.output.is_none() {
        if let Some(c) = get("gen_ai.completion").and_then(|v| completion_of_value(&v, true)) {
            out.output = Some(Output::Completion(c));
            used(&["gen_ai.completion"], &mut out);
        }
    }
    if out.output.is_none() {
        if let Some((m, idx, reasons)) = ev.output {
            out.output = Some(Output::Completion(completion_of(m)));
            out.used_events.extend(idx);
            out.finish_reasons = reasons;
        }
    }
    if out.output.is_none() {
        for (prefix, openinference) in [
            ("gen_ai.completion.", false),
            ("llm.output_messages.", true),
        ] {
            let found = if openinference {
                indexed::openinference(attrs, prefix, "assistant")
            } else {
                indexed::openllmetry(attrs, prefix, "assistant")
            };
            if let Some(m) = with_content(found.messages) {
                out.output = Some(Output::Completion(completion_of(m)));
                out.used_keys
                    .extend(found.keys.iter().map(|k| k.to_string()));
                out.finish_reasons = found.finish_reasons;
                break;
            }
        }
    }
    if out.output.is_none() {
        if let Some(c) = vercel_output(&map) {
            out.output = Some(Output::Completion(c));
            used(
                &[
                    "ai.response.text",
                    "ai.response.toolCalls",
                    "ai.response.reasoning",
                    "ai.response.object",
                ],
                &mut out,
            );
        }
    }
    if out.output.is_none() {
        if let Some((key, v)) = GENERIC_OUTPUT_KEYS
            .iter()
            .find_map(|k| map.get(k).map(|v| (*k, *v)))
        {
            let json = content_json(Some(v));
            out.output = Some(match completion_of_value(&json, false) {
                Some(c) => Output::Completion(c),
                None => Output::Raw(json),
            });
            used(&[key], &mut out);
        }
    }
    // A plain string beside chat content is its other half: the answer to chat messages,
    // the user's message of a completion (Langfuse and the gateway write them so).
    if let (Some(Input::Messages(_)), Some(Output::Raw(Value::String(text)))) =
        (&out.input, &out.output)
    {
        out.output = Some(Output::Completion(Completion {
            completion: text.clone(),
            ..Default::default()
        }));
    }
    if let (Some(Input::Raw(Value::String(text))), Some(Output::Completion(_))) =
        (&out.input, &out.output)
    {
        out.input = Some(Input::Messages(vec![ChatMessage::text(
            "user",
            text.clone(),
        )]));
    }
    if out.finish_reasons.is_empty() {
        // Finish reasons are no content: Privacy Mode keeps them even where it removed the
        // completion they belonged to.
        out.finish_reasons =
            indexed::openllmetry(attrs, "gen_ai.completion.", "assistant").finish_reasons;
    }
    out
}

/// Vercel AI SDK: `ai.response.text` (else `ai.response.object` as its JSON text),
/// `ai.response.toolCalls`, `ai.response.reasoning`.
fn vercel_output(map: &HashMap<&str, &AnyValue>) -> Option<Completion> {
    let get = |k: &str| map.get(k).map(|v| to_json(Some(v)));
    let text = get("ai.response.text").or_else(|| get("ai.response.object"));
    let calls = get("ai.response.toolCalls");
    let reasoning = get("ai.response.reasoning").and_then(|v| as_string(&v));
    if text.is_none() && calls.is_none() && reasoning.is_none() {
        return None;
    }
    Some(Completion {
        completion: text.map(|t| text_of(&t)).unwrap_or_default(),
        reasoning,
        tool_calls: calls.map(|c| tool_calls_from_json(&c)).unwrap_or_default(),
        choices: Vec::new(),
    })
}

/// The trace-level input and output of a span (`trace.input`, `langfuse.trace.input`, ...):
/// chat-shaped values convert, a plain string input is the user's message and a plain
/// string output the completion (the gateway's duplicates of the request), anything else
/// stays raw. Returns the keys used too.
pub fn trace_content(attrs: &[KeyValue]) -> (Option<Input>, Option<Output>, Vec<&'static str>) {
    let map = lookup(attrs);
    let mut used = Vec::new();
    let input = TRACE_INPUT_KEYS.iter().find_map(|k| {
        let v = content_json(Some(map.get(k)?));
        used.push(*k);
        Some(match messages_of(&v, Some("user")).and_then(with_content) {
            Some(m) => Input::Messages(m),
            None => Input::Raw(v),
        })
    });
    let output = TRACE_OUTPUT_KEYS.iter().find_map(|k| {
        let v = content_json(Some(map.get(k)?));
        used.push(*k);
        Some(match completion_of_value(&v, true) {
            Some(c) => Output::Completion(c),
            None => Output::Raw(v),
        })
    });
    (input, output, used)
}

#[cfg(test)]
mod tests;
