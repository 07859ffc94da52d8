//! The `metadata` processor against the seeds' example request: one test per row of the
//! mapping table, plus placement, bad input and untouched-batch cases.

mod support;

use sha2::{Digest, Sha256};
use support::{int_attr, load, span_named, spans, spans_mut, str_attr};
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::trace::v1::span::Link;
use tracecast_core::{metrics, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};
use tracecast_processors::attrs;
use tracecast_processors::metadata::{
    MetadataProcessor, MetadataProcessorConfig, SPAN_FLAGS_PARENT_IS_REMOTE,
};

const ROOT: &str = "openrouter.request";
const GENERATION: &str = "chat openai/gpt-4o";

fn processor(id: &str) -> MetadataProcessor {
    MetadataProcessor::new(
        ComponentId::parse(id).unwrap(),
        MetadataProcessorConfig::default(),
    )
}

fn run_with(p: &mut MetadataProcessor, req: ExportTraceServiceRequest) -> TraceBatch {
    let mut out = Vec::new();
    p.process(support::batch(req), &mut out);
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

fn run(req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    run_with(&mut processor("metadata"), req).into_request()
}

fn gateway() -> ExportTraceServiceRequest {
    load("gateway_request.json").request
}

/// The gateway request with the root span's `trace` object edited.
fn gateway_with_trace(
    edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
) -> ExportTraceServiceRequest {
    let mut req = gateway();
    let root = spans_mut(&mut req)
        .into_iter()
        .find(|s| s.name == ROOT)
        .unwrap();
    let mut trace = serde_json::json!({
        "trace_id": "app_trace_001", "trace_name": "Chat Handler", "span_name": "Routing",
        "generation_name": "Generate Response", "environment": "staging", "deployment": "us-east-1"
    });
    edit(trace.as_object_mut().unwrap());
    attrs::set(&mut root.attributes, "trace", attrs::from_json(&trace));
    req
}

fn expected_custom_id(s: &str) -> Vec<u8> {
    Sha256::digest(format!("tracecast:{s}").as_bytes())[..16].to_vec()
}

#[test]
fn trace_id_custom_string_becomes_a_stable_hash_for_every_span_and_is_kept() {
    let out = run(gateway());
    let expected = expected_custom_id("app_trace_001");
    for span in spans(&out) {
        assert_eq!(span.trace_id, expected, "span {}", span.name);
        assert_eq!(
            str_attr(&span.attributes, "tracecast.custom_trace_id"),
            Some("app_trace_001")
        );
    }
    // Parents still point inside the moved trace.
    let root = span_named(&out, "Chat Handler");
    assert!(root.parent_span_id.is_empty());
    assert_eq!(span_named(&out, "Routing").parent_span_id, root.span_id);
    assert_eq!(
        span_named(&out, "Generate Response").parent_span_id,
        root.span_id
    );
}

#[test]
fn trace_id_of_32_hex_chars_is_used_as_is_lowercased() {
    let req = gateway_with_trace(|t| {
        t.insert("trace_id".into(), "0AF7651916CD43DD8448EB211C80319C".into());
    });
    let out = run(req);
    for span in spans(&out) {
        assert_eq!(
            hex::encode(&span.trace_id),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(
            str_attr(&span.attributes, "tracecast.custom_trace_id"),
            None
        );
    }
}

#[test]
fn trace_name_names_the_root_span() {
    let out = run(gateway());
    let root = spans(&out)
        .into_iter()
        .find(|s| s.parent_span_id.is_empty())
        .unwrap();
    assert_eq!(root.name, "Chat Handler");
}

#[test]
fn span_name_names_intermediate_spans_only() {
    let out = run(gateway());
    let route = spans(&out)
        .into_iter()
        .find(|s| s.span_id == hex::decode("1a2b3c4d5e6f7081").unwrap())
        .unwrap();
    assert_eq!(route.name, "Routing");
    assert_eq!(
        spans(&out).iter().filter(|s| s.name == "Routing").count(),
        1
    );
}

#[test]
fn generation_name_names_the_generation_span() {
    let out = run(gateway());
    let generation = spans(&out)
        .into_iter()
        .find(|s| s.span_id == hex::decode("b7ad6b7169203331").unwrap())
        .unwrap();
    assert_eq!(generation.name, "Generate Response");
    // A request without generation_name leaves the generation span's name alone.
    let out = run(gateway_with_trace(|t| {
        t.remove("generation_name");
    }));
    span_named(&out, GENERATION);
}

#[test]
fn parent_span_id_becomes_the_root_spans_parent() {
    let out = run(gateway_with_trace(|t| {
        t.insert("parent_span_id".into(), "00F067AA0BA902B7".into());
        t.insert("trace_id".into(), "4bf92f3577b34da6a3ce929d0e0e4736".into());
    }));
    let root = span_named(&out, "Chat Handler");
    assert_eq!(hex::encode(&root.parent_span_id), "00f067aa0ba902b7");
    // "Parent is remote" (OTLP SpanFlags 0x100 | 0x200): trace assembly sees a root.
    assert_eq!(SPAN_FLAGS_PARENT_IS_REMOTE, 0x300);
    assert_eq!(root.flags & 0x300, 0x300);
    let route = span_named(&out, "Routing");
    assert_eq!(route.parent_span_id, root.span_id);
    assert_eq!(route.flags & 0x300, 0, "only the linked root is flagged");
    // Running again keeps the linked root as the root (its parent is outside the batch).
    let again = run(out.clone());
    assert_eq!(again, out);
}

#[test]
fn other_keys_become_trace_metadata_on_every_span() {
    let out = run(gateway());
    for span in spans(&out) {
        assert_eq!(
            str_attr(&span.attributes, "trace.metadata.environment"),
            Some("staging")
        );
        assert_eq!(
            str_attr(&span.attributes, "trace.metadata.deployment"),
            Some("us-east-1")
        );
        for reserved in [
            "trace_id",
            "trace_name",
            "span_name",
            "generation_name",
            "parent_span_id",
        ] {
            assert!(!attrs::has(
                &span.attributes,
                &format!("trace.metadata.{reserved}")
            ));
        }
        assert!(
            !attrs::has(&span.attributes, "trace"),
            "source attribute replaced"
        );
    }
}

#[test]
fn nested_values_are_flattened_with_dots_and_arrays_kept() {
    let out = run(gateway_with_trace(|t| {
        t.insert("a".into(), serde_json::json!({"b": 1, "c": {"d": true}}));
        t.insert("tags".into(), serde_json::json!(["x", "y"]));
    }));
    let span = span_named(&out, "Generate Response");
    assert_eq!(int_attr(&span.attributes, "trace.metadata.a.b"), Some(1));
    assert_eq!(
        attrs::get(&span.attributes, "trace.metadata.a.c.d"),
        Some(&tracecast_core::proto::common::v1::AnyValue {
            value: Some(Value::BoolValue(true))
        })
    );
    match attrs::get(&span.attributes, "trace.metadata.tags").and_then(|v| v.value.as_ref()) {
        Some(Value::ArrayValue(a)) => {
            assert_eq!(a.values, vec![attrs::string("x"), attrs::string("y")])
        }
        other => panic!("tags not an array: {other:?}"),
    }
}

#[test]
fn user_becomes_user_id_and_session_id_becomes_session_id() {
    let out = run(gateway());
    for span in spans(&out) {
        assert_eq!(str_attr(&span.attributes, "user.id"), Some("user_12345"));
        assert_eq!(
            str_attr(&span.attributes, "session.id"),
            Some("session_abc")
        );
        assert!(!attrs::has(&span.attributes, "user"));
        assert!(!attrs::has(&span.attributes, "session_id"));
    }
}

#[test]
fn other_attributes_and_timing_are_unchanged() {
    let input = gateway();
    let out = run(input.clone());
    for (before, after) in spans(&input).into_iter().zip(spans(&out)) {
        assert_eq!(before.span_id, after.span_id);
        assert_eq!(before.start_time_unix_nano, after.start_time_unix_nano);
        assert_eq!(before.end_time_unix_nano, after.end_time_unix_nano);
        for kv in &before.attributes {
            if !["trace", "user", "session_id"].contains(&kv.key.as_str()) {
                assert_eq!(
                    attrs::get(&after.attributes, &kv.key),
                    kv.value.as_ref(),
                    "{}",
                    kv.key
                );
            }
        }
    }
    assert_eq!(
        input.resource_spans[0].resource,
        out.resource_spans[0].resource
    );
}

/// Sorted attributes of every span, to compare outputs whose attribute order may differ.
fn normalized(mut req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    for span in spans_mut(&mut req) {
        span.attributes.sort_by(|a, b| a.key.cmp(&b.key));
    }
    req
}

#[test]
fn placement_on_root_every_span_resource_or_as_json_string_gives_the_same_output() {
    let root_only = normalized(run(gateway()));
    let take_fields = |req: &mut ExportTraceServiceRequest| {
        let root = spans_mut(req).into_iter().find(|s| s.name == ROOT).unwrap();
        ["trace", "user", "session_id"]
            .map(|k| attrs::kv(k, attrs::take(&mut root.attributes, k).unwrap().unwrap()))
    };

    let mut every = gateway();
    let fields = take_fields(&mut every);
    for span in spans_mut(&mut every) {
        span.attributes.extend(fields.iter().cloned());
    }
    assert_eq!(normalized(run(every)), root_only, "on every span");

    let mut on_resource = gateway();
    let fields = take_fields(&mut on_resource);
    let resource = on_resource.resource_spans[0].resource.as_mut().unwrap();
    resource.attributes.extend(fields);
    let out = run(on_resource);
    assert_eq!(
        out.resource_spans[0].resource,
        gateway().resource_spans[0].resource,
        "consumed"
    );
    assert_eq!(normalized(out), root_only, "on the resource");

    let json = gateway_with_trace(|_| {});
    let mut as_string = json.clone();
    let root = spans_mut(&mut as_string)
        .into_iter()
        .find(|s| s.name == ROOT)
        .unwrap();
    let text = r#"{"trace_id":"app_trace_001","trace_name":"Chat Handler","span_name":"Routing","generation_name":"Generate Response","environment":"staging","deployment":"us-east-1"}"#;
    attrs::set(&mut root.attributes, "trace", attrs::string(text));
    assert_eq!(
        normalized(run(as_string)),
        normalized(run(json)),
        "JSON string"
    );
}

#[test]
fn configured_attribute_names_are_read() {
    let mut req = gateway();
    let root = spans_mut(&mut req)
        .into_iter()
        .find(|s| s.name == ROOT)
        .unwrap();
    for (from, to) in [
        ("trace", "openrouter.trace"),
        ("user", "openrouter.user"),
        ("session_id", "openrouter.session"),
    ] {
        let v = attrs::take(&mut root.attributes, from).unwrap().unwrap();
        root.attributes.push(attrs::kv(to, v));
    }
    let cfg = MetadataProcessorConfig {
        trace_attribute: "openrouter.trace".into(),
        user_attribute: "openrouter.user".into(),
        session_id_attribute: "openrouter.session".into(),
        ..Default::default()
    };
    let mut p = MetadataProcessor::new(ComponentId::parse("metadata/custom").unwrap(), cfg);
    let out = run_with(&mut p, req).into_request();
    assert_eq!(normalized(out), normalized(run(gateway())));
}

#[test]
fn input_without_request_fields_passes_untouched_with_its_received_bytes() {
    let once = run(gateway());
    let mut out = Vec::new();
    processor("metadata").process(support::batch(once.clone()), &mut out);
    assert!(
        out[0].received_protobuf().is_some(),
        "no copy, no re-encode"
    );
    assert_eq!(out[0].request(), &once);
}

#[test]
fn links_to_moved_spans_follow_them() {
    let mut req = gateway();
    let mut other = spans(&req)[1].clone();
    other.trace_id = hex::decode("11111111111111111111111111111111").unwrap();
    other.span_id = hex::decode("2222222222222222").unwrap();
    other.parent_span_id = Vec::new();
    other.name = "caller".into();
    other.attributes.clear();
    other.links = vec![
        Link {
            trace_id: hex::decode("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: hex::decode("b7ad6b7169203331").unwrap(),
            ..Default::default()
        },
        Link {
            trace_id: hex::decode("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: hex::decode("9999999999999999").unwrap(),
            ..Default::default()
        },
    ];
    req.resource_spans[0].scope_spans[0].spans.push(other);
    let out = run(req);
    let caller = span_named(&out, "caller");
    assert_eq!(
        hex::encode(&caller.trace_id),
        "11111111111111111111111111111111",
        "other request untouched"
    );
    assert_eq!(
        caller.links[0].trace_id,
        expected_custom_id("app_trace_001")
    );
    assert_eq!(
        hex::encode(&caller.links[1].trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "not in the batch"
    );
}

#[test]
fn bad_input_is_kept_or_skipped_counted_and_the_spans_flow() {
    let id = "metadata/bad_input";
    let warnings = |reason: &str| {
        metrics::WARNINGS
            .get_or_create(&metrics::reason(id, reason))
            .get()
    };
    let mut p = processor(id);

    let mut req = gateway();
    let root = spans_mut(&mut req)
        .into_iter()
        .find(|s| s.name == ROOT)
        .unwrap();
    attrs::set(&mut root.attributes, "trace", attrs::string("not json {"));
    let out = run_with(&mut p, req).into_request();
    assert_eq!(spans(&out).len(), 3);
    assert_eq!(
        str_attr(&span_named(&out, ROOT).attributes, "trace.metadata.raw"),
        Some("not json {")
    );
    assert_eq!(
        str_attr(&span_named(&out, GENERATION).attributes, "user.id"),
        Some("user_12345")
    );
    assert_eq!(warnings("trace_not_json_object"), 1);

    let req = gateway_with_trace(|t| {
        t.insert("parent_span_id".into(), "xyz".into());
        t.insert("trace_id".into(), "x".repeat(10 * 1024).into());
    });
    let out = run_with(&mut p, req).into_request();
    let root = span_named(&out, "Chat Handler");
    assert!(root.parent_span_id.is_empty(), "bad parent skipped");
    for span in spans(&out) {
        assert_eq!(
            hex::encode(&span.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "10 KB id not used"
        );
        assert!(!attrs::has(&span.attributes, "tracecast.custom_trace_id"));
        assert_eq!(
            str_attr(&span.attributes, "trace.metadata.environment"),
            Some("staging")
        );
    }
    assert_eq!(warnings("bad_parent_span_id"), 1);
    assert_eq!(warnings("trace_id_unusable"), 1);
}

#[test]
fn two_requests_in_one_batch_keep_their_own_fields() {
    let mut req = gateway();
    let mut second = load("gateway_request.json")
        .request
        .resource_spans
        .remove(0);
    for span in &mut second.scope_spans[0].spans {
        span.trace_id = hex::decode("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        if let Some(v) = attrs::get(&span.attributes, "user").cloned() {
            assert_eq!(attrs::as_str(&v), Some("user_12345"));
            attrs::set(&mut span.attributes, "user", attrs::string("user_2"));
            attrs::set(
                &mut span.attributes,
                "trace",
                attrs::from_json(&serde_json::json!({"trace_name": "Second"})),
            );
        }
    }
    req.resource_spans.push(second);
    let out = run(req);
    let second_spans: Vec<_> = out.resource_spans[1].scope_spans[0].spans.iter().collect();
    assert_eq!(second_spans[0].name, "Second");
    for span in second_spans {
        assert_eq!(
            hex::encode(&span.trace_id),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        assert_eq!(str_attr(&span.attributes, "user.id"), Some("user_2"));
        assert!(!attrs::has(&span.attributes, "trace.metadata.environment"));
    }
    assert_eq!(
        span_named(&out, "Chat Handler").trace_id,
        expected_custom_id("app_trace_001")
    );
}

#[test]
fn spans_in_and_out_are_counted() {
    let id = "metadata/counted";
    let mut p = processor(id);
    run_with(&mut p, gateway());
    let labels = metrics::component(id);
    assert_eq!(metrics::PROCESSOR_SPANS_IN.get_or_create(&labels).get(), 3);
    assert_eq!(metrics::PROCESSOR_SPANS_OUT.get_or_create(&labels).get(), 3);
}
