//! The `metadata` processor reads the request's `trace` field flattened into `trace.<key>`
//! attributes (what SDKs that cannot set map values send) exactly like the map and
//! JSON-string forms; `trace.metadata.*` passes unchanged and `trace.input` / `trace.output`
//! stay content, so Privacy Mode removes them in either processor order.

mod support;

use support::{span_named, spans, spans_mut, str_attr};
use tracecast_config::ValidateInto;
use tracecast_core::proto::common::v1::KeyValue;
use tracecast_core::{metrics, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};
use tracecast_processors::attrs;
use tracecast_processors::metadata::{MetadataProcessor, MetadataProcessorConfig};
use tracecast_processors::privacy::{PrivacyProcessor, PrivacyProcessorConfig};

const ROOT: &str = "openrouter.request";

fn run(p: &mut impl Processor, req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    let mut out = Vec::new();
    p.process(support::batch(req), &mut out);
    out.pop().map(TraceBatch::into_request).unwrap()
}

fn metadata(id: &str) -> MetadataProcessor {
    MetadataProcessor::new(
        ComponentId::parse(id).unwrap(),
        MetadataProcessorConfig::default(),
    )
}

fn privacy(allow_list_mode: bool) -> PrivacyProcessor {
    let cfg = PrivacyProcessorConfig {
        allow_list_mode,
        ..Default::default()
    }
    .validate_into()
    .unwrap();
    PrivacyProcessor::new(ComponentId::parse("privacy/flat").unwrap(), cfg)
}

fn trace_json() -> serde_json::Value {
    serde_json::json!({
        "trace_id": "app_trace_001", "trace_name": "Chat Handler", "span_name": "Routing",
        "generation_name": "Generate Response", "environment": "staging",
        "deployment": "us-east-1", "retries": 2
    })
}

/// The gateway request with the root span's `trace` field replaced by `fields`.
fn gateway_with(fields: Vec<KeyValue>) -> ExportTraceServiceRequest {
    let mut req = support::load("gateway_request.json").request;
    let root = spans_mut(&mut req)
        .into_iter()
        .find(|s| s.name == ROOT)
        .unwrap();
    root.attributes
        .retain(|kv| kv.key != "trace" && !fields.iter().any(|f| f.key == kv.key));
    root.attributes.extend(fields);
    req
}

fn as_map() -> ExportTraceServiceRequest {
    gateway_with(vec![attrs::kv("trace", attrs::from_json(&trace_json()))])
}

fn as_json_string() -> ExportTraceServiceRequest {
    gateway_with(vec![attrs::kv(
        "trace",
        attrs::string(trace_json().to_string()),
    )])
}

fn flattened() -> ExportTraceServiceRequest {
    let fields = trace_json()
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| attrs::kv(format!("trace.{k}"), attrs::from_json(v)))
        .collect();
    gateway_with(fields)
}

#[test]
fn the_three_forms_give_the_same_output() {
    let map = run(&mut metadata("metadata/flat"), as_map());
    assert_eq!(run(&mut metadata("metadata/flat"), as_json_string()), map);
    assert_eq!(run(&mut metadata("metadata/flat"), flattened()), map);
    let root = span_named(&map, "Chat Handler");
    assert_eq!(
        str_attr(&root.attributes, "trace.metadata.environment"),
        Some("staging")
    );
    assert_eq!(
        support::int_attr(&root.attributes, "trace.metadata.retries"),
        Some(2)
    );
    span_named(&map, "Generate Response");
    span_named(&map, "Routing");
    for span in spans(&map) {
        let left: Vec<&str> = span
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .filter(|k| k.starts_with("trace.") && !k.starts_with("trace.metadata."))
            .collect();
        assert!(
            left.iter()
                .all(|k| ["trace.input", "trace.output"].contains(k)),
            "{left:?}"
        );
    }
}

