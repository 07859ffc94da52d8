//! End to end: the gateway's example request over real HTTP (protobuf, an ingest key) ->
//! the `otlp` receiver -> `metadata` -> two `s3` exporters (the in-process S3 server, SigV4
//! checked) and an `otlp` exporter (a recording backend), all in one in-process service.
//!
//! Each row of the SPEC section 3 mapping table is asserted as the exact field in the S3
//! trace file (validated against docs/trace-file.schema.json) and as the exact attribute in
//! the OTLP output; object keys are asserted exactly for two path templates. A trace split
//! over several requests lands in one file; a late span lands in a second file.

use std::path::Path;
use std::time::Duration;

use prost::Message;
use serde_json::Value;
use tracecast::Service;
use tracecast_core::proto::common::v1::any_value::Value as Av;
use tracecast_core::proto::trace::v1::Span;
use tracecast_core::ExportTraceServiceRequest;
use tracecast_processors::metadata::ids::derive_trace_id;
use tracecast_tests::fixtures::{
    attr_str, child_span, flatten_spans, gateway_request, request_from_spans, span,
};
use tracecast_tests::{Exporter, RecordingOtlpServer, S3TestServer, TestConfig};

const AK: &str = "e2e-access-key";
const SK: &str = "e2e-secret-key";
const TOKEN: &str = "tok-team-a";

struct Env {
    _dir: tempfile::TempDir,
    s3: S3TestServer,
    backend: RecordingOtlpServer,
    service: Service,
    url: String,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    s3.create_bucket("by-key");
    s3.create_bucket("by-date");
    let backend = RecordingOtlpServer::start().await;
    let s3_exporter = |bucket: &str, template: &str| {
        Exporter::s3(&format!("s3/{bucket}"), bucket, s3.endpoint(), AK, SK)
            .path_template(template)
            .prefix("production")
            .trace_idle_timeout("300ms")
            .max_trace_wait("30s")
            .dead_letter_dir(dir.path().join("dead-letter").join(bucket))
    };
    let yaml = TestConfig::new(0)
        .api_key("team-a", TOKEN)
        .processor("metadata")
        .exporter(s3_exporter(
            "by-key",
            "{apiKeyName}/{year}/{month}/{day}/{hour}",
        ))
        .exporter(s3_exporter("by-date", "{prefix}/{date}"))
        .exporter(
            Exporter::otlp("otlp/backend", backend.endpoint())
                .protobuf()
                .compression("none")
                .dead_letter_dir(dir.path().join("dead-letter/otlp")),
        )
        .queue_dir(dir.path().join("queue"))
        .yaml();
    let config = tracecast::load_config_str("s3_files.yaml", &yaml).expect("valid config");
    let service = Service::start(&config).await.expect("service starts");
    let addr = service.receiver_addr("otlp").expect("receiver address");
    Env {
        _dir: dir,
        s3,
        backend,
        service,
        url: format!("http://{addr}/v1/traces"),
    }
}

/// Posts a request as OTLP protobuf with the ingest key; the receiver must answer 200.
async fn post(url: &str, request: &ExportTraceServiceRequest) {
    let answer = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(request.encode_to_vec())
        .send()
        .await
        .expect("receiver reachable");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
}

/// Waits until `bucket` holds `n` objects; returns their keys.
async fn wait_for_objects(s3: &S3TestServer, bucket: &str, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let keys = s3.list_keys(bucket);
        if keys.len() >= n {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} objects in {bucket} after 10s: {:?}",
        s3.list_keys(bucket)
    );
}

/// Parses a trace file and validates it against docs/trace-file.schema.json.
fn schema_checked(path: &Path) -> Value {
    let schema: Value =
        serde_json::from_str(include_str!("../docs/trace-file.schema.json")).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "schema errors: {errors:?}\nin {doc:#}");
    doc
}

