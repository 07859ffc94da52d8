//! End to end fan-out with Privacy Mode: one receiver feeds two pipelines,
//! `traces/full` (metadata -> otlp/full) and `traces/private` (metadata, privacy ->
//! otlp/private and s3/private). One request carries prompt/completion content in every
//! common convention; the private backend's raw request bodies and the private S3 file
//! contain none of it, the full backend gets all of it, and token counts, model, cost and
//! metadata survive everywhere.

use std::time::Duration;

use prost::Message;
use serde_json::Value;
use tracecast::Service;
use tracecast_core::proto::common::v1::any_value::Value as Av;
use tracecast_core::proto::trace::v1::span::Event;
use tracecast_core::proto::trace::v1::Span;
use tracecast_core::ExportTraceServiceRequest;
use tracecast_processors::privacy::REDACTED_COUNT_ATTRIBUTE;
use tracecast_tests::fixtures::{attr_str, gateway_request, now_unix_nanos};
use tracecast_tests::{Exporter, RecordingOtlpServer, S3TestServer, TestConfig};

const AK: &str = "fanout-access-key";
const SK: &str = "fanout-secret-key";

/// (attribute or event, content string): one per convention Privacy Mode must know.
const CONTENT: &[(&str, &str)] = &[
    ("gen_ai.prompt", "CONTENT-OTEL-DEPRECATED-PROMPT"),
    ("gen_ai.completion", "CONTENT-OTEL-DEPRECATED-COMPLETION"),
    ("gen_ai.input.messages", "CONTENT-OTEL-INPUT-MESSAGES"),
    ("input.value", "CONTENT-OPENINFERENCE-INPUT"),
    ("ai.prompt", "CONTENT-VERCEL-AI-PROMPT"),
    ("langfuse.observation.input", "CONTENT-LANGFUSE-INPUT"),
    ("trace.input", "CONTENT-GATEWAY-TRACE-INPUT"),
    (
        "event gen_ai.user.message",
        "CONTENT-OTEL-USER-MESSAGE-EVENT",
    ),
];

fn content(key: &str) -> &'static str {
    CONTENT.iter().find(|(k, _)| *k == key).unwrap().1
}

