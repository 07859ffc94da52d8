//! The `filter` processor through the real binary: `tracecast validate` reports every bad
//! rule with its file position, key path and exact message; a pipeline with `or` and `and`
//! groups over `input contains`, `total_cost gt`, `model regex`, `user_id starts_with`, and
//! excludes over `session_id equals` and an attribute's `not_exists`, delivers exactly the
//! requests the rules keep. (Every field and operator has its own case in
//! crates/processors/tests/filter.rs.)

mod destinations;

use std::collections::BTreeSet;
use std::process::Command;

use destinations::{exporter_sent, llm_trace, post, processor_dropped, processor_in, wait_for};
use tracecast_core::proto::trace::v1::Span;
use tracecast_tests::{
    free_port, local, tracecast_bin, Daemon, Exporter, RecordingOtlpServer, TestConfig,
};

/// Literal text, not [`TestConfig`]: the test asserts line and column of each problem.
const BAD: &str = r#"receivers:
  otlp:
    endpoint: 127.0.0.1:4318
processors:
  filter/bad:
    include:
      - rules:
          - {field: input, operator: regex, value: "("}
          - {field: total_cost, operator: gt, value: "a lot"}
          - {field: modle, operator: equals, value: x}
          - {field: model, operator: eq, value: x}
    exclude:
      - logic: xor
        rules:
          - field: api_key_name
            operator: equals
  sampling/bad:
    ratio: 0
exporters:
  otlp/x:
    endpoint: http://127.0.0.1:9/v1/traces
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [filter/bad, sampling/bad]
      exporters: [otlp/x]
"#;

#[test]
fn validate_reports_every_bad_rule_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BAD).unwrap();
    let out = Command::new(tracecast_bin())
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let f = path.display();
    let expected = [
        format!("{f}:8:52: processors.filter/bad.include[0].rules[0].value: \"(\" is not a valid regular expression: unclosed group"),
        format!("{f}:9:54: processors.filter/bad.include[0].rules[1].value: operator gt needs a number, got the string \"a lot\""),
        format!("{f}:10:21: processors.filter/bad.include[0].rules[2].field: unknown field \"modle\"; known fields: model, provider, session_id, user_id, api_key_name, finish_reason, input, output, total_cost, total_tokens, prompt_tokens, completion_tokens (or attribute: <key> for any span attribute)"),
        format!("{f}:11:38: processors.filter/bad.include[0].rules[3].operator: unknown operator \"eq\"; known operators: equals, not_equals, contains, not_contains, regex, starts_with, ends_with, gt, lt, gte, lte, exists, not_exists"),
        format!("{f}:13:16: processors.filter/bad.exclude[0].logic: unknown logic \"xor\"; use and (every rule) or or (any rule)"),
        format!("{f}:15:13: processors.filter/bad.exclude[0].rules[0].value: operator equals needs a value"),
        format!("{f}:18:12: processors.sampling/bad.ratio: must be between 0.0001 and 1 (the share kept: 0.05 keeps 5%), got 0"),
    ];
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("bad.yaml:")).collect();
    assert_eq!(lines, expected, "{err}");
}

const RULES: &str = r#"{
  include: [
    {logic: or, rules: [
      {field: input, operator: contains, value: refund},
      {field: total_cost, operator: gt, value: 0.05}]},
    {logic: and, rules: [
      {field: model, operator: regex, value: "^anthropic/"},
      {field: user_id, operator: starts_with, value: vip-}]}],
  exclude: [
    {rules: [{field: session_id, operator: equals, value: session-test}]},
    {rules: [{attribute: trace.metadata.environment, operator: not_exists}]}]
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_receives_exactly_the_requests_its_rules_keep() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = TestConfig::new(port)
        .processor("metadata")
        .processor_with("filter", RULES)
        .exporter(Exporter::otlp("otlp/backend", backend.endpoint()).protobuf())
        .queue_dir(dir.path().join("queue"))
        .admin_port(admin)
        .yaml();
    let daemon = Daemon::run_config(dir.path(), "filter", &yaml, &[], local(port));

    let openai = "openai/gpt-4o";
    let claude = "anthropic/claude-sonnet-4";
    let mut no_environment = llm_trace("u7", "s7", openai, "I want a refund", 0.01);
    no_environment[0].attributes.retain(|kv| kv.key != "trace");
    // (trace, kept?)
    let cases: Vec<(Vec<Span>, bool)> = vec![
        (
            llm_trace("u1", "s1", openai, "Can I get a refund?", 0.01),
            true,
        ),
        (llm_trace("u2", "s2", openai, "Write a novel", 0.10), true),
        (llm_trace("u3", "s3", openai, "Hello", 0.01), false),
        (llm_trace("vip-4", "s4", claude, "Hello", 0.01), true),
        (llm_trace("user-5", "s5", claude, "Hello", 0.01), false),
        (
            llm_trace("u6", "session-test", openai, "refund please", 0.01),
            false,
        ),
        (no_environment, false),
    ];
    let expected: BTreeSet<Vec<u8>> = cases
        .iter()
        .filter(|(_, kept)| *kept)
        .map(|(t, _)| t[0].trace_id.clone())
        .collect();
    let all: Vec<Span> = cases.iter().flat_map(|(t, _)| t.clone()).collect();
    // Several requests (traces) in each received batch.
    let client = reqwest::Client::new();
    post(&client, local(port), all[..9].to_vec(), None).await;
    post(&client, local(port), all[9..].to_vec(), None).await;

    let kept = expected.len() as u64 * 3;
    wait_for(
        local(admin),
        &daemon,
        &[
            (&processor_in("filter"), all.len() as u64),
            (
                &processor_dropped("filter", "filtered"),
                all.len() as u64 - kept,
            ),
            (&exporter_sent("otlp/backend"), kept),
        ],
    )
    .await;
    let received = backend.spans();
    assert_eq!(received.len() as u64, kept);
    let traces: BTreeSet<Vec<u8>> = received.iter().map(|s| s.trace_id.clone()).collect();
    assert_eq!(traces, expected);
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

/// The README's side-by-side example (the gateway's destination form next to the tracecast
/// config doing the same) is a valid config.
#[test]
fn the_readme_side_by_side_config_validates() {
    let readme = std::fs::read_to_string(tracecast_tests::repo_root().join("README.md")).unwrap();
    let section = readme
        .split_once("Three destinations as the gateway's form has them")
        .expect("README side-by-side section")
        .1;
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("\n```").next())
        .expect("the section's YAML block");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("side-by-side.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(tracecast_bin())
        .args(["validate", "--config"])
        .arg(&path)
        .envs([
            ("TEAM_A_TOKEN", "a"),
            ("TEAM_B_TOKEN", "b"),
            ("AWS_ACCESS_KEY_ID", "k"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AXIOM_TOKEN", "x"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{yaml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
