//! Privacy Mode, one test per convention: after the processor no content string from the
//! fixture appears in the encoded protobuf, exactly the listed keys/events are gone, and
//! everything else (tokens, costs, models, timing, metadata, ids, parent links) is unchanged.

mod support;

use support::{contains, int_attr, load, spans, Fixture};
use tracecast_config::ValidateInto;
use tracecast_core::proto::common::v1::KeyValue;
use tracecast_core::{metrics, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};
use tracecast_processors::metadata::{MetadataProcessor, MetadataProcessorConfig};
use tracecast_processors::privacy::{
    PrivacyProcessor, PrivacyProcessorConfig, REDACTED_COUNT_ATTRIBUTE,
};

fn privacy(cfg: PrivacyProcessorConfig) -> PrivacyProcessor {
    let cfg = cfg.validate_into().unwrap();
    PrivacyProcessor::new(ComponentId::parse("privacy").unwrap(), cfg)
}

fn run(p: &mut impl Processor, batch: TraceBatch) -> TraceBatch {
    let mut out = Vec::new();
    p.process(batch, &mut out);
    assert_eq!(out.len(), 1);
    out.pop().unwrap()
}

/// `list` without the removed keys; also returns how many were removed.
fn without(list: &[KeyValue], removed: &[String]) -> (Vec<KeyValue>, i64) {
    let kept: Vec<KeyValue> = list
        .iter()
        .filter(|a| !removed.contains(&a.key))
        .cloned()
        .collect();
    let n = (list.len() - kept.len()) as i64;
    (kept, n)
}

fn strip_marker(list: &[KeyValue]) -> Vec<KeyValue> {
    list.iter()
        .filter(|a| a.key != REDACTED_COUNT_ATTRIBUTE)
        .cloned()
        .collect()
}

fn check_convention(name: &str) {
    let Fixture {
        request,
        content,
        removed,
        removed_events,
    } = load(name);
    let encoded_in = TraceBatch::new(
        tracecast_core::BatchContext::new("otlp"),
        request.clone(),
        None,
    )
    .to_protobuf();
    for c in &content {
        assert!(
            contains(&encoded_in, c),
            "{name}: fixture lacks content {c:?}"
        );
    }
    let out = run(
        &mut privacy(PrivacyProcessorConfig::default()),
        support::batch(request.clone()),
    );
    assert!(
        out.received_protobuf().is_none(),
        "{name}: changed batch must be re-encoded"
    );
    let bytes = out.to_protobuf();
    for c in &content {
        assert!(!contains(&bytes, c), "{name}: content {c:?} survived");
    }
    let out = out.into_request();
    for (rs_in, rs_out) in request.resource_spans.iter().zip(&out.resource_spans) {
        let res_in = rs_in.resource.as_ref().unwrap();
        let res_out = rs_out.resource.as_ref().unwrap();
        let (kept, n) = without(&res_in.attributes, &removed);
        assert_eq!(strip_marker(&res_out.attributes), kept, "{name}: resource");
        assert_eq!(
            int_attr(&res_out.attributes, REDACTED_COUNT_ATTRIBUTE),
            (n > 0).then_some(n)
        );
    }
    let (spans_in, spans_out) = (spans(&request), spans(&out));
    assert_eq!(spans_in.len(), spans_out.len());
    for (a, b) in spans_in.into_iter().zip(spans_out) {
        let ctx = format!("{name}: span {}", a.name);
        assert_eq!(
            (&a.trace_id, &a.span_id, &a.parent_span_id),
            (&b.trace_id, &b.span_id, &b.parent_span_id),
            "{ctx}"
        );
        assert_eq!(
            (&a.name, a.kind, &a.status),
            (&b.name, b.kind, &b.status),
            "{ctx}"
        );
        assert_eq!(
            (a.start_time_unix_nano, a.end_time_unix_nano),
            (b.start_time_unix_nano, b.end_time_unix_nano),
            "{ctx}"
        );
        let (kept, mut n) = without(&a.attributes, &removed);
        assert_eq!(strip_marker(&b.attributes), kept, "{ctx}: attributes");
        let kept_events: Vec<_> = a
            .events
            .iter()
            .filter(|e| !removed_events.contains(&e.name))
            .collect();
        n += (a.events.len() - kept_events.len()) as i64;
        assert_eq!(kept_events.len(), b.events.len(), "{ctx}: events");
        for (ea, eb) in kept_events.into_iter().zip(&b.events) {
            let (kept, m) = without(&ea.attributes, &removed);
            n += m;
            assert_eq!(
                (&ea.name, ea.time_unix_nano, &kept),
                (&eb.name, eb.time_unix_nano, &eb.attributes),
                "{ctx}"
            );
        }
        for (la, lb) in a.links.iter().zip(&b.links) {
            let (kept, m) = without(&la.attributes, &removed);
            n += m;
            assert_eq!(
                (&la.trace_id, &la.span_id, &kept),
                (&lb.trace_id, &lb.span_id, &lb.attributes),
                "{ctx}"
            );
        }
        assert_eq!(
            int_attr(&b.attributes, REDACTED_COUNT_ATTRIBUTE),
            (n > 0).then_some(n),
            "{ctx}: marker"
        );
    }
}

#[test]
fn gateway_duplicates_trace_and_span_input_output() {
    check_convention("gateway_request.json");
}

#[test]
fn otel_genai_current_conventions() {
    check_convention("otel_genai_current.json");
}

#[test]
fn otel_genai_deprecated_attributes_and_events() {
    check_convention("otel_genai_deprecated.json");
}

