//! One test per content convention: the exact chat messages and completion a span gives.

use serde_json::{json, Value};

use super::*;
use crate::proto::common::v1::any_value::Value as Av;
use crate::proto::common::v1::{ArrayValue, KeyValueList};

fn kv(k: &str, v: Av) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(k: &str, v: &str) -> KeyValue {
    kv(k, Av::StringValue(v.into()))
}

fn event(name: &str, attrs: Vec<KeyValue>) -> Event {
    Event {
        name: name.into(),
        attributes: attrs,
        ..Default::default()
    }
}

fn input_json(c: &SpanContent) -> Value {
    c.input.as_ref().map_or(Value::Null, Input::to_json)
}

fn output_json(c: &SpanContent) -> Value {
    c.output.as_ref().map_or(Value::Null, Output::to_json)
}

/// The tool round trip every convention below expresses.
fn round_trip() -> Value {
    json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "content": "18C, sunny", "tool_call_id": "call_1"}
    ]})
}

#[test]
fn otel_current_parts_with_system_instructions_tool_calls_and_reasoning() {
    let input = r#"[
      {"role":"user","parts":[{"type":"text","content":"Weather in Paris?"}]},
      {"role":"assistant","parts":[{"type":"tool_call","id":"call_1","name":"get_weather","arguments":{"city":"Paris"}}]},
      {"role":"tool","parts":[{"type":"tool_call_response","id":"call_1","response":"18C, sunny"}]}
    ]"#;
    let output = r#"[{"role":"assistant","parts":[
        {"type":"reasoning","content":"The tool said sunny."},
        {"type":"text","content":"It is 18C"},{"type":"text","content":"and sunny."}],
      "finish_reason":"stop"}]"#;
    let c = span_content(
        &[
            s(
                "gen_ai.system_instructions",
                r#"[{"type":"text","content":"Be brief."}]"#,
            ),
            s("gen_ai.input.messages", input),
            s("gen_ai.output.messages", output),
            s("gen_ai.request.model", "gpt-4o"),
        ],
        &[],
    );
    assert_eq!(input_json(&c), round_trip());
    assert_eq!(
        output_json(&c),
        json!({"completion": "It is 18C\nand sunny.", "reasoning": "The tool said sunny."})
    );
    assert_eq!(c.finish_reasons, ["stop"]);
    let mut used: Vec<_> = c.used_keys.iter().cloned().collect();
    used.sort();
    assert_eq!(
        used,
        [
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions"
        ]
    );
}

#[test]
fn otel_current_structured_values_and_non_text_parts_are_kept() {
    // Messages as OTLP maps (not JSON strings), and an image part that is not text.
    let part = |entries: Vec<KeyValue>| AnyValue {
        value: Some(Av::KvlistValue(KeyValueList { values: entries })),
    };
    let message = part(vec![
        s("role", "user"),
        kv(
            "parts",
            Av::ArrayValue(ArrayValue {
                values: vec![
                    part(vec![s("type", "text"), s("content", "What is this?")]),
                    part(vec![
                        s("type", "uri"),
                        s("modality", "image"),
                        s("uri", "https://x/y.png"),
                    ]),
                ],
            }),
        ),
    ]);
    let c = span_content(
        &[kv(
            "gen_ai.input.messages",
            Av::ArrayValue(ArrayValue {
                values: vec![message],
            }),
        )],
        &[],
    );
    assert_eq!(
        input_json(&c),
        json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "uri", "modality": "image", "uri": "https://x/y.png"}
        ]}]})
    );
    assert!(c.output.is_none());
}

