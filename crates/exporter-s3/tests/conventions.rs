//! Every content convention Privacy Mode knows gives the trace file the same chat shape: a
//! generation span carrying the same tool call round trip in one convention produces the
//! exact `input.messages` and `output` (completion, tool calls, reasoning) expected, at the
//! trace level and on `observations[0]`, and each file validates against the JSON Schema.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{batch, check_schema, i, s, span};
use tokio::time::Instant;
use tracecast_core::proto::common::v1::KeyValue;
use tracecast_core::proto::trace::v1::span::Event;
use tracecast_core::proto::trace::v1::Span;
use tracecast_exporter_s3::assembly::{Assembler, AssemblyLimits};
use tracecast_exporter_s3::document;

/// The file of a trace made of a root span and `generation` under it.
fn file_of(root_attrs: Vec<KeyValue>, generation: Span) -> Value {
    let mut assembler = Assembler::new(AssemblyLimits {
        idle_timeout: Duration::from_secs(1),
        max_wait: Duration::from_secs(10),
        max_spans: 1000,
        max_bytes: u64::MAX,
    });
    let root = span(1, 1, None, "request", 0, root_attrs);
    let mut traces = Vec::new();
    assembler.ingest(
        &batch(vec![root, generation], None),
        Instant::now(),
        &mut traces,
    );
    assembler.take_all(&mut traces);
    assert_eq!(traces.len(), 1);
    let doc = document::build(&traces[0], None);
    check_schema(&serde_json::to_vec(&doc).unwrap())
}

fn generation(attrs: Vec<KeyValue>) -> Span {
    let mut all = vec![
        s("gen_ai.operation.name", "chat"),
        s("gen_ai.request.model", "gpt-4o"),
        i("gen_ai.usage.input_tokens", 40),
        i("gen_ai.usage.output_tokens", 12),
    ];
    all.extend(attrs);
    span(1, 2, Some(1), "chat gpt-4o", 10, all)
}

fn event(name: &str, attrs: Vec<KeyValue>) -> Event {
    Event {
        name: name.into(),
        time_unix_nano: (support::T0 * 1000 + 20) * 1_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

/// The round trip: system, user, an assistant tool call, the tool's answer.
fn round_trip() -> Value {
    json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "content": "18C, sunny", "tool_call_id": "call_1"}
    ])
}

/// Asserts the file's conversation and answer, at the trace level and on the generation.
fn assert_chat(doc: &Value, messages: &Value, output: &Value) {
    let g = &doc["observations"][0];
    assert_eq!(g["type"], "GENERATION", "{doc:#}");
    assert_eq!(&g["input"]["messages"], messages, "{doc:#}");
    assert_eq!(&g["output"], output, "{doc:#}");
    assert_eq!(&doc["input"]["messages"], messages);
    assert_eq!(&doc["output"], output);
    assert_eq!(doc["usage"]["totalTokens"], 52);
}

#[test]
fn otel_genai_current() {
    let doc = file_of(
        vec![],
        generation(vec![
            s(
                "gen_ai.system_instructions",
                r#"[{"type":"text","content":"Be brief."}]"#,
            ),
            s(
                "gen_ai.input.messages",
                r#"[{"role":"user","parts":[{"type":"text","content":"Weather in Paris?"}]},
                {"role":"assistant","parts":[{"type":"tool_call","id":"call_1","name":"get_weather","arguments":{"city":"Paris"}}]},
                {"role":"tool","parts":[{"type":"tool_call_response","id":"call_1","response":"18C, sunny"}]}]"#,
            ),
            s(
                "gen_ai.output.messages",
                r#"[{"role":"assistant","finish_reason":"stop","parts":[
                {"type":"reasoning","content":"Sunny means nice."},{"type":"text","content":"Sunny, 18C."}]}]"#,
            ),
        ]),
    );
    assert_chat(
        &doc,
        &round_trip(),
        &json!({"completion": "Sunny, 18C.", "reasoning": "Sunny means nice."}),
    );
    let g = &doc["observations"][0];
    assert_eq!(g["finishReason"], "stop");
    assert_eq!(g["normalizedFinishReason"], "stop");
}

