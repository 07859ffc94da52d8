//! The `filter` processor: one case per field and per operator on the gateway fixture, rule
//! groups, include + exclude, absent fields, several requests in one batch, every bad rule
//! reported with its key path, and hostile values.

mod support;

use std::sync::Arc;

use support::{load, spans};
use tracecast_config::ValidateInto;
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::common::v1::{AnyValue, KeyValue, KeyValueList};
use tracecast_core::{
    metrics, BatchContext, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch,
};
use tracecast_processors::attrs;
use tracecast_processors::{
    FilterProcessor, FilterProcessorConfig, PrivacyProcessor, PrivacyProcessorConfig,
};

fn config(json: &str) -> FilterProcessorConfig {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn processor(id: &str, json: &str) -> FilterProcessor {
    let rules = config(json)
        .validate_into()
        .unwrap_or_else(|e| panic!("{json}: {e:?}"));
    FilterProcessor::new(ComponentId::parse(id).unwrap(), rules)
}

fn batch_with_key(request: ExportTraceServiceRequest, key: Option<&str>) -> TraceBatch {
    let mut ctx = BatchContext::new("otlp");
    ctx.api_key_name = key.map(Arc::from);
    TraceBatch::new(ctx, request, None)
}

/// Spans left after `p`.
fn run(p: &mut FilterProcessor, batch: TraceBatch) -> usize {
    let mut out = Vec::new();
    p.process(batch, &mut out);
    out.iter().map(TraceBatch::span_count).sum()
}

/// The gateway fixture (3 spans: request, routing, generation), ingest key `team-a`.
fn gateway() -> TraceBatch {
    batch_with_key(load("gateway_request.json").request, Some("team-a"))
}

/// Whether the gateway request passes `include: [{rules: [rule]}]`.
fn included(rule: &str) -> bool {
    let mut p = processor(
        "filter",
        &format!(r#"{{"include": [{{"rules": [{rule}]}}]}}"#),
    );
    match run(&mut p, gateway()) {
        3 => true,
        0 => false,
        n => panic!("{rule}: a request is kept or dropped whole, {n} spans left"),
    }
}

fn check(cases: &[(&str, bool)]) {
    for (rule, expected) in cases {
        assert_eq!(included(rule), *expected, "{rule}");
    }
}

#[test]
fn each_text_field_reads_the_request() {
    check(&[
        (
            r#"{"field": "model", "operator": "equals", "value": "openai/gpt-4o"}"#,
            true,
        ),
        (
            r#"{"field": "model", "operator": "equals", "value": "gpt-4o-2024-08-06"}"#,
            true,
        ),
        (
            r#"{"field": "model", "operator": "equals", "value": "anthropic/claude"}"#,
            false,
        ),
        (
            r#"{"field": "provider", "operator": "equals", "value": "openai"}"#,
            true,
        ),
        (
            r#"{"field": "provider", "operator": "equals", "value": "anthropic"}"#,
            false,
        ),
        (
            r#"{"field": "session_id", "operator": "equals", "value": "session_abc"}"#,
            true,
        ),
        (
            r#"{"field": "session_id", "operator": "equals", "value": "session_x"}"#,
            false,
        ),
        (
            r#"{"field": "user_id", "operator": "equals", "value": "user_12345"}"#,
            true,
        ),
        (
            r#"{"field": "user_id", "operator": "equals", "value": "user_1"}"#,
            false,
        ),
        (
            r#"{"field": "api_key_name", "operator": "equals", "value": "team-a"}"#,
            true,
        ),
        (
            r#"{"field": "api_key_name", "operator": "equals", "value": "team-b"}"#,
            false,
        ),
        (
            r#"{"field": "finish_reason", "operator": "equals", "value": "stop"}"#,
            true,
        ),
        (
            r#"{"field": "finish_reason", "operator": "equals", "value": "length"}"#,
            false,
        ),
        (
            r#"{"field": "input", "operator": "contains", "value": "Hello!"}"#,
            true,
        ),
        (
            r#"{"field": "input", "operator": "contains", "value": "How can I help"}"#,
            false,
        ),
        (
            r#"{"field": "output", "operator": "contains", "value": "How can I help"}"#,
            true,
        ),
        (
            r#"{"field": "output", "operator": "contains", "value": "Hello!"}"#,
            false,
        ),
        (
            r#"{"attribute": "http.response.status_code", "operator": "equals", "value": 200}"#,
            true,
        ),
        (
            r#"{"attribute": "http.response.status_code", "operator": "equals", "value": "200"}"#,
            true,
        ),
        (
            r#"{"attribute": "service.name", "operator": "equals", "value": "openrouter"}"#,
            true,
        ),
        (
            r#"{"attribute": "http.route", "operator": "exists"}"#,
            false,
        ),
    ]);
}

#[test]
fn each_numeric_field_reads_the_generations() {
    // Fixture generation: 9 prompt, 10 completion, 19 total tokens, cost 0.000125.
    check(&[
        (
            r#"{"field": "total_cost", "operator": "gt", "value": 0.0001}"#,
            true,
        ),
        (
            r#"{"field": "total_cost", "operator": "gt", "value": 0.001}"#,
            false,
        ),
        (
            r#"{"field": "total_tokens", "operator": "equals", "value": 19}"#,
            true,
        ),
        (
            r#"{"field": "total_tokens", "operator": "gte", "value": 20}"#,
            false,
        ),
        (
            r#"{"field": "prompt_tokens", "operator": "equals", "value": 9}"#,
            true,
        ),
        (
            r#"{"field": "prompt_tokens", "operator": "lt", "value": 9}"#,
            false,
        ),
        (
            r#"{"field": "completion_tokens", "operator": "equals", "value": 10}"#,
            true,
        ),
        (
            r#"{"field": "completion_tokens", "operator": "gt", "value": 10}"#,
            false,
        ),
    ]);
}

#[test]
fn each_operator() {
    check(&[
        (
            r#"{"field": "model", "operator": "equals", "value": "openai/gpt-4o"}"#,
            true,
        ),
        (
            r#"{"field": "model", "operator": "not_equals", "value": "openai/gpt-4o"}"#,
            false,
        ),
        (
            r#"{"field": "model", "operator": "not_equals", "value": "anthropic/claude"}"#,
            true,
        ),
        (
            r#"{"field": "model", "operator": "contains", "value": "gpt-4o"}"#,
            true,
        ),
        (
            r#"{"field": "model", "operator": "contains", "value": "claude"}"#,
            false,
        ),
        (
            r#"{"field": "input", "operator": "not_contains", "value": "password"}"#,
            true,
        ),
        (
            r#"{"field": "input", "operator": "not_contains", "value": "Hello"}"#,
            false,
        ),
        (
            r#"{"field": "model", "operator": "regex", "value": "^openai/gpt-4o(-mini)?$"}"#,
            true,
        ),
        (
            r#"{"field": "output", "operator": "regex", "value": "(?i)^hi there"}"#,
            true,
        ),
        (
            r#"{"field": "model", "operator": "regex", "value": "^anthropic/"}"#,
            false,
        ),
        (
            r#"{"field": "model", "operator": "starts_with", "value": "openai/"}"#,
            true,
        ),
        (
            r#"{"field": "model", "operator": "starts_with", "value": "gpt-5"}"#,
            false,
        ),
        (
            r#"{"field": "user_id", "operator": "ends_with", "value": "_12345"}"#,
            true,
        ),
        (
            r#"{"field": "user_id", "operator": "ends_with", "value": "_999"}"#,
            false,
        ),
        (
            r#"{"field": "total_tokens", "operator": "gt", "value": 18}"#,
            true,
        ),
        (
            r#"{"field": "total_tokens", "operator": "gt", "value": 19}"#,
            false,
        ),
        (
            r#"{"field": "total_tokens", "operator": "lt", "value": 20}"#,
            true,
        ),
        (
            r#"{"field": "total_tokens", "operator": "lt", "value": 19}"#,
            false,
        ),
        (
            r#"{"field": "total_tokens", "operator": "gte", "value": 19}"#,
            true,
        ),
        (
            r#"{"field": "total_tokens", "operator": "gte", "value": 19.5}"#,
            false,
        ),
        (
            r#"{"field": "total_tokens", "operator": "lte", "value": 19}"#,
            true,
        ),
        (
            r#"{"field": "total_tokens", "operator": "lte", "value": 18}"#,
            false,
        ),
        (r#"{"field": "session_id", "operator": "exists"}"#, true),
        (
            r#"{"attribute": "no.such.key", "operator": "exists"}"#,
            false,
        ),
        (
            r#"{"attribute": "no.such.key", "operator": "not_exists"}"#,
            true,
        ),
        (
            r#"{"field": "session_id", "operator": "not_exists"}"#,
            false,
        ),
    ]);
}

/// A request with only a root span: no generation, no content, no user.
fn bare() -> ExportTraceServiceRequest {
    let mut req = load("gateway_request.json").request;
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans.truncate(1);
    spans[0]
        .attributes
        .retain(|kv| kv.key == "http.response.status_code");
    req
}

#[test]
fn a_rule_over_an_absent_field_is_false_except_not_exists() {
    for field in [
        "model",
        "provider",
        "session_id",
        "user_id",
        "api_key_name",
        "finish_reason",
        "input",
        "output",
        "total_cost",
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
    ] {
        let numeric = field.contains("cost") || field.contains("tokens");
        let value = if numeric { "0" } else { r#""x""# };
        let mut ops = vec![("equals", true), ("not_equals", true), ("exists", false)];
        if numeric {
            ops.extend([("gt", true), ("lt", true), ("gte", true), ("lte", true)]);
        } else {
            ops.extend([
                ("contains", true),
                ("not_contains", true),
                ("regex", true),
                ("starts_with", true),
                ("ends_with", true),
            ]);
        }
        for (op, takes_value) in ops {
            let rule = if takes_value {
                format!(r#"{{"field": "{field}", "operator": "{op}", "value": {value}}}"#)
            } else {
                format!(r#"{{"field": "{field}", "operator": "{op}"}}"#)
            };
            let mut p = processor(
                "filter",
                &format!(r#"{{"include": [{{"rules": [{rule}]}}]}}"#),
            );
            assert_eq!(run(&mut p, batch_with_key(bare(), None)), 0, "{rule}");
        }
        let rule = format!(r#"{{"field": "{field}", "operator": "not_exists"}}"#);
        let mut p = processor(
            "filter",
            &format!(r#"{{"include": [{{"rules": [{rule}]}}]}}"#),
        );
        assert_eq!(run(&mut p, batch_with_key(bare(), None)), 1, "{rule}");
    }
}

#[test]
fn numeric_fields_sum_across_generations() {
    let mut req = load("gateway_request.json").request;
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    let mut second = spans[2].clone();
    second.span_id = vec![9; 8];
    attrs::set(
        &mut second.attributes,
        "gen_ai.usage.cost",
        attrs::string("0.001"),
    );
    attrs::set(
        &mut second.attributes,
        "gen_ai.usage.input_tokens",
        attrs::int(100),
    );
    second
        .attributes
        .retain(|kv| kv.key != "gen_ai.usage.total_tokens");
    second
        .attributes
        .retain(|kv| kv.key != "gen_ai.request.model" && kv.key != "gen_ai.response.model");
    attrs::set(
        &mut second.attributes,
        "gen_ai.request.model",
        attrs::string("anthropic/claude"),
    );
    spans.push(second);
    let kept = |rule: &str| {
        let mut p = processor(
            "filter",
            &format!(r#"{{"include": [{{"rules": [{rule}]}}]}}"#),
        );
        run(&mut p, batch_with_key(req.clone(), None)) == 4
    };
    // 0.000125 + 0.001 (a numeric string counts).
    assert!(kept(
        r#"{"field": "total_cost", "operator": "gt", "value": 0.0011}"#
    ));
    assert!(!kept(
        r#"{"field": "total_cost", "operator": "gt", "value": 0.0012}"#
    ));
    assert!(kept(
        r#"{"field": "prompt_tokens", "operator": "equals", "value": 109}"#
    ));
    // 19 (total) + 100 + 10 (prompt + completion of the one without a total).
    assert!(kept(
        r#"{"field": "total_tokens", "operator": "equals", "value": 129}"#
    ));
    // Each generation's model is a value: equals any, not_equals none.
    assert!(kept(
        r#"{"field": "model", "operator": "equals", "value": "anthropic/claude"}"#
    ));
    assert!(!kept(
        r#"{"field": "model", "operator": "not_equals", "value": "anthropic/claude"}"#
    ));
}

#[test]
fn and_or_groups_and_include_with_exclude() {
    let model = r#"{"field": "model", "operator": "equals", "value": "openai/gpt-4o"}"#;
    let other = r#"{"field": "user_id", "operator": "equals", "value": "someone_else"}"#;
    let run_cfg = |json: String| {
        let mut p = processor("filter", &json);
        run(&mut p, gateway())
    };
    // and: both must hold; or: either.
    assert_eq!(
        run_cfg(format!(
            r#"{{"include": [{{"logic": "and", "rules": [{model}, {other}]}}]}}"#
        )),
        0
    );
    assert_eq!(
        run_cfg(format!(
            r#"{{"include": [{{"logic": "or", "rules": [{model}, {other}]}}]}}"#
        )),
        3
    );
    // `and` is the default.
    assert_eq!(
        run_cfg(format!(
            r#"{{"include": [{{"rules": [{model}, {other}]}}]}}"#
        )),
        0
    );
    // Any include group is enough.
    assert_eq!(
        run_cfg(format!(
            r#"{{"include": [{{"rules": [{other}]}}, {{"rules": [{model}]}}]}}"#
        )),
        3
    );
    // Exclude wins over include.
    assert_eq!(
        run_cfg(format!(
            r#"{{"include": [{{"rules": [{model}]}}], "exclude": [{{"rules": [{model}]}}]}}"#
        )),
        0
    );
    assert_eq!(
        run_cfg(format!(
            r#"{{"include": [{{"rules": [{model}]}}], "exclude": [{{"rules": [{other}]}}]}}"#
        )),
        3
    );
    // Exclude alone: everything but what it matches.
    assert_eq!(
        run_cfg(format!(r#"{{"exclude": [{{"rules": [{other}]}}]}}"#)),
        3
    );
    // No groups: everything.
    assert_eq!(run_cfg("{}".to_string()), 3);
}

/// A finish reason that sits inside the output messages (OpenLLMetry's
/// `gen_ai.completion.0.finish_reason`) counts when `gen_ai.response.finish_reasons` is absent.
#[test]
fn finish_reason_inside_the_output_messages_counts() {
    let req = load("openllmetry.json").request;
    let n = spans(&req).len();
    let rule = |v: &str| {
        format!(
            r#"{{"include": [{{"rules": [{{"field": "finish_reason", "operator": "equals", "value": "{v}"}}]}}]}}"#
        )
    };
    let mut p = processor("filter", &rule("stop"));
    assert_eq!(run(&mut p, batch_with_key(req.clone(), None)), n);
    let mut p = processor("filter", &rule("length"));
    assert_eq!(run(&mut p, batch_with_key(req, None)), 0);
}

/// Two requests (trace ids) in one batch: only the matching one goes on, and the drop is
/// counted; a batch with nothing to drop passes untouched (same bytes).
#[test]
fn requests_of_one_batch_are_decided_apart_and_drops_are_counted() {
    let mut req = load("gateway_request.json").request;
    let mut other = req.resource_spans[0].clone();
    for span in &mut other.scope_spans[0].spans {
        span.trace_id = vec![7; 16];
        attrs::set(&mut span.attributes, "user", attrs::string("user_other"));
    }
    req.resource_spans.push(other);
    let rule = r#"{"include": [{"rules": [{"field": "user_id", "operator": "equals", "value": "user_other"}]}]}"#;
    let mut p = processor("filter/counted", rule);
    let mut out = Vec::new();
    p.process(batch_with_key(req, None), &mut out);
    assert_eq!(out.len(), 1);
    let left = spans(out[0].request());
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|s| s.trace_id == vec![7; 16]));
    assert_eq!(
        out[0].request().resource_spans.len(),
        1,
        "empty envelopes removed"
    );
    let dropped = metrics::PROCESSOR_SPANS_DROPPED
        .get_or_create(&metrics::reason("filter/counted", "filtered"))
        .get();
    assert_eq!(dropped, 3);
    let labels = metrics::component("filter/counted");
    assert_eq!(metrics::PROCESSOR_SPANS_IN.get_or_create(&labels).get(), 6);
    assert_eq!(metrics::PROCESSOR_SPANS_OUT.get_or_create(&labels).get(), 3);

    let mut keep_all = processor("filter", "{}");
    let mut out = Vec::new();
    keep_all.process(
        support::batch(load("gateway_request.json").request),
        &mut out,
    );
    assert!(
        out[0].received_protobuf().is_some(),
        "untouched batch keeps its bytes"
    );
}

#[test]
fn api_key_name_falls_back_to_the_configured_attribute() {
    let mut req = load("gateway_request.json").request;
    req.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(attrs::kv(
            "openrouter.api_key_name",
            attrs::string("team-b"),
        ));
    let rule = r#"{"field": "api_key_name", "operator": "equals", "value": "team-b"}"#;
    let with_attr = format!(
        r#"{{"api_key_name_attribute": "openrouter.api_key_name", "include": [{{"rules": [{rule}]}}]}}"#
    );
    let mut p = processor("filter", &with_attr);
    assert_eq!(run(&mut p, batch_with_key(req.clone(), None)), 3);
    // The authenticated key name wins over the attribute.
    assert_eq!(run(&mut p, batch_with_key(req.clone(), Some("team-a"))), 0);
    // Without the option, an unauthenticated request has no api_key_name.
    let mut p = processor(
        "filter",
        &format!(r#"{{"include": [{{"rules": [{rule}]}}]}}"#),
    );
    assert_eq!(run(&mut p, batch_with_key(req, None)), 0);
}

/// `input`/`output` read every content convention (the shared conversion of
/// `tracecast_core::genai`), and see nothing once Privacy Mode removed the content.
#[test]
fn content_of_every_convention_is_input_or_output_and_privacy_leaves_none() {
    let any_content = r#"{"include": [{"logic": "or", "rules": [
        {"field": "input", "operator": "exists"}, {"field": "output", "operator": "exists"}]}]}"#;
    let no_content = r#"{"include": [{"rules": [
        {"field": "input", "operator": "not_exists"}, {"field": "output", "operator": "not_exists"}]}]}"#;
    let privacy = PrivacyProcessorConfig::default().validate_into().unwrap();
    let mut privacy = PrivacyProcessor::new(ComponentId::parse("privacy").unwrap(), privacy);
    for name in [
        "gateway_request.json",
        "otel_genai_current.json",
        "otel_genai_deprecated.json",
        "openllmetry.json",
        "openinference.json",
        "vercel_ai.json",
        "langfuse.json",
    ] {
        let req = load(name).request;
        let n = spans(&req).len();
        let mut p = processor("filter", any_content);
        assert_eq!(run(&mut p, batch_with_key(req.clone(), None)), n, "{name}");
        let mut out = Vec::new();
        privacy.process(batch_with_key(req, None), &mut out);
        let redacted = out.pop().unwrap();
        let mut p = processor("filter", no_content);
        assert_eq!(run(&mut p, redacted), n, "{name} after privacy");
    }
    // The deprecated convention's prompt, read from `gen_ai.prompt`.
    let mut p = processor(
        "filter",
        r#"{"include": [{"rules": [{"field": "input", "operator": "contains", "value": "quarterly report"},
            {"field": "output", "operator": "starts_with", "value": "Revenue grew"}]}]}"#,
    );
    assert_eq!(
        run(
            &mut p,
            batch_with_key(load("otel_genai_deprecated.json").request, None)
        ),
        1
    );
}