/// The gateway request with content in every convention above (replacing the fixture's own
/// prompt and completion).
fn request() -> ExportTraceServiceRequest {
    let mut req = gateway_request();
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[0]
        .attributes
        .push(attr_str("trace.input", content("trace.input")));
    let generation = &mut spans[1];
    generation
        .attributes
        .retain(|kv| kv.key != "gen_ai.prompt" && kv.key != "gen_ai.completion");
    let json = |role: &str, text: &str| format!(r#"[{{"role":"{role}","content":"{text}"}}]"#);
    generation.attributes.extend([
        attr_str("gen_ai.prompt", &json("user", content("gen_ai.prompt"))),
        attr_str(
            "gen_ai.completion",
            &json("assistant", content("gen_ai.completion")),
        ),
        attr_str(
            "gen_ai.input.messages",
            &format!(
                r#"[{{"role":"user","parts":[{{"type":"text","content":"{}"}}]}}]"#,
                content("gen_ai.input.messages")
            ),
        ),
        attr_str("input.value", content("input.value")),
        attr_str(
            "ai.prompt",
            &format!(r#"{{"prompt":"{}"}}"#, content("ai.prompt")),
        ),
        attr_str(
            "langfuse.observation.input",
            content("langfuse.observation.input"),
        ),
    ]);
    generation.events.push(Event {
        time_unix_nano: now_unix_nanos(),
        name: "gen_ai.user.message".into(),
        attributes: vec![attr_str("content", content("event gen_ai.user.message"))],
        ..Default::default()
    });
    req
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Av> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Token counts, model, cost and metadata, as the processors must leave them.
fn assert_kept(spans: &[Span], label: &str) {
    let generation = spans
        .iter()
        .find(|s| s.name == "Generate Response")
        .unwrap_or_else(|| panic!("{label}: no generation span"));
    assert_eq!(
        attr(generation, "gen_ai.usage.input_tokens"),
        Some(&Av::IntValue(12)),
        "{label}"
    );
    assert_eq!(
        attr(generation, "gen_ai.usage.output_tokens"),
        Some(&Av::IntValue(9)),
        "{label}"
    );
    assert_eq!(
        attr(generation, "gen_ai.request.model"),
        Some(&Av::StringValue("openai/gpt-4o".into())),
        "{label}"
    );
    assert_eq!(
        attr(generation, "gen_ai.usage.cost"),
        Some(&Av::DoubleValue(0.000_12)),
        "{label}"
    );
    for s in spans {
        assert_eq!(
            attr(s, "trace.metadata.environment"),
            Some(&Av::StringValue("staging".into())),
            "{label}: {}",
            s.name
        );
        assert_eq!(
            attr(s, "user.id"),
            Some(&Av::StringValue("user_12345".into())),
            "{label}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_destinations_never_see_content_and_the_full_one_sees_all() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket("private");
    let full = RecordingOtlpServer::start().await;
    let private = RecordingOtlpServer::start().await;
    let dl = dir.path().join("dead-letter");
    let yaml = TestConfig::new(0)
        .processor("metadata")
        .processor("privacy")
        .exporter(
            Exporter::otlp("otlp/full", full.endpoint())
                .encoding("json")
                .compression("none")
                .dead_letter_dir(dl.join("full")),
        )
        .exporter(
            Exporter::otlp("otlp/private", private.endpoint())
                .protobuf()
                .compression("none")
                .dead_letter_dir(dl.join("private")),
        )
        .exporter(
            Exporter::s3("s3/private", "private", s3.endpoint(), AK, SK)
                .trace_idle_timeout("300ms")
                .dead_letter_dir(dl.join("s3")),
        )
        .queue_dir(dir.path().join("queue"))
        .pipeline("traces/full", &["metadata"], &["otlp/full"])
        .pipeline(
            "traces/private",
            &["metadata", "privacy"],
            &["otlp/private", "s3/private"],
        )
        .yaml();
    let config = tracecast::load_config_str("fanout.yaml", &yaml).expect("valid config");
    let service = Service::start(&config).await.expect("service starts");
    let addr = service.receiver_addr("otlp").unwrap();
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request().encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    let full_spans = full.wait_for_spans(2, Duration::from_secs(10)).await;
    let private_spans = private.wait_for_spans(2, Duration::from_secs(10)).await;
    let mut s3_keys = Vec::new();
    for _ in 0..200 {
        s3_keys = s3.list_keys("private");
        if !s3_keys.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s3_keys.len(), 1, "one trace file");
    let file = std::fs::read(s3.object_path("private", &s3_keys[0])).unwrap();
    assert!(service.shutdown().await);

    let full_bodies: Vec<u8> = full
        .requests()
        .iter()
        .flat_map(|r| r.body.to_vec())
        .collect();
    let private_bodies: Vec<u8> = private
        .requests()
        .iter()
        .flat_map(|r| r.body.to_vec())
        .collect();
    for (convention, text) in CONTENT {
        assert!(
            contains(&full_bodies, text),
            "full pipeline lost {convention}"
        );
        assert!(
            !contains(&private_bodies, text),
            "private OTLP backend saw {convention}"
        );
        assert!(!contains(&file, text), "private S3 file holds {convention}");
    }
    // The fixture's model name is not content: it is in every output.
    assert!(contains(&private_bodies, "openai/gpt-4o"));

    assert_kept(&full_spans, "full");
    assert_kept(&private_spans, "private");
    let redacted = private_spans
        .iter()
        .find(|s| s.name == "Generate Response")
        .and_then(|s| attr(s, REDACTED_COUNT_ATTRIBUTE));
    assert!(
        matches!(redacted, Some(Av::IntValue(n)) if *n >= 7),
        "redaction marker: {redacted:?}"
    );
    assert!(full_spans
        .iter()
        .all(|s| attr(s, REDACTED_COUNT_ATTRIBUTE).is_none()));
    let full_gen = full_spans
        .iter()
        .find(|s| s.name == "Generate Response")
        .unwrap();
    assert_eq!(
        full_gen.events.len(),
        1,
        "the full pipeline keeps the event"
    );

    // The private trace file: no input/output, everything else kept.
    let doc: Value = serde_json::from_slice(&file).unwrap();
    assert!(doc.get("input").is_none() && doc.get("output").is_none());
    assert_eq!(doc["id"], "app_trace_001");
    assert_eq!(doc["metadata"]["environment"], "staging");
    assert_eq!(doc["userId"], "user_12345");
    let generation = doc["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "GENERATION")
        .unwrap();
    assert!(generation.get("input").is_none() && generation.get("output").is_none());
    assert_eq!(generation["promptTokens"], 12);
    assert_eq!(generation["completionTokens"], 9);
    assert_eq!(generation["model"], "gpt-4o-2024-08-06");
    assert_eq!(generation["totalCost"], 0.000_12);
}