#[test]
fn otel_deprecated_prompt_and_completion_attributes() {
    let c = span_content(
        &[
            s(
                "gen_ai.prompt",
                r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"Weather in Paris?"},
                   {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                   {"role":"tool","tool_call_id":"call_1","content":"18C, sunny"}]"#,
            ),
            s(
                "gen_ai.completion",
                r#"[{"role":"assistant","content":"Sunny, 18C."}]"#,
            ),
        ],
        &[],
    );
    assert_eq!(input_json(&c), round_trip());
    assert_eq!(output_json(&c), json!({"completion": "Sunny, 18C."}));
    // Plain strings: the prompt is the user's message, the completion the answer.
    let c = span_content(
        &[s("gen_ai.prompt", "Hi"), s("gen_ai.completion", "Hello")],
        &[],
    );
    assert_eq!(
        input_json(&c),
        json!({"messages": [{"role": "user", "content": "Hi"}]})
    );
    assert_eq!(output_json(&c), json!({"completion": "Hello"}));
}

#[test]
fn otel_deprecated_message_events() {
    let events = vec![
        event("gen_ai.system.message", vec![s("content", "Be brief.")]),
        event(
            "gen_ai.user.message",
            vec![s("content", "Weather in Paris?")],
        ),
        event("gen_ai.other", vec![s("content", "not a message")]),
        event(
            "gen_ai.assistant.message",
            vec![s(
                "tool_calls",
                r#"[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":{"city":"Paris"}}}]"#,
            )],
        ),
        event(
            "gen_ai.tool.message",
            vec![s("content", "18C, sunny"), s("id", "call_1")],
        ),
        event(
            "gen_ai.choice",
            vec![
                kv("index", Av::IntValue(0)),
                s("finish_reason", "stop"),
                s("message", r#"{"role":"assistant","content":"Sunny, 18C."}"#),
            ],
        ),
    ];
    let c = span_content(&[], &events);
    assert_eq!(input_json(&c), round_trip());
    assert_eq!(output_json(&c), json!({"completion": "Sunny, 18C."}));
    assert_eq!(c.finish_reasons, ["stop"]);
    let mut used: Vec<_> = c.used_events.iter().copied().collect();
    used.sort_unstable();
    assert_eq!(used, [0, 1, 3, 4, 5], "the unrelated event stays an event");
    // The body as JSON in `gen_ai.event.content`, and the oldest prompt/completion events.
    let c = span_content(
        &[],
        &[
            event(
                "gen_ai.user.message",
                vec![s("gen_ai.event.content", r#"{"content":"Hi there"}"#)],
            ),
            event(
                "gen_ai.content.completion",
                vec![s("gen_ai.completion", "Hello")],
            ),
        ],
    );
    assert_eq!(
        input_json(&c),
        json!({"messages": [{"role": "user", "content": "Hi there"}]})
    );
    assert_eq!(output_json(&c), json!({"completion": "Hello"}));
}

#[test]
fn openllmetry_indexed_attributes() {
    let c = span_content(
        &[
            s("gen_ai.prompt.0.role", "system"),
            s("gen_ai.prompt.0.content", "Be brief."),
            s("gen_ai.prompt.1.role", "user"),
            s("gen_ai.prompt.1.content", "Weather in Paris?"),
            s("gen_ai.prompt.2.role", "assistant"),
            s("gen_ai.prompt.2.tool_calls.0.id", "call_1"),
            s("gen_ai.prompt.2.tool_calls.0.name", "get_weather"),
            s(
                "gen_ai.prompt.2.tool_calls.0.arguments",
                r#"{"city":"Paris"}"#,
            ),
            s("gen_ai.prompt.3.role", "tool"),
            s("gen_ai.prompt.3.content", "18C, sunny"),
            s("gen_ai.prompt.3.tool_call_id", "call_1"),
            s("gen_ai.completion.0.role", "assistant"),
            s("gen_ai.completion.0.finish_reason", "tool_calls"),
            s("gen_ai.completion.0.tool_calls.0.id", "call_2"),
            s("gen_ai.completion.0.tool_calls.0.name", "get_time"),
            s("gen_ai.completion.0.tool_calls.0.arguments", "{}"),
            s("gen_ai.completion.0.content", "Checking the time."),
        ],
        &[],
    );
    assert_eq!(input_json(&c), round_trip());
    assert_eq!(
        output_json(&c),
        json!({"completion": "Checking the time.", "toolCalls": [{"id": "call_2", "type": "function",
            "function": {"name": "get_time", "arguments": "{}"}}]})
    );
    assert_eq!(c.finish_reasons, ["tool_calls"]);
    assert_eq!(c.used_keys.len(), 17);
}

#[test]
fn openinference_indexed_attributes() {
    let c = span_content(
        &[
            s("llm.input_messages.0.message.role", "system"),
            s("llm.input_messages.0.message.content", "Be brief."),
            s("llm.input_messages.1.message.role", "user"),
            s(
                "llm.input_messages.1.message.contents.0.message_content.type",
                "text",
            ),
            s(
                "llm.input_messages.1.message.contents.0.message_content.text",
                "Weather in Paris?",
            ),
            s("llm.input_messages.2.message.role", "assistant"),
            s(
                "llm.input_messages.2.message.tool_calls.0.tool_call.id",
                "call_1",
            ),
            s(
                "llm.input_messages.2.message.tool_calls.0.tool_call.function.name",
                "get_weather",
            ),
            s(
                "llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments",
                r#"{"city":"Paris"}"#,
            ),
            s("llm.input_messages.3.message.role", "tool"),
            s("llm.input_messages.3.message.content", "18C, sunny"),
            s("llm.input_messages.3.message.tool_call_id", "call_1"),
            s("llm.output_messages.0.message.role", "assistant"),
            s("llm.output_messages.0.message.content", "Sunny, 18C."),
            s("input.value", r#"{"messages":"the raw request"}"#),
        ],
        &[],
    );
    assert_eq!(input_json(&c), round_trip());
    assert_eq!(output_json(&c), json!({"completion": "Sunny, 18C."}));
    assert!(
        !c.used_keys.contains("input.value"),
        "the loser stays an attribute"
    );
}

#[test]
fn vercel_ai_sdk_prompt_messages_and_response() {
    let messages = r#"[{"role":"system","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"Weather in Paris?"}]},
      {"role":"assistant","content":[{"type":"tool-call","toolCallId":"call_1","toolName":"get_weather","args":{"city":"Paris"}}]},
      {"role":"tool","content":[{"type":"tool-result","toolCallId":"call_1","toolName":"get_weather","result":"18C, sunny"}]}]"#;
    let c = span_content(
        &[
            s("ai.prompt.messages", messages),
            s("ai.response.text", ""),
            s(
                "ai.response.toolCalls",
                r#"[{"toolCallType":"function","toolCallId":"call_2","toolName":"get_time","args":"{}"}]"#,
            ),
            s("ai.response.reasoning", "Need the time too."),
        ],
        &[],
    );
    let mut expected = round_trip();
    expected["messages"][3]["name"] = json!("get_weather");
    assert_eq!(input_json(&c), expected);
    assert_eq!(
        output_json(&c),
        json!({"completion": "", "reasoning": "Need the time too.", "toolCalls": [{"id": "call_2",
            "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]})
    );
    // The outer `ai.generateText` span: `ai.prompt` with system and prompt.
    let c = span_content(
        &[
            s(
                "ai.prompt",
                r#"{"system":"Be brief.","prompt":"Weather in Paris?"}"#,
            ),
            s("ai.response.text", "Sunny."),
        ],
        &[],
    );
    assert_eq!(
        input_json(&c),
        json!({"messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Weather in Paris?"}]})
    );
    assert_eq!(output_json(&c), json!({"completion": "Sunny."}));
}

#[test]
fn generic_keys_convert_chat_shapes_and_keep_the_rest_as_it_came() {
    let c = span_content(
        &[
            s(
                "input.value",
                r#"{"messages":[{"role":"user","content":"Hi"}],"model":"x"}"#,
            ),
            s(
                "output.value",
                r#"{"choices":[{"message":{"role":"assistant","content":"Hello"}}]}"#,
            ),
        ],
        &[],
    );
    assert_eq!(
        input_json(&c),
        json!({"messages": [{"role": "user", "content": "Hi"}]})
    );
    assert_eq!(output_json(&c), json!({"completion": "Hello"}));
    let c = span_content(
        &[
            s("gen_ai.tool.call.arguments", r#"{"city":"Paris"}"#),
            s("span.output", "plain"),
        ],
        &[],
    );
    assert_eq!(input_json(&c), json!({"city": "Paris"}));
    assert_eq!(output_json(&c), json!("plain"));
}

#[test]
fn a_plain_string_beside_chat_content_is_its_other_half() {
    // Langfuse: chat messages in, the answer as a plain string out.
    let c = span_content(
        &[
            s(
                "langfuse.observation.input",
                r#"[{"role":"user","content":"Which plan?"}]"#,
            ),
            s("langfuse.observation.output", "Enterprise."),
        ],
        &[],
    );
    assert_eq!(output_json(&c), json!({"completion": "Enterprise."}));
    // A plain string question beside a completion is the user's message.
    let c = span_content(
        &[
            s("span.input", "Which plan?"),
            s("gen_ai.completion", "Enterprise."),
        ],
        &[],
    );
    assert_eq!(
        input_json(&c),
        json!({"messages": [{"role": "user", "content": "Which plan?"}]})
    );
}

#[test]
fn privacy_leftovers_are_no_content() {
    // What Privacy Mode leaves of OpenLLMetry and OpenInference messages: roles and ids.
    let c = span_content(
        &[
            s("gen_ai.prompt.0.role", "user"),
            s("gen_ai.prompt.1.tool_call_id", "call_1"),
            s("gen_ai.completion.0.role", "assistant"),
            s("gen_ai.completion.0.finish_reason", "stop"),
            s("gen_ai.completion.0.tool_calls.0.id", "call_1"),
            s(
                "llm.input_messages.0.message.contents.0.message_content.image.image.id",
                "x",
            ),
        ],
        &[],
    );
    assert!(c.input.is_none() && c.output.is_none(), "{c:?}");
    assert!(c.used_keys.is_empty());
}

#[test]
fn hostile_values_never_panic_and_stay_bounded() {
    let c = span_content(
        &[
            s("gen_ai.input.messages", "[[[[[{\"role\":1}]]]]]"),
            s(
                "gen_ai.output.messages",
                "{\"role\":\"assistant\",\"parts\":5}",
            ),
            s("gen_ai.prompt.18446744073709551615.content", "huge index"),
            s(
                "gen_ai.prompt.99999999999999999999999.content",
                "unparsable index",
            ),
            s("gen_ai.prompt.x.content", "not an index"),
            s("llm.input_messages.0", "no field"),
            kv("ai.prompt.messages", Av::BytesValue(vec![0xff, 0x00])),
        ],
        &[event("gen_ai.choice", vec![s("message", "{not json")])],
    );
    assert_eq!(
        input_json(&c),
        json!({"messages": [{"role": "user", "content": "huge index"}]})
    );
    assert!(c.output.is_none(), "{c:?}");
}

#[test]
fn request_text_joins_messages_and_reads_trace_level_content() {
    let span = Span {
        attributes: vec![
            s(
                "gen_ai.input.messages",
                r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]"#,
            ),
            s(
                "gen_ai.output.messages",
                r#"[{"role":"assistant","content":"Hello"}]"#,
            ),
        ],
        ..Default::default()
    };
    assert_eq!(
        request_text(&span),
        RequestText {
            input: Some("Be brief.\nHi".into()),
            output: Some("Hello".into())
        }
    );
    let root = Span {
        attributes: vec![s("trace.input", "What is 2+2?"), s("trace.output", "4")],
        ..Default::default()
    };
    assert_eq!(
        request_text(&root),
        RequestText {
            input: Some("What is 2+2?".into()),
            output: Some("4".into())
        }
    );
    assert_eq!(request_text(&Span::default()), RequestText::default());
}