#[test]
fn otel_genai_deprecated_attributes() {
    let doc = file_of(
        vec![],
        generation(vec![
            s(
                "gen_ai.prompt",
                r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"Weather in Paris?"},
                {"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"18C, sunny"}]"#,
            ),
            s(
                "gen_ai.completion",
                r#"[{"role":"assistant","content":"Sunny, 18C."}]"#,
            ),
        ]),
    );
    assert_chat(&doc, &round_trip(), &json!({"completion": "Sunny, 18C."}));
}

#[test]
fn otel_genai_deprecated_events() {
    let mut g = generation(vec![]);
    g.events = vec![
        event("gen_ai.system.message", vec![s("content", "Be brief.")]),
        event(
            "gen_ai.user.message",
            vec![s("content", "Weather in Paris?")],
        ),
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
                s("finish_reason", "tool_calls"),
                s(
                    "message",
                    r#"{"role":"assistant","tool_calls":[{"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]}"#,
                ),
            ],
        ),
    ];
    let doc = file_of(vec![], g);
    assert_chat(
        &doc,
        &round_trip(),
        &json!({"completion": "", "toolCalls": [{"id": "call_2", "type": "function",
            "function": {"name": "get_time", "arguments": "{}"}}]}),
    );
    let obs = &doc["observations"][0];
    assert_eq!(obs["finishReason"], "tool_calls");
    assert_eq!(obs["normalizedFinishReason"], "tool_calls");
    assert_eq!(
        doc["observations"].as_array().unwrap().len(),
        2 + 5,
        "one observation per span event, message events too"
    );
}

#[test]
fn openllmetry_indexed() {
    let doc = file_of(
        vec![],
        generation(vec![
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
            s("gen_ai.prompt.3.tool_call_id", "call_1"),
            s("gen_ai.prompt.3.content", "18C, sunny"),
            s("gen_ai.completion.0.role", "assistant"),
            s("gen_ai.completion.0.content", "Sunny, 18C."),
            s("gen_ai.completion.0.finish_reason", "stop"),
        ]),
    );
    assert_chat(&doc, &round_trip(), &json!({"completion": "Sunny, 18C."}));
    let g = &doc["observations"][0];
    assert_eq!(g["normalizedFinishReason"], "stop");
    assert!(
        g["attributes"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("gen_ai.prompt.") && !k.starts_with("gen_ai.completion.")),
        "{}",
        g["attributes"]
    );
}

#[test]
fn openinference_indexed() {
    let doc = file_of(
        vec![],
        generation(vec![
            s("llm.input_messages.0.message.role", "system"),
            s("llm.input_messages.0.message.content", "Be brief."),
            s("llm.input_messages.1.message.role", "user"),
            s("llm.input_messages.1.message.content", "Weather in Paris?"),
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
            s("llm.input_messages.3.message.tool_call_id", "call_1"),
            s("llm.input_messages.3.message.content", "18C, sunny"),
            s("llm.output_messages.0.message.role", "assistant"),
            s("llm.output_messages.0.message.content", "Sunny, 18C."),
        ]),
    );
    assert_chat(&doc, &round_trip(), &json!({"completion": "Sunny, 18C."}));
}

#[test]
fn vercel_ai_sdk() {
    let doc = file_of(
        vec![],
        generation(vec![
            s(
                "ai.prompt.messages",
                r#"[{"role":"system","content":"Be brief."},
                {"role":"user","content":[{"type":"text","text":"Weather in Paris?"}]},
                {"role":"assistant","content":[{"type":"tool-call","toolCallId":"call_1","toolName":"get_weather","args":{"city":"Paris"}}]},
                {"role":"tool","content":[{"type":"tool-result","toolCallId":"call_1","result":"18C, sunny"}]}]"#,
            ),
            s("ai.response.text", "Sunny, 18C."),
            s("ai.response.reasoning", "Sunny means nice."),
            s("ai.response.finishReason", "stop"),
        ]),
    );
    assert_chat(
        &doc,
        &round_trip(),
        &json!({"completion": "Sunny, 18C.", "reasoning": "Sunny means nice."}),
    );
    assert_eq!(doc["observations"][0]["finishReason"], "stop");
}

