//! Property tests: `metadata` is idempotent and commutes with `privacy`; `privacy` never
//! removes a key it promises to keep.

mod support;

use proptest::prelude::*;
use tracecast_config::ValidateInto;
use tracecast_core::proto::common::v1::{AnyValue, KeyValue};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::span::Event;
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecast_core::{ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};
use tracecast_processors::attrs;
use tracecast_processors::metadata::{MetadataProcessor, MetadataProcessorConfig};
use tracecast_processors::privacy::{PrivacyProcessor, PrivacyProcessorConfig};

const KEYS: &[&str] = &[
    "trace",
    "user",
    "session_id",
    "trace.metadata.environment",
    "user.id",
    "session.id",
    "gen_ai.request.model",
    "gen_ai.operation.name",
    "input.value",
    "gen_ai.usage.input_tokens",
    "x",
    // The `trace` field flattened, and the content keys beside it.
    "trace.trace_name",
    "trace.trace_id",
    "trace.environment",
    "trace.input",
    "trace.output.text",
];
const STRINGS: &[&str] = &[
    "app_trace_001",
    "0af7651916cd43dd8448eb211c80319c",
    "00f067aa0ba902b7",
    "not json {",
    "",
    r#"{"trace_id":"t-1","trace_name":"Root","span_name":"Mid","generation_name":"Gen","parent_span_id":"00f067aa0ba902b7","env":{"a":[1,2]}}"#,
    r#"{"trace_id":"0AF7651916CD43DD8448EB211C80319C","parent_span_id":"nope","k":null}"#,
];