#[test]
fn metadata_namespace_passes_and_content_stays_content() {
    let req = gateway_with(vec![
        attrs::kv("trace.trace_name", attrs::string("Chat Handler")),
        attrs::kv("trace.environment", attrs::string("staging")),
        attrs::kv("trace.metadata.team", attrs::string("core")),
        attrs::kv("trace.input", attrs::string("What is 2+2?")),
        attrs::kv("trace.output.text", attrs::string("4")),
    ]);
    let mut p = metadata("metadata/flat");
    let once = run(&mut p, req);
    let root = span_named(&once, "Chat Handler");
    assert_eq!(
        str_attr(&root.attributes, "trace.metadata.team"),
        Some("core")
    );
    assert_eq!(
        str_attr(&root.attributes, "trace.metadata.environment"),
        Some("staging")
    );
    assert_eq!(
        str_attr(&root.attributes, "trace.input"),
        Some("What is 2+2?")
    );
    assert_eq!(str_attr(&root.attributes, "trace.output.text"), Some("4"));
    assert!(!attrs::has(&root.attributes, "trace.metadata.input"));
    assert_eq!(run(&mut p, once.clone()), once, "idempotent");
}

#[test]
fn privacy_removes_flattened_content_in_either_order() {
    let req = gateway_with(vec![
        attrs::kv("trace.trace_name", attrs::string("Chat Handler")),
        attrs::kv("trace.environment", attrs::string("staging")),
        attrs::kv("trace.input", attrs::string("SECRET-PROMPT")),
        attrs::kv("trace.output", attrs::string("SECRET-ANSWER")),
    ]);
    for allow_list_mode in [false, true] {
        let mut m = metadata("metadata/flat");
        let mut p = privacy(allow_list_mode);
        let after = run(&mut p, run(&mut m, req.clone()));
        let before = run(&mut m, run(&mut p, req.clone()));
        let sorted = |mut r: ExportTraceServiceRequest| {
            for s in spans_mut(&mut r) {
                s.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            }
            r
        };
        assert_eq!(
            sorted(after.clone()),
            sorted(before),
            "allow list {allow_list_mode}"
        );
        let root = span_named(&after, "Chat Handler");
        assert_eq!(
            str_attr(&root.attributes, "trace.metadata.environment"),
            Some("staging")
        );
        assert!(!attrs::has(&root.attributes, "trace.input"));
        assert!(!attrs::has(&root.attributes, "trace.output"));
    }
}

#[test]
fn map_values_win_and_hostile_flattened_keys_are_kept_or_counted() {
    let id = "metadata/flat_hostile";
    let warnings = |reason: &str| {
        metrics::WARNINGS
            .get_or_create(&metrics::reason(id, reason))
            .get()
    };
    let mut fields = vec![
        attrs::kv(
            "trace",
            attrs::from_json(&serde_json::json!({"environment": "prod"})),
        ),
        attrs::kv("trace.environment", attrs::string("staging")),
        attrs::kv(
            "trace.trace_name",
            attrs::from_json(&serde_json::json!({"x": 1})),
        ),
        attrs::kv("trace.", attrs::string("empty key")),
        attrs::kv("trace.deployment", attrs::string("first")),
        attrs::kv("trace.deployment", attrs::string("second")),
        attrs::kv("tracer.x", attrs::string("not ours")),
    ];
    // Many flattened keys: every one read, each once.
    fields.extend((0..5000).map(|i| attrs::kv(format!("trace.k{i}"), attrs::int(i))));
    let out = run(&mut metadata(id), gateway_with(fields));
    let root = span_named(&out, ROOT);
    let get = |k: &str| str_attr(&root.attributes, k);
    assert_eq!(
        get("trace.metadata.environment"),
        Some("prod"),
        "the map wins"
    );
    assert_eq!(get("trace.metadata.deployment"), Some("first"));
    assert_eq!(get("trace."), Some("empty key"));
    assert_eq!(get("tracer.x"), Some("not ours"));
    assert!(
        attrs::has(&root.attributes, "trace.metadata.trace_name.x")
            || attrs::has(&root.attributes, "trace.metadata.trace_name")
    );
    assert_eq!(warnings("reserved_key_not_scalar"), 1);
    assert_eq!(
        root.attributes
            .iter()
            .filter(|kv| kv.key.starts_with("trace.metadata.k"))
            .count(),
        5000
    );
}
