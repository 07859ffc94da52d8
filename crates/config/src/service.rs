//! Decodes the `service` section key by key, so that one bad key does not hide the problems
//! in the others, and runs the pipeline graph checks ([`crate::graph`]).
//!
//! Adding a service setting: a field on [`ServiceConfig`] and an arm in [`decode_service`];
//! the `service_matches_serde` test fails if the two disagree.

use std::collections::BTreeMap;

use serde_yaml::Value;
use tracecast_core::{ComponentId, ComponentKind};

use crate::decode::{At, Reporter};
use crate::graph::{self, Defined};
use crate::model::{
    AdminConfig, PipelineConfig, SelfTelemetryOtlpConfig, ServiceConfig, TelemetryConfig,
};
use crate::positions::{join_index, join_key};

const SERVICE_KEYS: &[&str] = &[
    "pipelines",
    "telemetry",
    "shutdown_timeout",
    "admin",
    "queue_dir",
    "queue",
    "memory_limit",
];
const PIPELINE_KEYS: &[&str] = &["receivers", "processors", "exporters"];

/// Decodes `service` (absent: all defaults, which then fails the "no pipelines" check).
pub(crate) fn decode_service(
    value: Option<&Value>,
    r: &mut Reporter<'_>,
    defined: &Defined<'_>,
) -> ServiceConfig {
    let mut service = ServiceConfig::default();
    // Where "no pipelines" points; `None` once pipelines were written (or mis-typed, which
    // is reported on its own).
    let mut missing_at = Some("service");
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(map)) => {
            for (key, value) in map {
                let key = key.as_str().unwrap_or_default();
                let path = join_key("service", key);
                match key {
                    "pipelines" => {
                        missing_at = match value {
                            Value::Null => Some("service.pipelines"),
                            Value::Mapping(m) if m.is_empty() => Some("service.pipelines"),
                            _ => None,
                        };
                        service.pipelines = decode_pipelines(value, &path, r, defined);
                    }
                    "telemetry" => {
                        if let Some(t) = r.decode::<TelemetryConfig>(value, &path) {
                            if let Some(otlp) = &t.otlp {
                                check_self_telemetry(otlp, &path, r);
                            }
                            service.telemetry = t;
                        }
                    }
                    "shutdown_timeout" => {
                        if let Some(d) = r.decode(value, &path) {
                            service.shutdown_timeout = d;
                        }
                    }
                    "admin" => {
                        if let Some(a) = r.decode::<AdminConfig>(value, &path) {
                            if a.recheck_interval.get().is_zero() {
                                r.push(
                                    At::Value,
                                    &join_key(&path, "recheck_interval"),
                                    "recheck_interval must be more than 0 (e.g. 30s)",
                                );
                            }
                            service.admin = a;
                        }
                    }
                    "queue_dir" => {
                        if let Some(d) = r.decode(value, &path) {
                            service.queue_dir = d;
                        }
                    }
                    "queue" => {
                        if let Some(q) = r.decode(value, &path) {
                            service.queue = q;
                        }
                    }
                    "memory_limit" => {
                        if let Some(m) = r.decode(value, &path) {
                            service.memory_limit = m;
                        }
                    }
                    other => r.push(At::Key, &path, unknown_key(other, SERVICE_KEYS)),
                }
            }
        }
        Some(other) => {
            r.push(
                At::Value,
                "service",
                wrong_type(other, "a mapping with pipelines"),
            );
            missing_at = None;
        }
    }
    if let Some(path) = missing_at {
        graph::no_pipelines(r, path);
    }
    service
}

/// `service.telemetry.otlp` needs an http(s) endpoint and a positive interval.
fn check_self_telemetry(otlp: &SelfTelemetryOtlpConfig, path: &str, r: &mut Reporter<'_>) {
    let otlp_path = join_key(path, "otlp");
    if !(otlp.endpoint.starts_with("http://") || otlp.endpoint.starts_with("https://")) {
        r.push(
            At::Value,
            &join_key(&otlp_path, "endpoint"),
            "endpoint must be an http:// or https:// URL, like http://collector:4318",
        );
    }
    if otlp.interval.get().is_zero() {
        r.push(
            At::Value,
            &join_key(&otlp_path, "interval"),
            "interval must be more than 0 (e.g. 30s)",
        );
    }
    if !(0.0..=1.0).contains(&otlp.traces_sampling_ratio) {
        r.push(
            At::Value,
            &join_key(&otlp_path, "traces_sampling_ratio"),
            "traces_sampling_ratio must be between 0 (no spans) and 1 (every export)",
        );
    }
}