#[test]
fn openllmetry_indexed_keys() {
    check_convention("openllmetry.json");
}

#[test]
fn openinference_flattened_keys_and_documents() {
    check_convention("openinference.json");
}

#[test]
fn vercel_ai_sdk() {
    check_convention("vercel_ai.json");
}

#[test]
fn langfuse() {
    check_convention("langfuse.json");
}

#[test]
fn fan_out_copy_keeps_content_for_the_other_pipeline() {
    let fixture = load("gateway_request.json");
    let received = support::batch(fixture.request.clone());
    let for_archive = received.clone();
    let private = run(&mut privacy(PrivacyProcessorConfig::default()), received);
    let private_bytes = private.to_protobuf();
    assert!(
        for_archive.received_protobuf().is_some(),
        "the shared copy keeps its received bytes"
    );
    assert_eq!(for_archive.request(), &fixture.request);
    for c in &fixture.content {
        assert!(contains(&for_archive.to_protobuf(), c));
        assert!(!contains(&private_bytes, c));
    }
}

#[test]
fn batch_without_content_is_passed_on_untouched() {
    let out = run(
        &mut privacy(PrivacyProcessorConfig::default()),
        support::batch(load("gateway_request.json").request),
    );
    let clean = out.into_request();
    let again = run(
        &mut privacy(PrivacyProcessorConfig::default()),
        support::batch(clean.clone()),
    );
    assert!(
        again.received_protobuf().is_some(),
        "no request_mut when nothing changes"
    );
    assert_eq!(again.request(), &clean, "idempotent");
}

#[test]
fn extra_keys_patterns_and_events_are_removed_and_counted() {
    let mut req = load("otel_genai_deprecated.json").request;
    let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    span.attributes.push(tracecast_processors::attrs::kv(
        "acme.prompt_text",
        support::string("secret in-house prompt"),
    ));
    span.attributes.push(tracecast_processors::attrs::kv(
        "acme.answer.body",
        support::string("secret in-house answer"),
    ));
    let mut p = privacy(PrivacyProcessorConfig {
        extra_keys: vec!["acme.prompt_text".into()],
        extra_patterns: vec![r"^acme\.answer\.".into()],
        extra_events: vec!["exception".into()],
        ..Default::default()
    });
    let out = run(&mut p, support::batch(req));
    let bytes = out.to_protobuf();
    assert!(!contains(&bytes, "secret in-house"));
    let span = &out.request().resource_spans[0].scope_spans[0].spans[0];
    assert!(span.events.is_empty());
    // 2 built-in + 2 extra attributes, 7 content events + 1 extra event.
    assert_eq!(
        int_attr(&span.attributes, REDACTED_COUNT_ATTRIBUTE),
        Some(12)
    );
}

#[test]
fn allow_list_mode_keeps_only_allowed_keys() {
    let fixture = load("gateway_request.json");
    let mut p = privacy(PrivacyProcessorConfig {
        allow_list_mode: true,
        ..Default::default()
    });
    let out = run(&mut p, support::batch(fixture.request)).into_request();
    let generation = &out.resource_spans[0].scope_spans[0].spans[2];
    let mut keys: Vec<&str> = generation
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.max_tokens",
            "gen_ai.request.model",
            "gen_ai.request.temperature",
            "gen_ai.response.finish_reasons",
            "gen_ai.response.id",
            "gen_ai.response.model",
            "gen_ai.system",
            "gen_ai.usage.cost",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.total_tokens",
            REDACTED_COUNT_ATTRIBUTE,
        ]
    );
    let route = &out.resource_spans[0].scope_spans[0].spans[1];
    assert!(
        !route
            .attributes
            .iter()
            .any(|a| a.key == "openrouter.provider"),
        "not on the allow list"
    );
    let resource = out.resource_spans[0].resource.as_ref().unwrap();
    assert!(resource.attributes.iter().any(|a| a.key == "service.name"));
}

fn normalized(mut req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    for span in support::spans_mut(&mut req) {
        span.attributes.sort_by(|a, b| a.key.cmp(&b.key));
    }
    req
}

#[test]
fn privacy_and_metadata_commute() {
    for name in [
        "gateway_request.json",
        "otel_genai_deprecated.json",
        "openinference.json",
    ] {
        for allow_list_mode in [false, true] {
            let cfg = PrivacyProcessorConfig {
                allow_list_mode,
                ..Default::default()
            };
            let mut m = MetadataProcessor::new(
                ComponentId::parse("metadata").unwrap(),
                MetadataProcessorConfig::default(),
            );
            let mut p = privacy(cfg);
            let req: ExportTraceServiceRequest = load(name).request;
            let a = run(&mut p, run(&mut m, support::batch(req.clone())));
            let b = run(&mut m, run(&mut p, support::batch(req)));
            // Same attributes everywhere; OTLP attribute order carries no meaning.
            assert_eq!(
                normalized(a.into_request()),
                normalized(b.into_request()),
                "{name}, allow_list_mode {allow_list_mode}"
            );
        }
    }
}

#[test]
fn spans_in_and_out_are_counted() {
    let mut p = PrivacyProcessor::new(
        ComponentId::parse("privacy/counted").unwrap(),
        PrivacyProcessorConfig::default().validate_into().unwrap(),
    );
    run(&mut p, support::batch(load("openinference.json").request));
    let labels = metrics::component("privacy/counted");
    assert_eq!(metrics::PROCESSOR_SPANS_IN.get_or_create(&labels).get(), 3);
    assert_eq!(metrics::PROCESSOR_SPANS_OUT.get_or_create(&labels).get(), 3);
}
