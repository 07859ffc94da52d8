//! Trace files in the gateway's own shape, end to end through the real `tracecast` binary:
//!
//! - a gateway-like trace sent by the OpenTelemetry Python SDK (SERVER root + generation,
//!   the request's `trace` field flattened into `trace.*` attributes, cached and reasoning
//!   token counts, costs and unit prices, a tool call round trip) lands in the local folder
//!   and on the in-process S3 server as the same file, read field by field as a reader of the
//!   gateway's files reads it (`observations[0]` the generation, `input.messages`,
//!   `output.completion`, `metadata`, `name`); a Privacy Mode pipeline writes the same shape
//!   without `input`/`output`;
//! - the `trace` field sent as an OTLP map, a JSON string or flattened gives byte-identical
//!   files and identical OTLP output;
//! - DuckDB (what Athena users run locally) queries a folder of files written by the binary:
//!   per-user cost and tokens, per-model counts and the first user message equal what was sent.
//!
//! Every file is validated against docs/trace-file.schema.json.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use prost::Message;
use serde_json::{json, Value};
use tracecast_core::proto::common::v1::KeyValue;
use tracecast_core::proto::trace::v1::{span, status, Span, Status};
use tracecast_core::ExportTraceServiceRequest;
use tracecast_tests::fixtures::{attr_f64, attr_int, attr_map, attr_str, request_from_spans};
use tracecast_tests::{
    free_port, local, python, repo_root, Daemon, Exporter, RecordingOtlpServer, S3TestServer,
    TestConfig,
};

const AK: &str = "shape-access-key";
const SK: &str = "shape-secret-key";

/// The request's conversation, in the OTel GenAI current format the gateway-like trace uses.
const SYSTEM: &str = r#"[{"type":"text","content":"You are a weather assistant."}]"#;
const INPUT_MESSAGES: &str = r#"[
  {"role":"user","parts":[{"type":"text","content":"What is the weather in Paris?"}]},
  {"role":"assistant","parts":[{"type":"tool_call","id":"call_abc","name":"get_weather","arguments":{"city":"Paris"}}]},
  {"role":"tool","parts":[{"type":"tool_call_response","id":"call_abc","response":{"temp_c":18,"sky":"sunny"}}]}
]"#;
const OUTPUT_MESSAGES: &str = r#"[{"role":"assistant","finish_reason":"stop","parts":[
  {"type":"reasoning","content":"The tool says 18C and sunny."},
  {"type":"text","content":"It is 18°C and sunny in Paris."}]}]"#;

/// The `input.messages` a reader must see: every message with its role.
fn expected_messages() -> Value {
    json!([
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "call_abc", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "{\"sky\":\"sunny\",\"temp_c\":18}"}
    ])
}

/// The request's `trace` field (the gateway example plus a number).
fn trace_field() -> Value {
    json!({"trace_id": "app_trace_001", "trace_name": "Chat Handler",
           "generation_name": "Generate Response", "environment": "staging",
           "deployment": "us-east-1", "retries": 2})
}

/// Attributes of the generation span (as JSON: the Python plan and the Rust requests).
fn generation_attributes() -> Value {
    json!({
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "openai/gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.request.temperature": 0.7,
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 45,
        "gen_ai.usage.cache_read.input_tokens": 64,
        "gen_ai.usage.output_tokens_details.reasoning_tokens": 20,
        "gen_ai.usage.input_cost": 0.0003,
        "gen_ai.usage.output_cost": 0.00045,
        "gen_ai.usage.cost": 0.00075,
        "gen_ai.usage.input_unit_price": 0.0000025,
        "gen_ai.usage.output_unit_price": 0.00001,
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.response.time_to_first_token": 0.25,
        "gen_ai.system_instructions": SYSTEM,
        "gen_ai.input.messages": INPUT_MESSAGES,
        "gen_ai.output.messages": OUTPUT_MESSAGES,
    })
}

