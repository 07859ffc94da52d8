//! Config fixtures in `testdata/`: the valid file gives the exact struct, each bad file the
//! exact message (file:line:col: path: message).

use std::collections::BTreeMap;
use std::path::PathBuf;

use tracecast_config::{
    load_file, load_str_with_env, AdminConfig, Config, ConfigErrors, Duration, LogFormat,
    LogsConfig, PipelineConfig, RawComponent, ServiceConfig, TelemetryConfig,
};
use tracecast_core::{ComponentId, ComponentKind};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// The environment the fixtures see; anything else is unset.
fn env(name: &str) -> Option<String> {
    match name {
        "TRACECAST_INGEST_TOKEN" => Some("ingest-secret-1".into()),
        "AXIOM_TOKEN" => Some("xaat-secret-2".into()),
        _ => None,
    }
}

fn load(name: &str) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    load_str_with_env(name, &text, &env)
}

fn errors(name: &str) -> Vec<String> {
    load(name)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn id(s: &str) -> ComponentId {
    ComponentId::parse(s).unwrap()
}

fn ids(list: &[&str]) -> Vec<ComponentId> {
    list.iter().map(|s| id(s)).collect()
}

fn raw(kind: ComponentKind, section: &str, name: &str, body: &str) -> (ComponentId, RawComponent) {
    let body = if body.is_empty() {
        serde_yaml::Value::Mapping(Default::default())
    } else {
        serde_yaml::from_str(body).unwrap()
    };
    let component = RawComponent {
        id: id(name),
        kind,
        body,
        path: format!("{section}.{name}"),
    };
    (id(name), component)
}

#[test]
fn valid_config_gives_the_exact_struct() {
    let config = load("config.yaml").unwrap();
    assert_eq!(config.source, "config.yaml");
    let receivers = BTreeMap::from([
        raw(
            ComponentKind::Receiver,
            "receivers",
            "otlp",
            "{endpoint: '127.0.0.1:4318', path: /v1/traces, max_request_body_size: 16MiB, \
             api_keys: [{name: prod-gateway, token: ingest-secret-1}]}",
        ),
        raw(ComponentKind::Receiver, "receivers", "otlp/internal", ""),
    ]);
    assert_eq!(config.receivers, receivers);
    let processors = BTreeMap::from([raw(
        ComponentKind::Processor,
        "processors",
        "batch",
        "{timeout: 200ms}",
    )]);
    assert_eq!(config.processors, processors);
    let exporters = BTreeMap::from([
        raw(
            ComponentKind::Exporter,
            "exporters",
            "otlp/axiom",
            "{endpoint: 'https://api.axiom.co/v1/traces', encoding: json, compression: gzip, timeout: 10s, \
             headers: {Authorization: Bearer xaat-secret-2, X-Axiom-Dataset: my-dataset}}",
        ),
        raw(
            ComponentKind::Exporter,
            "exporters",
            "otlp/local",
            "{endpoint: 'http://127.0.0.1:4319/v1/traces', timeout: 5s}",
        ),
    ]);
    assert_eq!(config.exporters, exporters);
    let service = ServiceConfig {
        pipelines: BTreeMap::from([
            (
                "traces/axiom".to_string(),
                PipelineConfig {
                    receivers: ids(&["otlp"]),
                    processors: vec![],
                    exporters: ids(&["otlp/axiom"]),
                },
            ),
            (
                "traces/local".to_string(),
                PipelineConfig {
                    receivers: ids(&["otlp", "otlp/internal"]),
                    processors: ids(&["batch"]),
                    exporters: ids(&["otlp/local", "otlp/axiom"]),
                },
            ),
        ]),
        telemetry: TelemetryConfig {
            logs: LogsConfig {
                level: "debug".into(),
                format: LogFormat::Json,
            },
            otlp: None,
        },
        shutdown_timeout: Duration::from_secs(45),
        admin: AdminConfig::default(),
        ..ServiceConfig::default()
    };
    assert_eq!(config.service, service);
}

/// The loader decodes `service` key by key (to report every problem); serde's derive on
/// the same struct must agree, so a field added to `ServiceConfig` but not to the loader
/// (or the reverse) fails here.
#[test]
fn service_matches_serde() {
    let config = load("config.yaml").unwrap();
    let text = std::fs::read_to_string(fixture("config.yaml")).unwrap();
    let whole: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let via_serde: ServiceConfig = serde_yaml::from_value(whole["service"].clone()).unwrap();
    assert_eq!(config.service, via_serde);
}

#[test]
fn defaults_apply_when_service_settings_are_absent() {
    let text = "receivers: {otlp: }\nexporters: {otlp: }\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}\n";
    let config = load_str_with_env("mini.yaml", text, &env).unwrap();
    assert_eq!(config.service.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.service.telemetry, TelemetryConfig::default());
    assert_eq!(config.service.telemetry.logs.level, "info");
    assert_eq!(config.service.telemetry.logs.format, LogFormat::Text);
    assert!(config.processors.is_empty());
}

#[test]
fn load_file_names_the_path_and_reports_a_missing_file() {
    let path = fixture("bad_duration.yaml");
    let e = load_file(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:10:21: service.shutdown_timeout: invalid duration \"10x\": expected a number and a unit, like 200ms, 10s, 5m or 1h",
            path.display()
        )
    );
    let missing = fixture("does_not_exist.yaml");
    let e = load_file(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{e}"
    );
}

