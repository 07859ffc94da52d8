//! The entry points: read a file or a string, expand the environment, check the top-level
//! shape, the component ids and the pipeline graph, and report every problem at once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_yaml::{Mapping, Value};
use tracecast_core::{ComponentId, ComponentKind};

use crate::decode::{At, Reporter};
use crate::document;
use crate::error::{ConfigError, ConfigErrors};
use crate::graph::Defined;
use crate::model::{Config, RawComponent};
use crate::positions::join_key;
use crate::service::{decode_service, unknown_key, wrong_type};
use crate::yaml;

const TOP_LEVEL_KEYS: &[&str] = &["receivers", "processors", "exporters", "service"];

/// Loads a config file; `${env:...}` references read the process environment.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    strict(load_file_with_problems(path))
}

/// Like [`load_file`], but once the document parsed, returns the config together with the
/// problems found so far, so the caller can add the problems of the component bodies it
/// decodes and report everything at once. `Err` only when nothing usable was read.
pub fn load_file_with_problems(path: &Path) -> Result<(Config, ConfigErrors), ConfigErrors> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: name.clone(),
        line: None,
        column: None,
        path: String::new(),
        message: format!("cannot read the config file: {e}"),
    })?;
    load_str_with_problems(&name, &text, &|name| std::env::var(name).ok())
}

fn strict(loaded: Result<(Config, ConfigErrors), ConfigErrors>) -> Result<Config, ConfigErrors> {
    match loaded {
        Ok((config, problems)) if problems.0.is_empty() => Ok(config),
        Ok((_, problems)) => Err(problems),
        Err(e) => Err(e),
    }
}

/// Loads config text; `source_name` names it in errors. Reads the process environment.
pub fn load_str(source_name: &str, text: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(source_name, text, &|name| std::env::var(name).ok())
}

/// Loads config text with `env` answering `${env:NAME}` lookups (tests pass a fixed map).
pub fn load_str_with_env(
    source_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    strict(load_str_with_problems(source_name, text, env))
}

/// Like [`load_str_with_env`], returning the problems beside the config once the document
/// parsed (see [`load_file_with_problems`]).
pub fn load_str_with_problems(
    source_name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, ConfigErrors), ConfigErrors> {
    let root = yaml::parse(text).map_err(|e| ConfigError {
        file: source_name.to_string(),
        line: Some(e.pos.line),
        column: Some(e.pos.column),
        path: String::new(),
        message: e.message,
    })?;
    let doc = document::build(source_name, root.as_ref(), env);
    let positions = Arc::new(doc.positions);
    let mut r = Reporter::new(source_name, &positions);
    r.errors = doc.errors;

    let empty = Mapping::new();
    let top = match &doc.root {
        Value::Mapping(map) => map,
        Value::Null => &empty,
        other => {
            r.push(
                At::Value,
                "",
                wrong_type(
                    other,
                    "a mapping with receivers, processors, exporters and service",
                ),
            );
            return Err(ConfigErrors::sorted(r.errors));
        }
    };
    for key in top.keys() {
        let key = key.as_str().unwrap_or_default();
        if !TOP_LEVEL_KEYS.contains(&key) {
            r.push(At::Key, key, unknown_key(key, TOP_LEVEL_KEYS));
        }
    }
    let receivers = components(top.get("receivers"), ComponentKind::Receiver, &mut r);
    let processors = components(top.get("processors"), ComponentKind::Processor, &mut r);
    let exporters = components(top.get("exporters"), ComponentKind::Exporter, &mut r);
    let defined = Defined {
        receivers: &receivers,
        processors: &processors,
        exporters: &exporters,
    };
    let service = decode_service(top.get("service"), &mut r, &defined);

    let problems = ConfigErrors::sorted(std::mem::take(&mut r.errors));
    let config = Config {
        source: source_name.to_string(),
        receivers,
        processors,
        exporters,
        service,
        positions,
    };
    Ok((config, problems))
}

fn section_name(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Receiver => "receivers",
        ComponentKind::Processor => "processors",
        ComponentKind::Exporter => "exporters",
    }
}

/// Reads one of `receivers`, `processors`, `exporters`: ids checked, bodies kept raw.
fn components(
    section: Option<&Value>,
    kind: ComponentKind,
    r: &mut Reporter<'_>,
) -> BTreeMap<ComponentId, RawComponent> {
    let name = section_name(kind);
    let mut out = BTreeMap::new();
    let map = match section {
        None | Some(Value::Null) => return out,
        Some(Value::Mapping(map)) => map,
        Some(other) => {
            r.push(
                At::Value,
                name,
                wrong_type(other, &format!("a mapping of {kind} ids to their settings")),
            );
            return out;
        }
    };
    for (key, body) in map {
        let key = key.as_str().unwrap_or_default();
        let path = join_key(name, key);
        let id = match ComponentId::parse(key) {
            Ok(id) => id,
            Err(e) => {
                r.push(
                    At::Key,
                    &path,
                    format!("{e}; {kind} ids are type or type/name, like otlp or otlp/axiom"),
                );
                continue;
            }
        };
        let body = match body {
            Value::Null => Value::Mapping(Mapping::new()),
            Value::Mapping(_) => body.clone(),
            other => {
                // Reported, but still declared, so pipelines naming it don't also fail.
                let expected = format!("the settings of {kind} {id} as a mapping");
                r.push(At::Value, &path, wrong_type(other, &expected));
                other.clone()
            }
        };
        out.insert(
            id.clone(),
            RawComponent {
                id,
                kind,
                body,
                path,
            },
        );
    }
    out
}
