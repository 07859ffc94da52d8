//! `Config::decode`: a component's typed config, with unknown keys, wrong types, bad
//! values and validation problems reported with line, column and the full key path, and
//! values from the environment never echoed.

use std::collections::BTreeMap;

use serde::Deserialize;
use tracecast_config::{load_str_with_env, Config, ConfigErrors, Duration, FieldError, Validate};
use tracecast_core::ComponentId;

/// A stand-in for a component's config, shaped like the real ones.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TestConfig {
    endpoint: String,
    port: u16,
    timeout: Duration,
    headers: BTreeMap<String, String>,
    api_keys: Vec<ApiKey>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKey {
    name: String,
    token: String,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:4318".into(),
            port: 4318,
            timeout: Duration::from_secs(10),
            headers: BTreeMap::new(),
            api_keys: Vec::new(),
        }
    }
}

impl Validate for TestConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        if !self.endpoint.starts_with("http://") && !self.endpoint.starts_with("https://") {
            problems.push(FieldError::new(
                "endpoint",
                format!("{:?} is not an http(s) URL", self.endpoint),
            ));
        }
        for (i, key) in self.api_keys.iter().enumerate() {
            if key.token.len() < 8 {
                problems.push(FieldError::new(
                    format!("api_keys[{i}].token"),
                    "a token needs at least 8 characters",
                ));
            }
        }
        problems
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "PORT" => Some("4319".into()),
        "NUMERIC_TOKEN" => Some("12345678".into()),
        "SECRET" => Some("hunter2-very-secret".into()),
        "SECRET_DURATION" => Some("10 parsecs".into()),
        _ => None,
    }
}

/// Wraps `exporter` (YAML lines at indent 4) into a complete file with one exporter `test/x`.
fn config_with(exporter: &str) -> Config {
    let text = format!(
        "receivers:\n  otlp:\nexporters:\n  test/x:\n{exporter}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [test/x]\n"
    );
    load_str_with_env("config.yaml", &text, &env).unwrap()
}

fn decode(exporter: &str) -> Result<TestConfig, ConfigErrors> {
    let config = config_with(exporter);
    let raw = &config.exporters[&ComponentId::parse("test/x").unwrap()];
    config.decode(raw)
}

fn decode_err(exporter: &str) -> Vec<String> {
    decode(exporter)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn decodes_with_env_and_defaults() {
    let c = decode(
        "    port: ${env:PORT}\n    headers: {Authorization: \"Bearer ${env:SECRET}\", Price: $$5}\n    api_keys:\n      - {name: gw, token: \"${env:NUMERIC_TOKEN}\"}\n",
    )
    .unwrap();
    assert_eq!(
        c,
        TestConfig {
            port: 4319,
            headers: BTreeMap::from([
                ("Authorization".into(), "Bearer hunter2-very-secret".into()),
                ("Price".into(), "$5".into()),
            ]),
            api_keys: vec![ApiKey {
                name: "gw".into(),
                token: "12345678".into()
            }],
            ..TestConfig::default()
        }
    );
}

#[test]
fn an_empty_body_decodes_to_the_defaults() {
    let config = load_str_with_env(
        "config.yaml",
        "receivers: {otlp: }\nexporters:\n  test/x:\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [test/x]}}}\n",
        &env,
    )
    .unwrap();
    let raw = &config.exporters[&ComponentId::parse("test/x").unwrap()];
    assert_eq!(
        config.decode::<TestConfig>(raw).unwrap(),
        TestConfig::default()
    );
}

#[test]
fn unknown_component_key_gives_line_and_path() {
    assert_eq!(
        decode_err("    api_keys:\n      - name: gw\n        tokn: abcdefgh\n"),
        ["config.yaml:7:9: exporters.test/x.api_keys[0].tokn: unknown field `tokn`, expected `name` or `token`"]
    );
    assert_eq!(
        decode_err("    port: 1\n    endpont: http://x\n"),
        ["config.yaml:6:5: exporters.test/x.endpont: unknown field `endpont`, expected one of `endpoint`, `port`, `timeout`, `headers`, `api_keys`"]
    );
}

#[test]
fn wrong_type_gives_line_and_path() {
    assert_eq!(
        decode_err("    port: eighty\n"),
        ["config.yaml:5:11: exporters.test/x.port: invalid type: string \"eighty\", expected u16"]
    );
    assert_eq!(
        decode_err("    headers: [a, b]\n"),
        ["config.yaml:5:14: exporters.test/x.headers: invalid type: sequence, expected a map"]
    );
    assert_eq!(
        decode_err("    api_keys:\n      - {name: gw}\n"),
        ["config.yaml:6:9: exporters.test/x.api_keys[0]: missing field `token`"]
    );
}

#[test]
fn bad_duration_in_a_component() {
    assert_eq!(
        decode_err("    timeout: 10x\n"),
        ["config.yaml:5:14: exporters.test/x.timeout: invalid duration \"10x\": expected a number and a unit, like 200ms, 10s, 5m or 1h"]
    );
}

#[test]
fn validation_problems_are_all_reported_with_positions() {
    assert_eq!(
        decode_err("    endpoint: ftp://x\n    api_keys:\n      - {name: a, token: short}\n      - {name: b, token: long-enough}\n      - {name: c, token: tiny}\n"),
        [
            "config.yaml:5:15: exporters.test/x.endpoint: \"ftp://x\" is not an http(s) URL",
            "config.yaml:7:26: exporters.test/x.api_keys[0].token: a token needs at least 8 characters",
            "config.yaml:9:26: exporters.test/x.api_keys[2].token: a token needs at least 8 characters",
        ]
    );
}

#[test]
fn values_from_the_environment_are_never_echoed() {
    let e = decode_err("    timeout: \"${env:SECRET_DURATION}\"\n");
    assert_eq!(
        e,
        ["config.yaml:5:14: exporters.test/x.timeout: invalid duration (the value of ${env:SECRET_DURATION}): expected a number and a unit, like 200ms, 10s, 5m or 1h"]
    );
    let e = decode_err("    port: ${env:SECRET}\n");
    assert_eq!(
        e,
        ["config.yaml:5:11: exporters.test/x.port: invalid type: string (the value of ${env:SECRET}), expected u16"]
    );
    // Embedded in a longer string, and reported by the component's own validation.
    let e = decode_err("    endpoint: \"${env:SECRET}.example\"\n");
    assert_eq!(
        e,
        ["config.yaml:5:15: exporters.test/x.endpoint: the value of ${env:SECRET} is not valid here (values from the environment are never shown; check the variable)"]
    );
}

#[test]
fn an_unquoted_whole_reference_is_reread_and_the_error_says_how_to_keep_a_string() {
    let e = decode_err("    api_keys:\n      - name: gw\n        token: ${env:NUMERIC_TOKEN}\n");
    assert_eq!(
        e,
        ["config.yaml:7:16: exporters.test/x.api_keys[0].token: invalid type: integer (the value of ${env:NUMERIC_TOKEN}), expected a string; to keep ${env:NUMERIC_TOKEN} a string, quote it: \"${env:NUMERIC_TOKEN}\""]
    );
}

#[test]
fn error_at_points_at_the_component_key() {
    let config = config_with("    port: 1\n");
    let raw = &config.exporters[&ComponentId::parse("test/x").unwrap()];
    assert_eq!(
        config
            .error_at(raw, "unknown exporter type \"test\"")
            .to_string(),
        "config.yaml:4:3: exporters.test/x: unknown exporter type \"test\""
    );
}