fn decode_pipelines(
    value: &Value,
    path: &str,
    r: &mut Reporter<'_>,
    defined: &Defined<'_>,
) -> BTreeMap<String, PipelineConfig> {
    let mut out = BTreeMap::new();
    let map = match value {
        Value::Null => return out,
        Value::Mapping(map) => map,
        other => {
            r.push(
                At::Value,
                path,
                wrong_type(other, "a mapping of pipeline names to pipelines"),
            );
            return out;
        }
    };
    for (name, body) in map {
        let name = name.as_str().unwrap_or_default();
        let pipeline_path = join_key(path, name);
        if let Err(message) = check_pipeline_name(name) {
            r.push(At::Key, &pipeline_path, message);
            continue;
        }
        let pipeline = decode_pipeline(name, body, &pipeline_path, r, defined);
        out.insert(name.to_string(), pipeline);
    }
    out
}

fn check_pipeline_name(name: &str) -> Result<(), String> {
    let id = ComponentId::parse(name).map_err(|e| format!("invalid pipeline name: {e}"))?;
    if id.type_name() != "traces" {
        return Err(format!(
            "pipeline {name} carries {}, but tracecast carries traces only; name pipelines traces or traces/<name>",
            id.type_name()
        ));
    }
    Ok(())
}

fn decode_pipeline(
    name: &str,
    value: &Value,
    path: &str,
    r: &mut Reporter<'_>,
    defined: &Defined<'_>,
) -> PipelineConfig {
    let mut pipeline = PipelineConfig::default();
    // Lists that were written with items: if all of them were bad ids, those errors say
    // enough without "has no receivers" on top.
    let mut written: Vec<&str> = Vec::new();
    match value {
        Value::Null => {}
        Value::Mapping(map) => {
            for (key, list) in map {
                let key = key.as_str().unwrap_or_default();
                let list_path = join_key(path, key);
                let (kind, target) = match key {
                    "receivers" => (ComponentKind::Receiver, &mut pipeline.receivers),
                    "processors" => (ComponentKind::Processor, &mut pipeline.processors),
                    "exporters" => (ComponentKind::Exporter, &mut pipeline.exporters),
                    other => {
                        r.push(At::Key, &list_path, unknown_key(other, PIPELINE_KEYS));
                        continue;
                    }
                };
                if !matches!(list, Value::Null) && list.as_sequence().is_none_or(|s| !s.is_empty())
                {
                    written.push(key);
                }
                let ids = decode_ids(list, &list_path, r);
                graph::check_references(r, name, kind, &list_path, &ids, defined);
                *target = ids.into_iter().map(|(_, id)| id).collect();
            }
        }
        other => {
            r.push(
                At::Value,
                path,
                wrong_type(other, "a mapping with receivers, processors and exporters"),
            );
            return pipeline;
        }
    }
    graph::check_not_empty(r, name, path, &pipeline, &written);
    pipeline
}

/// Reads a list of ids, keeping each one's index for error positions; bad items are
/// reported and skipped.
fn decode_ids(value: &Value, path: &str, r: &mut Reporter<'_>) -> Vec<(usize, ComponentId)> {
    let items = match value {
        Value::Null => return Vec::new(),
        Value::Sequence(items) => items,
        other => {
            r.push(
                At::Value,
                path,
                wrong_type(other, "a list of component ids, like [otlp]"),
            );
            return Vec::new();
        }
    };
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = join_index(path, i);
        match item {
            Value::String(s) => match ComponentId::parse(s) {
                Ok(id) => ids.push((i, id)),
                Err(e) => r.push(At::Value, &item_path, e.to_string()),
            },
            other => r.push(At::Value, &item_path, wrong_type(other, "a component id")),
        }
    }
    ids
}

/// serde's wording, so hand-decoded and typed-decoded sections read alike.
pub(crate) fn unknown_key(key: &str, expected: &[&str]) -> String {
    let list: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
    format!("unknown field `{key}`, expected one of {}", list.join(", "))
}

/// serde's "invalid type: ..., expected ..." wording for a value of the wrong shape.
pub(crate) fn wrong_type(found: &Value, expected: &str) -> String {
    let found = match found {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {s:?}"),
        Value::Sequence(_) => "sequence".to_string(),
        Value::Mapping(_) => "map".to_string(),
        Value::Tagged(_) => "tagged value".to_string(),
    };
    format!("invalid type: {found}, expected {expected}")
}