#[test]
fn every_bad_rule_is_reported_with_its_key_path() {
    let cfg = config(
        r#"{
        "include": [
            {"logic": "xor", "rules": [
                {"field": "modle", "operator": "equals", "value": "x"},
                {"field": "input", "operator": "regex", "value": "("},
                {"field": "total_cost", "operator": "gt", "value": "a lot"},
                {"field": "model", "operator": "eq", "value": "x"}
            ]},
            {"rules": []}
        ],
        "exclude": [
            {"rules": [
                {"field": "model", "operator": "gt", "value": 3},
                {"field": "total_tokens", "operator": "contains", "value": "1"},
                {"field": "model", "operator": "exists", "value": "x"},
                {"field": "model", "operator": "equals"},
                {"field": "model", "attribute": "a", "operator": "exists"},
                {"operator": "exists"},
                {"attribute": "", "operator": "exists"},
                {"field": "total_cost", "operator": "equals", "value": "1"},
                {"field": "model", "operator": "contains", "value": 5}
            ]}
        ],
        "api_key_name_attribute": ""
    }"#,
    );
    let problems = cfg.validate_into().unwrap_err();
    let got: Vec<(String, String)> = problems.into_iter().map(|p| (p.path, p.message)).collect();
    let fields = "model, provider, session_id, user_id, api_key_name, finish_reason, input, output, total_cost, total_tokens, prompt_tokens, completion_tokens";
    let expected: Vec<(String, String)> = [
        ("include[0].logic", "unknown logic \"xor\"; use and (every rule) or or (any rule)".to_string()),
        ("include[0].rules[0].field", format!("unknown field \"modle\"; known fields: {fields} (or attribute: <key> for any span attribute)")),
        ("include[0].rules[1].value", "\"(\" is not a valid regular expression: unclosed group".to_string()),
        ("include[0].rules[2].value", "operator gt needs a number, got the string \"a lot\"".to_string()),
        ("include[0].rules[3].operator", "unknown operator \"eq\"; known operators: equals, not_equals, contains, not_contains, regex, starts_with, ends_with, gt, lt, gte, lte, exists, not_exists".to_string()),
        ("include[1].rules", "a group needs at least one rule".to_string()),
        ("exclude[0].rules[0].value", "operator gt compares numbers, and model is text; numeric fields: total_cost, total_tokens, prompt_tokens, completion_tokens (or an attribute)".to_string()),
        ("exclude[0].rules[1].value", "operator contains compares text, and total_tokens is a number; use equals, not_equals, gt, lt, gte or lte".to_string()),
        ("exclude[0].rules[2].value", "operator exists takes no value, got the string \"x\"".to_string()),
        ("exclude[0].rules[3].value", "operator equals needs a value".to_string()),
        ("exclude[0].rules[4]", "a rule names either field or attribute, not both".to_string()),
        ("exclude[0].rules[5]", format!("a rule needs field (one of {fields}) or attribute: <span attribute key>")),
        ("exclude[0].rules[6].attribute", "must not be empty".to_string()),
        ("exclude[0].rules[7].value", "total_cost is a number: operator equals needs a number, got the string \"1\"".to_string()),
        ("exclude[0].rules[8].value", "operator contains needs a string, got the number 5".to_string()),
        ("api_key_name_attribute", "must not be empty (leave it out to read the ingest key name only)".to_string()),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_string(), m))
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn unknown_keys_in_groups_and_rules_are_refused() {
    for json in [
        r#"{"includes": []}"#,
        r#"{"include": [{"rules": [], "mode": "and"}]}"#,
        r#"{"include": [{"rules": [{"field": "model", "operator": "exists", "negate": true}]}]}"#,
    ] {
        let err = serde_json::from_str::<FilterProcessorConfig>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{json}: {err}");
    }
}