fn value() -> impl Strategy<Value = AnyValue> {
    prop_oneof![
        prop::sample::select(STRINGS).prop_map(attrs::string),
        any::<i64>().prop_map(attrs::int),
        (prop::sample::select(STRINGS), prop::sample::select(STRINGS), "[a-z.]{1,8}").prop_map(|(id, name, k)| {
            attrs::from_json(&serde_json::json!({"trace_id": id, "trace_name": name, "generation_name": name, k: {"n": [id]}}))
        }),
    ]
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(
        (prop::sample::select(KEYS), value()).prop_map(|(k, v)| attrs::kv(k, v)),
        0..5,
    )
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let span = (
        0..2u8,
        0..4u8,
        0..6u8,
        attributes(),
        prop::collection::vec(0..4u8, 0..2),
    );
    (attributes(), prop::collection::vec(span, 1..6)).prop_map(|(resource, spans)| {
        let spans = spans
            .into_iter()
            .map(|(t, s, p, attributes, links)| Span {
                trace_id: vec![t + 1; 16],
                span_id: vec![s + 1; 8],
                parent_span_id: if p < 4 { vec![p + 1; 8] } else { Vec::new() },
                name: format!("s{s}"),
                attributes,
                links: links
                    .into_iter()
                    .map(|l| tracecast_core::proto::trace::v1::span::Link {
                        trace_id: vec![1; 16],
                        span_id: vec![l + 1; 8],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        }
    })
}

fn run(p: &mut impl Processor, req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    let mut out = Vec::new();
    p.process(support::batch(req), &mut out);
    out.pop().map(TraceBatch::into_request).unwrap()
}

fn metadata() -> MetadataProcessor {
    MetadataProcessor::new(
        ComponentId::parse("metadata/prop").unwrap(),
        MetadataProcessorConfig::default(),
    )
}

fn privacy(allow_list_mode: bool) -> PrivacyProcessor {
    let cfg = PrivacyProcessorConfig {
        allow_list_mode,
        ..Default::default()
    };
    let cfg = cfg.validate_into().unwrap();
    PrivacyProcessor::new(ComponentId::parse("privacy/prop").unwrap(), cfg)
}

fn normalized(mut req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    for span in support::spans_mut(&mut req) {
        span.attributes.sort_by(|a, b| a.key.cmp(&b.key));
    }
    req
}

/// Keys Privacy Mode promises to keep, generated from their families.
fn kept_key() -> impl Strategy<Value = String> {
    let word = "[a-z][a-z_]{0,10}";
    prop_oneof![
        word.prop_map(|w| format!("gen_ai.usage.{w}")),
        word.prop_map(|w| format!("gen_ai.usage.{w}_cost")),
        word.prop_map(|w| format!("gen_ai.request.{w}")),
        word.prop_map(|w| format!("llm.token_count.{w}")),
        (word, word).prop_map(|(a, b)| format!("trace.metadata.{a}.{b}")),
        prop::sample::select(
            &[
                "gen_ai.request.model",
                "gen_ai.response.model",
                "gen_ai.system",
                "gen_ai.provider.name",
                "gen_ai.response.finish_reasons",
                "llm.model_name",
                "llm.invocation_parameters",
                "user.id",
                "session.id",
                "gen_ai.response.id",
                "gen_ai.operation.name",
            ][..]
        )
        .prop_map(String::from),
    ]
}

fn content_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "gen_ai.prompt",
                "input.value",
                "ai.prompt",
                "trace.output",
                "langfuse.trace.input"
            ][..]
        )
        .prop_map(String::from),
        (0..5u8).prop_map(|i| format!("gen_ai.completion.{i}.content")),
        (0..5u8).prop_map(|i| format!("llm.input_messages.{i}.message.content")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn metadata_twice_equals_once(req in request()) {
        let mut p = metadata();
        let once = run(&mut p, req);
        let twice = run(&mut p, once.clone());
        prop_assert_eq!(twice, once);
    }

    #[test]
    fn metadata_never_changes_the_span_count_or_span_ids(req in request()) {
        let out = run(&mut metadata(), req.clone());
        let ids = |r: &ExportTraceServiceRequest| support::spans(r).iter().map(|s| s.span_id.clone()).collect::<Vec<_>>();
        prop_assert_eq!(ids(&out), ids(&req));
    }

    #[test]
    fn metadata_and_privacy_commute(req in request(), allow in any::<bool>()) {
        let a = run(&mut privacy(allow), run(&mut metadata(), req.clone()));
        let b = run(&mut metadata(), run(&mut privacy(allow), req));
        prop_assert_eq!(normalized(a), normalized(b));
    }

    #[test]
    fn privacy_never_removes_a_kept_key(
        kept in prop::collection::vec((kept_key(), any::<i64>()), 1..8),
        content in prop::collection::vec((content_key(), "[a-z ]{1,20}"), 0..5),
        allow in any::<bool>(),
    ) {
        let mut list: Vec<KeyValue> = Vec::new();
        for ((k, v), i) in kept.iter().zip(0..) {
            list.push(attrs::kv(k.clone(), attrs::int(*v)));
            if let Some((ck, cv)) = content.get(i) {
                list.push(attrs::kv(ck.clone(), attrs::string(cv.clone())));
            }
        }
        let span = Span {
            attributes: list.clone(),
            events: vec![Event { name: "details".into(), attributes: list.clone(), ..Default::default() }],
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: list, ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                schema_url: String::new(),
            }],
        };
        let out = run(&mut privacy(allow), req);
        let rs = &out.resource_spans[0];
        let span = &rs.scope_spans[0].spans[0];
        for where_ in [&rs.resource.as_ref().unwrap().attributes, &span.attributes, &span.events[0].attributes] {
            for (k, _) in &kept {
                // The first value of a key is the one kept (duplicates keep their first).
                let expected = kept.iter().find(|(k2, _)| k2 == k).map(|(_, v)| attrs::int(*v));
                prop_assert_eq!(attrs::get(where_, k), expected.as_ref(), "{} removed or changed", k);
            }
            for (k, _) in &content {
                prop_assert!(!attrs::has(where_, k), "{} kept", k);
            }
        }
    }
}