/// The gateway request with its `trace` JSON replaced.
fn gateway_with_trace(trace: &Value) -> ExportTraceServiceRequest {
    let mut req = gateway_request();
    let root = &mut req.resource_spans[0].scope_spans[0].spans[0];
    root.attributes.retain(|kv| kv.key != "trace");
    root.attributes
        .push(attr_str("trace", &serde_json::to_string(trace).unwrap()));
    req
}

/// Trace start (earliest span) in unix seconds, and its UTC date-time.
fn start_of(req: &ExportTraceServiceRequest) -> (i64, time::OffsetDateTime) {
    let nanos = flatten_spans(req)
        .iter()
        .map(|s| s.start_time_unix_nano)
        .min()
        .unwrap();
    let secs = (nanos / 1_000_000_000) as i64;
    (
        secs,
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap(),
    )
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Av> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn s(v: &str) -> Av {
    Av::StringValue(v.to_string())
}

fn observation<'a>(doc: &'a Value, ty: &str) -> &'a Value {
    doc["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} observation in {doc:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_request_becomes_the_documented_trace_file_and_otlp_spans() {
    let env = start().await;
    let first = gateway_request();
    post(&env.url, &first).await;

    // Object keys, exactly, for both templates.
    let (secs, at) = start_of(&first);
    let by_key = wait_for_objects(&env.s3, "by-key", 1).await;
    let expected = format!(
        "team-a/{:04}/{:02}/{:02}/{:02}/app_trace_001-{secs}.json",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour()
    );
    assert_eq!(by_key, vec![expected.clone()]);
    let by_date = wait_for_objects(&env.s3, "by-date", 1).await;
    assert_eq!(
        by_date,
        vec![format!(
            "production/{:04}-{:02}-{:02}/app_trace_001-{secs}.json",
            at.year(),
            u8::from(at.month()),
            at.day()
        )]
    );
    let doc = schema_checked(&env.s3.object_path("by-key", &expected));
    let same = schema_checked(&env.s3.object_path("by-date", &by_date[0]));
    assert_eq!(doc, same, "both destinations get the same file");

    // The mapping table, row by row, in the S3 file.
    let otel_id = hex::encode(derive_trace_id("app_trace_001"));
    assert_eq!(doc["id"], "app_trace_001", "trace.trace_id -> trace id");
    assert_eq!(doc["otelTraceId"], otel_id.as_str());
    assert_eq!(doc["name"], "Chat Handler", "trace.trace_name -> name");
    let generation = observation(&doc, "GENERATION");
    assert_eq!(
        generation["name"], "Generate Response",
        "trace.generation_name"
    );
    assert_eq!(doc["metadata"]["environment"], "staging");
    assert_eq!(doc["metadata"]["deployment"], "us-east-1");
    assert_eq!(generation["metadata"]["environment"], "staging");
    assert_eq!(doc["userId"], "user_12345", "user -> userId");
    assert_eq!(doc["sessionId"], "session_abc", "session_id -> sessionId");
    assert_eq!(doc["apiKeyName"], "team-a", "the ingest key's name");
    let root = observation(&doc, "SPAN");
    assert_eq!(root["name"], "Chat Handler");
    assert!(root.get("parentObservationId").is_none(), "a root");
    assert_eq!(generation["parentObservationId"], root["id"]);
    assert!(doc["observations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["traceId"] == "app_trace_001"));
    assert_eq!(generation["model"], "gpt-4o-2024-08-06");
    assert_eq!(generation["promptTokens"], 12);
    assert_eq!(generation["completionTokens"], 9);

    // The same rows in the OTLP output.
    let spans = env.backend.wait_for_spans(2, Duration::from_secs(10)).await;
    let trace_id = derive_trace_id("app_trace_001").to_vec();
    assert!(spans.iter().all(|s| s.trace_id == trace_id), "SHA-256 id");
    let otlp_root = spans.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    let otlp_gen = spans.iter().find(|s| !s.parent_span_id.is_empty()).unwrap();
    assert_eq!(otlp_root.name, "Chat Handler");
    assert_eq!(otlp_gen.name, "Generate Response");
    for sp in [otlp_root, otlp_gen] {
        assert_eq!(attr(sp, "trace.metadata.environment"), Some(&s("staging")));
        assert_eq!(attr(sp, "trace.metadata.deployment"), Some(&s("us-east-1")));
        assert_eq!(attr(sp, "user.id"), Some(&s("user_12345")));
        assert_eq!(attr(sp, "session.id"), Some(&s("session_abc")));
        assert_eq!(
            attr(sp, "tracecast.custom_trace_id"),
            Some(&s("app_trace_001"))
        );
        assert!(attr(sp, "trace").is_none() && attr(sp, "user").is_none());
    }

    // trace.parent_span_id: a second request linked under the first one's root.
    let parent_hex = root["id"].as_str().unwrap().to_string();
    let second = gateway_with_trace(&serde_json::json!({
        "trace_id": "app_trace_002", "trace_name": "Follow-up",
        "generation_name": "Generate Again", "parent_span_id": parent_hex,
        "environment": "staging"
    }));
    post(&env.url, &second).await;
    // Written on idle (well before max_trace_wait: 30s): the linked root counts as a root.
    let keys = wait_for_objects(&env.s3, "by-key", 2).await;
    let key2 = keys.iter().find(|k| k.contains("app_trace_002")).unwrap();
    let doc2 = schema_checked(&env.s3.object_path("by-key", key2));
    assert_eq!(doc2["name"], "Follow-up");
    let root2 = observation(&doc2, "SPAN");
    assert_eq!(root2["parentObservationId"], parent_hex.as_str());
    assert_eq!(observation(&doc2, "GENERATION")["name"], "Generate Again");
    let spans = env.backend.wait_for_spans(4, Duration::from_secs(10)).await;
    let linked = spans.iter().find(|s| s.name == "Follow-up").unwrap();
    assert_eq!(hex::encode(&linked.parent_span_id), parent_hex);
    assert_eq!(linked.flags & 0x300, 0x300, "parent flagged remote");
    assert_eq!(linked.trace_id, derive_trace_id("app_trace_002").to_vec());

    assert!(env.service.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_split_over_requests_is_one_file_and_a_late_span_a_second() {
    let env = start().await;
    let root = span("split-root");
    let a = child_span(&root, "split-a");
    let b = child_span(&root, "split-b");
    let late = child_span(&root, "split-late");
    let trace_hex = hex::encode(&root.trace_id);
    post(&env.url, &request_from_spans(vec![root.clone(), a])).await;
    post(&env.url, &request_from_spans(vec![b])).await;
    let keys = wait_for_objects(&env.s3, "by-key", 1).await;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with("team-a/"), "{keys:?}");
    assert!(keys[0].contains(&trace_hex), "{keys:?}");
    let first_path = env.s3.object_path("by-key", &keys[0]);
    let first_bytes = std::fs::read(&first_path).unwrap();
    let doc = schema_checked(&first_path);
    let mut names: Vec<&str> = doc["observations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["split-a", "split-b", "split-root"]);
    assert!(doc.get("lateFragment").is_none());

    post(&env.url, &request_from_spans(vec![late])).await;
    let keys = wait_for_objects(&env.s3, "by-key", 2).await;
    assert_eq!(keys.len(), 2);
    assert_eq!(
        std::fs::read(&first_path).unwrap(),
        first_bytes,
        "the first file is untouched"
    );
    let second = keys
        .iter()
        .find(|k| env.s3.object_path("by-key", k) != first_path)
        .unwrap();
    let doc2 = schema_checked(&env.s3.object_path("by-key", second));
    assert_eq!(doc2["lateFragment"], true);
    assert_eq!(doc2["otelTraceId"], trace_hex.as_str());
    let obs = doc2["observations"].as_array().unwrap();
    assert_eq!(obs.len(), 1);
    assert_eq!(obs[0]["name"], "split-late");
    assert!(env.service.shutdown().await);
}