/// Root span attributes with the `trace` field flattened (what the Python SDK can send).
fn root_attributes_flattened(user: &str, session: &str, trace: &Value) -> Value {
    let mut attrs = json!({"http.request.method": "POST", "user": user, "session_id": session});
    for (k, v) in trace.as_object().unwrap() {
        attrs[format!("trace.{k}")] = v.clone();
    }
    attrs
}

/// Parses a trace file and validates it against docs/trace-file.schema.json.
fn schema_checked(bytes: &[u8]) -> Value {
    let schema: Value =
        serde_json::from_str(include_str!("../docs/trace-file.schema.json")).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let doc: Value = serde_json::from_slice(bytes).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "schema errors: {errors:?}\nin {doc:#}");
    doc
}

/// Trace files under `dir` (the connection-test probe excluded), sorted.
fn trace_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with(".tracecast") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Waits until `dir` holds `n` trace files.
async fn wait_for_files(dir: &Path, n: usize, daemon: &Daemon) -> Vec<PathBuf> {
    for _ in 0..400 {
        let files = trace_files(dir);
        if files.len() >= n {
            return files;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} trace files in {} after 20s: {:?}\n{}",
        dir.display(),
        trace_files(dir),
        daemon.log_text()
    );
}

async fn wait_for_objects(s3: &S3TestServer, bucket: &str, n: usize) -> Vec<String> {
    for _ in 0..400 {
        let keys: Vec<String> = s3
            .list_keys(bucket)
            .into_iter()
            .filter(|k| !k.contains("/.tracecast/"))
            .collect();
        if keys.len() >= n {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} objects in {bucket}: {:?}",
        s3.list_keys(bucket)
    );
}

/// A file:// trace-file exporter writing under `dir`.
fn local_exporter(id: &str, dir: &Path, dead_letters: &Path) -> Exporter {
    Exporter::s3_url(id, format!("file://{}", dir.display()))
        .trace_idle_timeout("300ms")
        .dead_letter_dir(dead_letters.join(id.replace('/', "_")))
}