#[test]
fn gateway_and_langfuse_generic_keys() {
    let messages = round_trip().to_string();
    let doc = file_of(
        vec![],
        generation(vec![
            s("span.input", &messages),
            s(
                "span.output",
                r#"[{"role":"assistant","content":"Sunny, 18C."}]"#,
            ),
        ]),
    );
    assert_chat(&doc, &round_trip(), &json!({"completion": "Sunny, 18C."}));
    let doc = file_of(
        vec![],
        generation(vec![
            s(
                "langfuse.observation.input",
                &json!({"messages": round_trip()}).to_string(),
            ),
            s(
                "langfuse.observation.output",
                r#"{"completion":"Sunny, 18C."}"#,
            ),
        ]),
    );
    assert_chat(&doc, &round_trip(), &json!({"completion": "Sunny, 18C."}));
}

#[test]
fn the_gateways_trace_input_on_the_root_and_content_of_no_chat_shape() {
    // `trace.input` / `trace.output` (plain strings) on the root are the request's.
    let doc = file_of(
        vec![
            s("trace.input", "Weather in Paris?"),
            s("trace.output", "Sunny, 18C."),
        ],
        generation(vec![s("input.value", r#"{"query":"paris weather"}"#)]),
    );
    assert_eq!(
        doc["input"],
        json!({"messages": [{"role": "user", "content": "Weather in Paris?"}]})
    );
    assert_eq!(doc["output"], json!({"completion": "Sunny, 18C."}));
    // Content of no chat shape is kept as it came.
    assert_eq!(
        doc["observations"][0]["input"],
        json!({"query": "paris weather"})
    );
}

#[test]
fn without_content_input_and_output_are_absent_and_counts_stay() {
    // What Privacy Mode leaves: roles and ids only.
    let doc = file_of(
        vec![s("tracecast.privacy.redacted_count", "1")],
        generation(vec![
            s("gen_ai.prompt.0.role", "user"),
            s("gen_ai.completion.0.role", "assistant"),
            s("gen_ai.completion.0.finish_reason", "length"),
        ]),
    );
    assert!(doc.get("input").is_none() && doc.get("output").is_none());
    let g = &doc["observations"][0];
    assert!(g.get("input").is_none() && g.get("output").is_none());
    assert_eq!(g["promptTokens"], 40);
    assert_eq!(g["finishReason"], "length", "finish reasons are no content");
    assert_eq!(g["normalizedFinishReason"], "length");
    assert_eq!(doc["usage"]["totalTokens"], 52);
}

#[test]
fn time_to_first_token_and_an_errored_generation() {
    use tracecast_core::proto::trace::v1::{status::StatusCode, Status};
    let mut g = generation(vec![
        support::d("gen_ai.response.time_to_first_token", 0.25),
        s(
            "gen_ai.output.messages",
            r#"[{"role":"assistant","content":"partial"}]"#,
        ),
    ]);
    g.status = Some(Status {
        code: StatusCode::Error as i32,
        message: "upstream timeout".into(),
    });
    let doc = file_of(vec![], g);
    let g = &doc["observations"][0];
    // The span starts 10 ms after T0 (09:40:00Z); the first token 250 ms later.
    assert_eq!(g["startTime"], "2024-01-15T09:40:00.01Z");
    assert_eq!(g["completionStartTime"], "2024-01-15T09:40:00.26Z");
    assert_eq!(g["level"], "ERROR");
    assert_eq!(g["statusMessage"], "upstream timeout");
    assert!(g.get("finishReason").is_none());
    assert_eq!(
        g["normalizedFinishReason"], "error",
        "an errored generation"
    );
}