/// Hostile values: an attribute nested far deeper than any real one, a huge content string,
/// thousands of requests in one batch. Decided without overflow, in one pass each.
#[test]
fn hostile_values_are_decided_without_harm() {
    let mut deep = attrs::string("needle");
    for _ in 0..10_000 {
        deep = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(deep),
                    ..Default::default()
                }],
            })),
        };
    }
    let mut req = bare();
    let root = &mut req.resource_spans[0].scope_spans[0].spans[0];
    root.attributes.push(attrs::kv("deep", deep));
    root.attributes.push(attrs::kv(
        "input.value",
        attrs::string("x".repeat(4 << 20) + "needle"),
    ));
    let mut p = processor(
        "filter",
        r#"{"include": [{"rules": [{"attribute": "deep", "operator": "exists"}, {"field": "input", "operator": "regex", "value": "needle$"}]}]}"#,
    );
    assert_eq!(run(&mut p, batch_with_key(req, None)), 1);

    let mut many = bare();
    let template = many.resource_spans[0].scope_spans[0].spans[0].clone();
    many.resource_spans[0].scope_spans[0].spans = (0..20_000u32)
        .map(|i| {
            let mut s = template.clone();
            s.trace_id = [i.to_be_bytes().to_vec(), vec![0; 12]].concat();
            s
        })
        .collect();
    let mut p = processor(
        "filter",
        r#"{"exclude": [{"rules": [{"attribute": "http.response.status_code", "operator": "gte", "value": 500}]}]}"#,
    );
    assert_eq!(run(&mut p, batch_with_key(many, None)), 20_000);
}