/// Runs the Python SDK sender with `plan` against the daemon's receiver.
async fn python_send(port: u16, plan: &Value, dir: &Path) {
    let plan_path = dir.join("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(plan).unwrap()).unwrap();
    let script = repo_root().join("tests/python/send_llm_traces.py");
    let url = format!("http://127.0.0.1:{port}/v1/traces");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg(url)
            .arg(plan_path)
            .output()
            .expect("run the Python sender")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "Python sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn generation_plan(name: &str, attributes: Value) -> Value {
    json!({"name": name, "attributes": attributes})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_trace_from_the_python_sdk_reads_like_the_gateways_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket("traces");
    let (local_dir, private_dir, dl) = (
        dir.path().join("local"),
        dir.path().join("private"),
        dir.path().join("dead-letter"),
    );
    let (port, admin) = (free_port(), free_port());
    let yaml = TestConfig::new(port)
        .processor("metadata")
        .processor("privacy")
        .exporter(local_exporter("s3/local", &local_dir, &dl))
        .exporter(
            Exporter::s3("s3/bucket", "traces", s3.endpoint(), AK, SK)
                .trace_idle_timeout("300ms")
                .dead_letter_dir(dl.join("bucket")),
        )
        .exporter(local_exporter("s3/private", &private_dir, &dl))
        .pipeline("traces", &["metadata"], &["s3/local", "s3/bucket"])
        .pipeline("traces/private", &["metadata", "privacy"], &["s3/private"])
        .queue_dir(dir.path().join("queue"))
        .admin_port(admin)
        .yaml();
    let daemon = Daemon::run_config(dir.path(), "shape", &yaml, &[], local(port));

    let plan = json!({"traces": [{
        "root": {"name": "POST /api/v1/chat/completions",
                 "attributes": root_attributes_flattened("user_12345", "session_abc", &trace_field())},
        "generation": generation_plan("chat openai/gpt-4o", generation_attributes()),
    }]});
    python_send(port, &plan, dir.path()).await;

    let local_files = wait_for_files(&local_dir, 1, &daemon).await;
    let keys = wait_for_objects(&s3, "traces", 1).await;
    let private_files = wait_for_files(&private_dir, 1, &daemon).await;
    assert_eq!(local_files.len(), 1);
    assert!(local_files[0]
        .to_string_lossy()
        .contains("/openrouter-traces/"));
    assert!(keys[0].starts_with("openrouter-traces/") && keys[0].contains("/app_trace_001-"));
    let doc = schema_checked(&std::fs::read(&local_files[0]).unwrap());
    let from_s3 = schema_checked(&std::fs::read(s3.object_path("traces", &keys[0])).unwrap());
    assert_eq!(doc, from_s3, "the local folder and S3 get the same file");

    // The trace, as a reader of the gateway's files reads it.
    assert_eq!(doc["id"], "app_trace_001");
    assert_eq!(doc["name"], "Chat Handler", "trace_name names the trace");
    assert_eq!(doc["userId"], "user_12345");
    assert_eq!(doc["sessionId"], "session_abc");
    assert_eq!(
        doc["metadata"],
        json!({"environment": "staging", "deployment": "us-east-1", "retries": 2})
    );
    assert_eq!(doc["input"], json!({"messages": expected_messages()}));
    assert_eq!(
        doc["output"],
        json!({"completion": "It is 18°C and sunny in Paris.",
               "reasoning": "The tool says 18C and sunny."})
    );
    assert_eq!(
        doc["usage"],
        json!({"promptTokens": 120, "completionTokens": 45, "totalTokens": 165,
               "totalCost": 0.00075})
    );

    // observations[0] is the request's generation, with every gateway field.
    let obs = doc["observations"].as_array().unwrap();
    assert_eq!(obs.len(), 2);
    let g = &obs[0];
    assert_eq!(g["type"], "GENERATION");
    assert_eq!(g["name"], "Generate Response");
    assert_eq!(g["model"], "gpt-4o-2024-08-06");
    // The requested model stays beside the parameters (the response model is `model`).
    assert_eq!(
        g["modelParameters"],
        json!({"model": "openai/gpt-4o", "temperature": 0.7})
    );
    assert_eq!(g["providerName"], "openai");
    assert_eq!(
        (
            &g["promptTokens"],
            &g["completionTokens"],
            &g["totalTokens"]
        ),
        (&json!(120), &json!(45), &json!(165))
    );
    assert_eq!(g["promptTokensDetails"], json!({"cachedTokens": 64}));
    assert_eq!(g["completionTokensDetails"], json!({"reasoningTokens": 20}));
    assert_eq!(
        (&g["inputCost"], &g["outputCost"], &g["totalCost"]),
        (&json!(0.0003), &json!(0.00045), &json!(0.00075))
    );
    assert_eq!(
        (&g["inputUnitPrice"], &g["outputUnitPrice"]),
        (&json!(0.0000025), &json!(0.00001))
    );
    assert_eq!(g["finishReason"], "stop");
    assert_eq!(g["normalizedFinishReason"], "stop");
    assert_eq!(g["level"], "DEFAULT");
    assert_eq!(g["spanKind"], "CLIENT");
    assert_eq!(g["input"], doc["input"]);
    assert_eq!(g["output"], doc["output"]);
    assert_eq!(g["metadata"]["environment"], "staging");
    let (start, first_token) = (
        g["startTime"].as_str().unwrap(),
        g["completionStartTime"].as_str().unwrap(),
    );
    assert_eq!(start[..10], first_token[..10], "{start} / {first_token}");
    assert_ne!(start, first_token);
    let root = &obs[1];
    assert_eq!(
        (&root["type"], &root["name"], &root["spanKind"]),
        (&json!("SPAN"), &json!("Chat Handler"), &json!("SERVER"))
    );
    assert_eq!(g["parentObservationId"], root["id"]);
    for key in [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
    ] {
        assert!(
            g["attributes"].get(key).is_none(),
            "{key} is the input/output"
        );
    }
    assert!(
        root["attributes"]
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("trace.")),
        "flattened trace fields consumed: {}",
        root["attributes"]
    );

    // Privacy Mode: the same shape without input/output, every count, cost and name kept.
    let private = schema_checked(&std::fs::read(&private_files[0]).unwrap());
    let expected = doc.clone();
    let without_content = |mut d: Value| {
        let o = d.as_object_mut().unwrap();
        o.remove("input");
        o.remove("output");
        for ob in o["observations"].as_array_mut().unwrap() {
            let ob = ob.as_object_mut().unwrap();
            ob.remove("input");
            ob.remove("output");
            ob["attributes"]
                .as_object_mut()
                .unwrap()
                .remove("tracecast.privacy.redacted_count");
        }
        d
    };
    assert!(private.get("input").is_none() && private.get("output").is_none());
    assert!(private["observations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o.get("input").is_none() && o.get("output").is_none()));
    assert_eq!(
        private["observations"][0]["attributes"]["tracecast.privacy.redacted_count"],
        3
    );
    assert_eq!(without_content(private), without_content(expected));

    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

/// A JSON value as an OTLP attribute value (objects as maps, the `trace` map form).
fn any_value(v: &Value) -> tracecast_core::proto::common::v1::AnyValue {
    use tracecast_core::proto::common::v1::any_value::Value as Av;
    use tracecast_core::proto::common::v1::{AnyValue, ArrayValue, KeyValueList};
    let value = match v {
        Value::Bool(b) => Av::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Av::IntValue(i),
            None => Av::DoubleValue(n.as_f64().unwrap()),
        },
        Value::String(s) => Av::StringValue(s.clone()),
        Value::Array(items) => Av::ArrayValue(ArrayValue {
            values: items.iter().map(any_value).collect(),
        }),
        Value::Object(map) => Av::KvlistValue(KeyValueList {
            values: map.iter().map(|(k, v)| kv(k, v)).collect(),
        }),
        Value::Null => return AnyValue { value: None },
    };
    AnyValue { value: Some(value) }
}

fn kv(key: &str, v: &Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(any_value(v)),
        ..Default::default()
    }
}

/// The gateway-like trace with fixed ids and times, the `trace` field in the given form.
fn gateway_request(trace_form: &str, start: u64) -> ExportTraceServiceRequest {
    let mut root_attrs = vec![
        attr_str("http.request.method", "POST"),
        attr_int("http.response.status_code", 200),
        attr_str("user", "user_12345"),
        attr_str("session_id", "session_abc"),
    ];
    match trace_form {
        "map" => root_attrs.push(attr_map(
            "trace",
            trace_field()
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| kv(k, v))
                .collect(),
        )),
        "json" => root_attrs.push(attr_str("trace", &trace_field().to_string())),
        _ => root_attrs.extend(
            trace_field()
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| kv(&format!("trace.{k}"), v)),
        ),
    }
    let ok = Some(Status {
        code: status::StatusCode::Ok as i32,
        message: String::new(),
    });
    let root = Span {
        trace_id: vec![0x5a; 16],
        span_id: vec![0x01; 8],
        name: "POST /api/v1/chat/completions".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 900_000_000,
        attributes: root_attrs,
        status: ok.clone(),
        ..Default::default()
    };
    let generation = Span {
        trace_id: vec![0x5a; 16],
        span_id: vec![0x02; 8],
        parent_span_id: vec![0x01; 8],
        name: "chat openai/gpt-4o".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start + 50_000_000,
        end_time_unix_nano: start + 850_000_000,
        attributes: generation_attributes()
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| kv(k, v))
            .chain([attr_f64("gen_ai.request.top_p", 0.9)])
            .collect(),
        status: ok,
        ..Default::default()
    };
    request_from_spans(vec![root, generation])
}