#[test]
fn bad_unknown_key() {
    assert_eq!(
        errors("bad_unknown_key.yaml"),
        [
            "bad_unknown_key.yaml:5:1: extensions: unknown field `extensions`, expected one of `receivers`, `processors`, `exporters`, `service`",
            "bad_unknown_key.yaml:12:7: service.pipelines.traces.processor: unknown field `processor`, expected one of `receivers`, `processors`, `exporters`",
            "bad_unknown_key.yaml:13:3: service.extensions: unknown field `extensions`, expected one of `pipelines`, `telemetry`, `shutdown_timeout`, `admin`, `queue_dir`, `queue`, `memory_limit`",
        ]
    );
}

#[test]
fn bad_wrong_type() {
    assert_eq!(
        errors("bad_wrong_type.yaml"),
        ["bad_wrong_type.yaml:9:19: service.pipelines.traces.processors: invalid type: integer `5`, expected a list of component ids, like [otlp]"]
    );
}

#[test]
fn bad_duplicate_id() {
    assert_eq!(
        errors("bad_duplicate_id.yaml"),
        ["bad_duplicate_id.yaml:7:3: exporters.otlp/axiom: duplicate key `otlp/axiom` (first defined at line 5); keep one"]
    );
}

#[test]
fn bad_undefined_reference() {
    assert_eq!(
        errors("bad_undefined_reference.yaml"),
        ["bad_undefined_reference.yaml:10:31: service.pipelines.traces/axiom.exporters[1]: pipeline traces/axiom references exporter otlp/x which is not configured (configured exporters: otlp/axiom)"]
    );
}

#[test]
fn bad_empty_pipeline() {
    assert_eq!(
        errors("bad_empty_pipeline.yaml"),
        ["bad_empty_pipeline.yaml:7:5: service.pipelines.traces.exporters: pipeline traces has no exporters; list at least one exporter"]
    );
}

#[test]
fn bad_unset_env() {
    assert_eq!(
        errors("bad_unset_env.yaml"),
        ["bad_unset_env.yaml:5:16: receivers.otlp.api_keys[0].token: environment variable TRACECAST_TEST_UNSET_TOKEN is not set; set it, or give a default with ${env:TRACECAST_TEST_UNSET_TOKEN:-value}"]
    );
}

#[test]
fn bad_duration() {
    assert_eq!(
        errors("bad_duration.yaml"),
        ["bad_duration.yaml:10:21: service.shutdown_timeout: invalid duration \"10x\": expected a number and a unit, like 200ms, 10s, 5m or 1h"]
    );
}

#[test]
fn bad_admin_endpoint() {
    assert_eq!(
        errors("bad_admin_endpoint.yaml"),
        ["bad_admin_endpoint.yaml:11:15: service.admin.endpoint: \"nonsense\" is not an IP address and port; expected ip:port, like 127.0.0.1:13133 or 0.0.0.0:13133, or \"\" to disable the admin endpoint"]
    );
}

#[test]
fn empty_admin_endpoint_disables_it() {
    let text = "receivers: {otlp: }\nexporters: {otlp: }\nservice: {admin: {endpoint: \"\"}, pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}\n";
    let config = load_str_with_env("mini.yaml", text, &env).unwrap();
    assert_eq!(config.service.admin.endpoint, None);
}

#[test]
fn bad_component_id() {
    assert_eq!(
        errors("bad_component_id.yaml"),
        ["bad_component_id.yaml:5:3: exporters.otlp/: component id \"otlp/\" has an empty name after '/'; exporter ids are type or type/name, like otlp or otlp/axiom"]
    );
}

#[test]
fn three_problems_in_one_file_are_all_reported_in_file_order() {
    let e = load("bad_three_problems.yaml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "bad_three_problems.yaml:3:15: receivers.otlp.endpoint: environment variable TRACECAST_TEST_UNSET_ENDPOINT is not set; set it, or give a default with ${env:TRACECAST_TEST_UNSET_ENDPOINT:-value}\n\
         bad_three_problems.yaml:10:25: service.pipelines.traces.exporters[1]: pipeline traces references exporter s3 which is not configured (configured exporters: otlp)\n\
         bad_three_problems.yaml:11:21: service.shutdown_timeout: invalid duration \"soon\": expected a number and a unit, like 200ms, 10s, 5m or 1h"
    );
}
