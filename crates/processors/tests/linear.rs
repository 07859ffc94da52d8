//! The `metadata` processor's work and output stay linear in the request's size: a large
//! request field on a root with tens of thousands of children is written once, thousands of
//! metadata keys are handled without quadratic scans, and small fields still reach every
//! span.

mod support;

use std::time::{Duration, Instant};

use support::str_attr;
use tracecast_core::proto::common::v1::KeyValue;
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecast_core::{ComponentId, ExportTraceServiceRequest, Processor};
use tracecast_processors::attrs;
use tracecast_processors::metadata::{
    MetadataProcessor, MetadataProcessorConfig, COPY_BYTES_PER_SPAN,
};

fn run(req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    let mut p = MetadataProcessor::new(
        ComponentId::parse("metadata/linear").unwrap(),
        MetadataProcessorConfig::default(),
    );
    let mut out = Vec::new();
    p.process(support::batch(req), &mut out);
    out.pop().unwrap().into_request()
}

fn span(id: u64, parent: Option<u64>, name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: 1_700_000_000_000_000_000 + id,
        end_time_unix_nano: 1_700_000_000_000_000_100 + id,
        attributes,
        ..Default::default()
    }
}

/// A root carrying `trace` (= `trace_json`) and `children` child spans, in one ScopeSpans.
fn request(trace_json: serde_json::Value, children: u64) -> ExportTraceServiceRequest {
    let mut spans = vec![span(
        1,
        None,
        "root",
        vec![
            attrs::kv("trace", attrs::from_json(&trace_json)),
            attrs::kv("user", attrs::string("user-1")),
        ],
    )];
    spans.extend((0..children).map(|i| {
        span(
            i + 2,
            Some(1),
            "child",
            vec![attrs::kv("http.method", attrs::string("GET"))],
        )
    }));
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn all_spans(req: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
}

/// Attribute and name bytes of every span: what copies would inflate.
fn attribute_bytes(req: &ExportTraceServiceRequest) -> usize {
    all_spans(req)
        .map(|s| {
            s.name.len()
                + s.attributes
                    .iter()
                    .map(|kv| kv.key.len() + kv.value.as_ref().map_or(0, attrs::value_bytes))
                    .sum::<usize>()
        })
        .sum()
}

#[test]
fn a_1_mb_trace_value_on_a_root_with_20_000_children_is_written_once() {
    let big = "m".repeat(1 << 20);
    let trace = serde_json::json!({
        "trace_id": "app_trace_big", "environment": "prod", "document": big,
    });
    let input = request(trace, 20_000);
    let before = attribute_bytes(&input);
    let started = Instant::now();
    let out = run(input);
    let took = started.elapsed();
    let after = attribute_bytes(&out);
    assert!(
        after < 3 * before,
        "output attribute bytes {after} vs input {before}: not linear"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");

    let root = all_spans(&out).find(|s| s.name == "root").unwrap();
    assert_eq!(
        str_attr(&root.attributes, "trace.metadata.document").map(str::len),
        Some(1 << 20),
        "the large value is kept whole, once, on the root"
    );
    let children: Vec<&Span> = all_spans(&out).filter(|s| s.name == "child").collect();
    assert_eq!(children.len(), 20_000);
    for child in children {
        assert!(!attrs::has(&child.attributes, "trace.metadata.document"));
        // Small fields still reach every span (where OTLP backends filter on them).
        assert_eq!(
            str_attr(&child.attributes, "trace.metadata.environment"),
            Some("prod")
        );
        assert_eq!(str_attr(&child.attributes, "user.id"), Some("user-1"));
        assert_eq!(
            str_attr(&child.attributes, "tracecast.custom_trace_id"),
            Some("app_trace_big")
        );
        assert_eq!(child.trace_id, root.trace_id, "one trace");
    }
}

#[test]
fn many_small_keys_are_copied_within_the_per_span_budget_and_never_scanned_quadratically() {
    let keys: serde_json::Map<String, serde_json::Value> = (0..20_000)
        .map(|i| (format!("k{i:05}"), serde_json::Value::String("v".into())))
        .collect();
    let input = request(serde_json::Value::Object(keys), 2_000);
    let before = attribute_bytes(&input);
    let started = Instant::now();
    let out = run(input);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let root = all_spans(&out).find(|s| s.name == "root").unwrap();
    let on_root = root
        .attributes
        .iter()
        .filter(|kv| kv.key.starts_with("trace.metadata."))
        .count();
    assert_eq!(on_root, 20_000, "every key kept on the root");
    for child in all_spans(&out).filter(|s| s.name == "child") {
        let copied: usize = child
            .attributes
            .iter()
            .filter(|kv| kv.key != "http.method")
            .map(|kv| kv.key.len() + kv.value.as_ref().map_or(0, attrs::value_bytes))
            .sum();
        assert!(copied <= COPY_BYTES_PER_SPAN, "{copied} bytes copied");
    }
    // The root's keys gain their `trace.metadata.` prefix (at most 2x); each child gains at
    // most the budget.
    let after = attribute_bytes(&out);
    let spans = 2_001;
    assert!(
        after <= 2 * before + spans * COPY_BYTES_PER_SPAN,
        "{after} vs {before}"
    );
}

#[test]
fn a_huge_request_span_name_renames_only_the_first_intermediate_span() {
    let name = "n".repeat(1 << 20);
    let out = run(request(serde_json::json!({ "span_name": name }), 20_000));
    let renamed = all_spans(&out).filter(|s| s.name.len() == 1 << 20).count();
    assert_eq!(renamed, 1);
    let short = run(request(serde_json::json!({ "span_name": "Routing" }), 100));
    assert_eq!(
        all_spans(&short).filter(|s| s.name == "Routing").count(),
        100
    );
}