/// One daemon per form: the file's name and bytes, and the spans the OTLP backend got.
async fn send_one_form(form: &str, start: u64) -> (String, Vec<u8>, Vec<Span>) {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let out = dir.path().join("out");
    let (port, admin) = (free_port(), free_port());
    let yaml = TestConfig::new(port)
        .processor("metadata")
        .exporter(local_exporter("s3", &out, &dir.path().join("dl")))
        .exporter(
            Exporter::otlp("otlp/backend", backend.endpoint())
                .protobuf()
                .compression("none")
                .dead_letter_dir(dir.path().join("dl/otlp")),
        )
        .queue_dir(dir.path().join("queue"))
        .admin_port(admin)
        .yaml();
    let daemon = Daemon::run_config(dir.path(), form, &yaml, &[], local(port));
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(gateway_request(form, start).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let files = wait_for_files(&out, 1, &daemon).await;
    let mut spans = backend.wait_for_spans(2, Duration::from_secs(20)).await;
    spans.sort_by(|a, b| a.span_id.cmp(&b.span_id));
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    let name = files[0].strip_prefix(&out).unwrap().display().to_string();
    let bytes = std::fs::read(&files[0]).unwrap();
    schema_checked(&bytes);
    (name, bytes, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_field_as_map_json_string_or_flattened_gives_identical_files_and_otlp() {
    let start = tracecast_tests::fixtures::now_unix_nanos() - 2_000_000_000;
    let map = send_one_form("map", start).await;
    let json_string = send_one_form("json", start).await;
    let flattened = send_one_form("flattened", start).await;
    assert!(map.0.contains("app_trace_001-"), "{}", map.0);
    for (form, other) in [("JSON string", &json_string), ("flattened", &flattened)] {
        assert_eq!(other.0, map.0, "{form}: file name");
        assert_eq!(
            String::from_utf8_lossy(&other.1),
            String::from_utf8_lossy(&map.1),
            "{form}: file bytes"
        );
        assert_eq!(other.2, map.2, "{form}: OTLP output");
    }
    let doc: Value = serde_json::from_slice(&map.1).unwrap();
    assert_eq!(doc["name"], "Chat Handler");
    assert_eq!(doc["metadata"]["retries"], 2);
    let root = map.2.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    assert_eq!(root.name, "Chat Handler");
    assert!(root
        .attributes
        .iter()
        .any(|kv| kv.key == "trace.metadata.environment"));
}

/// (trace id, user, model, prompt tokens, completion tokens, cost, first user message, the
/// generation's content attributes in one convention).
type Sent = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    i64,
    f64,
    &'static str,
    Value,
);

fn duckdb_traces() -> Vec<Sent> {
    vec![
        (
            "duck-1",
            "alice",
            "openai/gpt-4o",
            100,
            20,
            0.0012,
            "alice asks first",
            json!({"gen_ai.input.messages":
            r#"[{"role":"user","parts":[{"type":"text","content":"alice asks first"}]}]"#}),
        ),
        (
            "duck-2",
            "alice",
            "openai/gpt-4o",
            50,
            10,
            0.0006,
            "alice asks again",
            json!({"gen_ai.prompt":
            r#"[{"role":"system","content":"Be brief."},{"role":"user","content":"alice asks again"}]"#}),
        ),
        (
            "duck-3",
            "bob",
            "anthropic/claude-sonnet-4",
            300,
            40,
            0.0051,
            "bob asks (OpenLLMetry)",
            json!({"gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Be brief.",
                "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "bob asks (OpenLLMetry)"}),
        ),
        (
            "duck-4",
            "bob",
            "openai/gpt-4o",
            70,
            7,
            0.0009,
            "bob asks (OpenInference)",
            json!({"llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "bob asks (OpenInference)"}),
        ),
        (
            "duck-5",
            "carol",
            "anthropic/claude-sonnet-4",
            10,
            90,
            0.0033,
            "carol asks (Vercel)",
            json!({"ai.prompt.messages":
            r#"[{"role":"user","content":[{"type":"text","text":"carol asks (Vercel)"}]}]"#}),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_a_folder_of_files_written_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bucket");
    let (port, admin) = (free_port(), free_port());
    let yaml = TestConfig::new(port)
        .processor("metadata")
        .exporter(local_exporter("s3", &out, &dir.path().join("dl")))
        .queue_dir(dir.path().join("queue"))
        .admin_port(admin)
        .yaml();
    let daemon = Daemon::run_config(dir.path(), "duckdb", &yaml, &[], local(port));
    let sent = duckdb_traces();
    let traces: Vec<Value> = sent
        .iter()
        .map(|(id, user, model, prompt, completion, cost, _, content)| {
            let mut attrs = json!({
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": prompt,
                "gen_ai.usage.output_tokens": completion,
                "gen_ai.usage.cost": cost,
                "gen_ai.output.messages":
                    r#"[{"role":"assistant","parts":[{"type":"text","content":"ok"}]}]"#,
            });
            for (k, v) in content.as_object().unwrap() {
                attrs[k] = v.clone();
            }
            json!({
                "root": {"name": "POST /api/v1/chat/completions", "attributes":
                    root_attributes_flattened(user, &format!("s-{id}"),
                        &json!({"trace_id": id, "trace_name": "Chat", "team": "core"}))},
                "generation": generation_plan("chat", attrs),
            })
        })
        .collect();
    python_send(port, &json!({"traces": traces}), dir.path()).await;
    let files = wait_for_files(&out, sent.len(), &daemon).await;
    assert_eq!(files.len(), sent.len());
    for f in &files {
        schema_checked(&std::fs::read(f).unwrap());
    }
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    let script = repo_root().join("tests/python/query_trace_files.py");
    let folder = out.join("openrouter-traces");
    let result = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg(folder)
            .output()
            .expect("run the DuckDB query")
    })
    .await
    .unwrap();
    assert!(
        result.status.success(),
        "DuckDB query failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let answers: Value = serde_json::from_slice(&result.stdout).unwrap();

    // Per user: requests, tokens and cost, as sent.
    let mut users: Vec<&str> = sent.iter().map(|s| s.1).collect();
    users.dedup();
    let per_user = answers["per_user"].as_array().unwrap();
    assert_eq!(per_user.len(), users.len(), "{answers:#}");
    for (row, user) in per_user.iter().zip(&users) {
        let mine: Vec<&Sent> = sent.iter().filter(|s| s.1 == *user).collect();
        let prompt: i64 = mine.iter().map(|s| s.3).sum();
        let completion: i64 = mine.iter().map(|s| s.4).sum();
        let cost: f64 = mine.iter().map(|s| s.5).sum();
        assert_eq!(row["user"], *user);
        assert_eq!(row["requests"], mine.len());
        assert_eq!(row["prompt_tokens"], prompt, "{user}");
        assert_eq!(row["completion_tokens"], completion, "{user}");
        assert_eq!(row["total_tokens"], prompt + completion, "{user}");
        let got = row["cost"].as_f64().unwrap();
        assert!((got - cost).abs() < 1e-9, "{user}: cost {got} != {cost}");
    }
    // Per model, from observations[0] (SQL's [1]): the generation.
    assert_eq!(
        answers["per_model"],
        json!([{"model": "anthropic/claude-sonnet-4", "requests": 2},
               {"model": "openai/gpt-4o", "requests": 3}])
    );
    // The first user message of each request, whatever convention carried it.
    let expected: serde_json::Map<String, Value> =
        sent.iter().map(|s| (s.0.to_string(), json!(s.6))).collect();
    assert_eq!(answers["first_user_message"], Value::Object(expected));
}
