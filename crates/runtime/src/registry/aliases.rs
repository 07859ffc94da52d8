//! The OpenTelemetry Collector's names for tracecast's component types, so that a
//! Collector block can be pasted unchanged: `otlp_http` (and its former name `otlphttp`)
//! is tracecast's `otlp` forwarder. An alias also reads the body with the Collector's
//! meaning of its keys where tracecast's differ (see [`collector_otlp_http`]).

use std::borrow::Cow;

use serde_yaml::{Mapping, Value};
use tracecast_config::{Config, RawComponent};
use tracecast_core::ComponentKind;

/// `(kind, Collector type, tracecast type, body translation)`.
type Alias = (
    ComponentKind,
    &'static str,
    &'static str,
    fn(&Value) -> Value,
);

/// Every alias, in one table.
const ALIASES: &[Alias] = &[
    (
        ComponentKind::Exporter,
        "otlp_http",
        "otlp",
        collector_otlp_http,
    ),
    (
        ComponentKind::Exporter,
        "otlphttp",
        "otlp",
        collector_otlp_http,
    ),
];

/// The tracecast type `raw` is configured as, and its body in tracecast's keys.
pub(crate) fn resolve(raw: &RawComponent) -> (&str, Cow<'_, RawComponent>) {
    let name = raw.id.type_name();
    match ALIASES
        .iter()
        .find(|(kind, alias, _, _)| *kind == raw.kind && *alias == name)
    {
        Some((_, _, canonical, translate)) => {
            let mut translated = raw.clone();
            translated.body = translate(&raw.body);
            (canonical, Cow::Owned(translated))
        }
        None => (name, Cow::Borrowed(raw)),
    }
}

/// One line per component configured under a Collector alias, for `tracecast validate`
/// (e.g. `exporters.otlp_http/axiom: type "otlp_http" is the Collector's name for
/// tracecast's "otlp" exporter ...`).
pub fn notes(config: &Config) -> Vec<String> {
    let sections = [&config.receivers, &config.processors, &config.exporters];
    let mut notes = Vec::new();
    for raw in sections.into_iter().flat_map(|s| s.values()) {
        let name = raw.id.type_name();
        if let Some((kind, alias, canonical, _)) = ALIASES
            .iter()
            .find(|(kind, alias, _, _)| *kind == raw.kind && *alias == name)
        {
            notes.push(format!(
                "{}: type {alias:?} is the Collector's name for tracecast's {canonical:?} {kind}; its body is read with the Collector's keys (endpoint + /v1/traces or traces_endpoint, encoding proto by default, compression_params.level)",
                raw.path
            ));
        }
    }
    notes
}

/// The Collector's `otlphttp` exporter body in the `otlp` exporter's keys:
/// - `traces_endpoint` (the full URL) is tracecast's `endpoint`; without it the Collector
///   appends `/v1/traces` to `endpoint`, and so does this;
/// - `encoding: proto` is `protobuf`, and the Collector's default encoding (protobuf)
///   applies when none is given (tracecast's own default is JSON);
/// - `compression_params: {level}` is `compression_level`;
/// - `sending_queue.enabled` is dropped (tracecast's queue is always on, and durable).
///
/// Every other key keeps its name and is checked by the `otlp` config as usual.
fn collector_otlp_http(body: &Value) -> Value {
    let Value::Mapping(map) = body else {
        return body.clone();
    };
    let mut out = Mapping::new();
    let traces_endpoint = map.get("traces_endpoint").cloned();
    for (key, value) in map {
        match key.as_str() {
            Some("traces_endpoint") => {}
            Some("endpoint") if traces_endpoint.is_none() => {
                let value = match value {
                    Value::String(base) => {
                        Value::String(format!("{}/v1/traces", base.trim_end_matches('/')))
                    }
                    other => other.clone(),
                };
                out.insert(key.clone(), value);
            }
            Some("endpoint") => {}
            Some("encoding") => {
                let value = match value.as_str() {
                    Some("proto") => Value::String("protobuf".into()),
                    _ => value.clone(),
                };
                out.insert(key.clone(), value);
            }
            Some("compression_params") => match value.get("level") {
                Some(level) => {
                    out.insert("compression_level".into(), level.clone());
                }
                None => {
                    out.insert(key.clone(), value.clone());
                }
            },
            Some("sending_queue") => {
                let mut queue = value.clone();
                if let Value::Mapping(q) = &mut queue {
                    q.remove("enabled");
                }
                out.insert(key.clone(), queue);
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(url) = traces_endpoint {
        out.insert("endpoint".into(), url);
    }
    if !out.contains_key("encoding") {
        out.insert("encoding".into(), "protobuf".into());
    }
    Value::Mapping(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(yaml: &str) -> Value {
        collector_otlp_http(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn the_collector_endpoint_gets_the_traces_path_and_protobuf() {
        assert_eq!(
            translate("endpoint: https://otlp.example.com/\ncompression: gzip\n"),
            serde_yaml::from_str::<Value>(
                "endpoint: https://otlp.example.com/v1/traces\ncompression: gzip\nencoding: protobuf\n"
            )
            .unwrap()
        );
    }

    #[test]
    fn traces_endpoint_wins_and_collector_keys_are_renamed() {
        assert_eq!(
            translate(
                "endpoint: https://a\ntraces_endpoint: https://b/x\nencoding: proto\n\
                 compression_params: {level: 3}\nsending_queue: {enabled: true, queue_size: 10}\n"
            ),
            serde_yaml::from_str::<Value>(
                "encoding: protobuf\ncompression_level: 3\nsending_queue: {queue_size: 10}\n\
                 endpoint: https://b/x\n"
            )
            .unwrap()
        );
        assert_eq!(
            translate("endpoint: http://h:4318\nencoding: json\n"),
            serde_yaml::from_str::<Value>("endpoint: http://h:4318/v1/traces\nencoding: json\n")
                .unwrap()
        );
    }
}
