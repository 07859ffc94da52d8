//! Graph checks, YAML syntax, tags, aliases and `service`-level env expansion.

use tracecast_config::{load_str_with_env, Duration};

fn env(name: &str) -> Option<String> {
    match name {
        "SHUTDOWN" => Some("7".into()),
        "LEVEL" => Some("warn".into()),
        _ => None,
    }
}

fn errors(text: &str) -> Vec<String> {
    load_str_with_env("c.yaml", text, &env)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

const COMPONENTS: &str = "receivers:\n  otlp:\nexporters:\n  otlp:\n";

#[test]
fn a_component_listed_twice_in_one_pipeline() {
    let text = format!("{COMPONENTS}service:\n  pipelines:\n    traces:\n      receivers: [otlp, otlp]\n      exporters: [otlp]\n");
    assert_eq!(
        errors(&text),
        ["c.yaml:8:25: service.pipelines.traces.receivers[1]: receiver otlp is listed twice in pipeline traces; list it once"]
    );
}

#[test]
fn a_reference_to_a_component_of_another_kind_is_not_configured() {
    let text = "receivers:\n  otlp:\nexporters:\n  s3:\nservice:\n  pipelines:\n    traces:\n      receivers: [s3]\n      exporters: [s3]\n";
    assert_eq!(
        errors(text),
        ["c.yaml:8:19: service.pipelines.traces.receivers[0]: pipeline traces references receiver s3 which is not configured (configured receivers: otlp)"]
    );
}

#[test]
fn no_pipelines_at_all() {
    let hint = "no pipelines are configured; add one under service.pipelines, like traces: {receivers: [otlp], exporters: [otlp]}";
    // Without a `service` key the nearest place is the document itself.
    assert_eq!(errors(COMPONENTS), [format!("c.yaml:1:1: service: {hint}")]);
    assert_eq!(errors(""), [format!("c.yaml: service: {hint}")]);
    let text = format!("{COMPONENTS}service:\n  pipelines: {{}}\n");
    assert_eq!(
        errors(&text),
        [format!("c.yaml:6:3: service.pipelines: {hint}")]
    );
}

#[test]
fn a_pipeline_without_receivers_or_exporters() {
    let text = format!("{COMPONENTS}service:\n  pipelines:\n    traces/a:\n");
    assert_eq!(
        errors(&text),
        [
            "c.yaml:7:5: service.pipelines.traces/a.receivers: pipeline traces/a has no receivers; list at least one receiver",
            "c.yaml:7:5: service.pipelines.traces/a.exporters: pipeline traces/a has no exporters; list at least one exporter",
        ]
    );
}

#[test]
fn only_trace_pipelines() {
    let text = format!("{COMPONENTS}service:\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [otlp]}}\n    metrics/x: {{receivers: [otlp], exporters: [otlp]}}\n");
    assert_eq!(
        errors(&text),
        ["c.yaml:8:5: service.pipelines.metrics/x: pipeline metrics/x carries metrics, but tracecast carries traces only; name pipelines traces or traces/<name>"]
    );
}

#[test]
fn bad_ids_in_a_pipeline_and_wrong_section_types_are_all_reported() {
    let text = "receivers: [otlp]\nexporters:\n  otlp: yes\nservice:\n  pipelines:\n    traces:\n      receivers: [\"a b\", 5]\n      exporters: [otlp]\n  telemetry: {logs: {format: xml}}\n";
    assert_eq!(
        errors(text),
        [
            "c.yaml:1:12: receivers: invalid type: sequence, expected a mapping of receiver ids to their settings",
            "c.yaml:3:9: exporters.otlp: invalid type: string \"yes\", expected the settings of exporter otlp as a mapping",
            "c.yaml:7:19: service.pipelines.traces.receivers[0]: component id \"a b\" may contain only letters, digits, '_', '-', '.' and one '/'",
            "c.yaml:7:26: service.pipelines.traces.receivers[1]: invalid type: integer `5`, expected a component id",
            "c.yaml:9:30: service.telemetry.logs.format: unknown variant `xml`, expected `text` or `json`",
        ]
    );
}

#[test]
fn duplicate_keys_anywhere_are_reported_with_the_first_line() {
    let text = format!("{COMPONENTS}    endpoint: a\n    endpoint: b\nservice:\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [otlp]}}\n  pipelines: {{}}\n");
    assert_eq!(
        errors(&text),
        [
            "c.yaml:6:5: exporters.otlp.endpoint: duplicate key `endpoint` (first defined at line 5); keep one",
            "c.yaml:10:3: service.pipelines: duplicate key `pipelines` (first defined at line 8); keep one",
        ]
    );
}

#[test]
fn env_in_service_values_is_reread_as_yaml() {
    let text = format!("{COMPONENTS}service:\n  pipelines: {{traces: {{receivers: [otlp], exporters: [otlp]}}}}\n  shutdown_timeout: ${{env:SHUTDOWN}}\n  telemetry:\n    logs:\n      level: ${{env:LEVEL}}\n");
    let config = load_str_with_env("c.yaml", &text, &env).unwrap();
    assert_eq!(config.service.shutdown_timeout, Duration::from_secs(7));
    assert_eq!(config.service.telemetry.logs.level, "warn");
}

#[test]
fn anchors_and_aliases_are_expanded() {
    let text = "receivers:\n  otlp:\nexporters:\n  otlp/a: &common {timeout: 5s}\n  otlp/b: *common\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [otlp/a, otlp/b]}\n";
    let config = load_str_with_env("c.yaml", text, &env).unwrap();
    let bodies: Vec<_> = config.exporters.values().map(|c| c.body.clone()).collect();
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[0]["timeout"], serde_yaml::Value::String("5s".into()));
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    assert_eq!(
        errors("receivers:\n  otlp: {endpoint: a\nexporters:\n"),
        ["c.yaml:3:10: invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'"]
    );
    assert_eq!(
        errors("receivers:\n---\nexporters:\n"),
        ["c.yaml:2:1: a config file holds one YAML document; remove the second `---`"]
    );
    assert_eq!(
        errors("- a\n- b\n"),
        ["c.yaml:1:1: invalid type: sequence, expected a mapping with receivers, processors, exporters and service"]
    );
}

#[test]
fn custom_tags_are_refused_and_core_tags_work() {
    let text = format!("{COMPONENTS}    port: !!str 4318\n    x: !secret abc\nservice:\n  pipelines: {{traces: {{receivers: [otlp], exporters: [otlp]}}}}\n");
    assert_eq!(
        errors(&text),
        ["c.yaml:6:8: exporters.otlp.x: YAML tag `!secret` is not supported; remove it"]
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 10].join(", ")
        ));
    }
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].ends_with("more than 1000000 values after expanding aliases"),
        "{}",
        e[0]
    );
}
