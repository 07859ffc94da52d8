//! Pipeline graph checks: every reference names a configured component of the right kind,
//! no component is listed twice in one pipeline, every pipeline has a receiver and an
//! exporter, and there is at least one pipeline.

use std::collections::BTreeMap;

use tracecast_core::{ComponentId, ComponentKind};

use crate::decode::{At, Reporter};
use crate::model::{PipelineConfig, RawComponent};

/// The components configured in the file, by kind.
pub(crate) struct Defined<'a> {
    pub receivers: &'a BTreeMap<ComponentId, RawComponent>,
    pub processors: &'a BTreeMap<ComponentId, RawComponent>,
    pub exporters: &'a BTreeMap<ComponentId, RawComponent>,
}

impl Defined<'_> {
    fn of(&self, kind: ComponentKind) -> &BTreeMap<ComponentId, RawComponent> {
        match kind {
            ComponentKind::Receiver => self.receivers,
            ComponentKind::Processor => self.processors,
            ComponentKind::Exporter => self.exporters,
        }
    }
}

/// Checks one list of a pipeline; `ids` carry their index in the list for positions.
pub(crate) fn check_references(
    r: &mut Reporter<'_>,
    pipeline: &str,
    kind: ComponentKind,
    list_path: &str,
    ids: &[(usize, ComponentId)],
    defined: &Defined<'_>,
) {
    let configured = defined.of(kind);
    for (n, (index, id)) in ids.iter().enumerate() {
        let item_path = format!("{list_path}[{index}]");
        if ids[..n].iter().any(|(_, earlier)| earlier == id) {
            r.push(
                At::Value,
                &item_path,
                format!("{kind} {id} is listed twice in pipeline {pipeline}; list it once"),
            );
        } else if !configured.contains_key(id) {
            let known: Vec<&str> = configured.keys().map(ComponentId::as_str).collect();
            let hint = if known.is_empty() {
                format!("no {kind}s are configured")
            } else {
                format!("configured {kind}s: {}", known.join(", "))
            };
            r.push(
                At::Value,
                &item_path,
                format!(
                    "pipeline {pipeline} references {kind} {id} which is not configured ({hint})"
                ),
            );
        }
    }
}

/// A pipeline needs a receiver to get data and an exporter to send it somewhere.
/// `written` lists the keys whose items were all reported already (bad ids, wrong type).
pub(crate) fn check_not_empty(
    r: &mut Reporter<'_>,
    pipeline: &str,
    path: &str,
    p: &PipelineConfig,
    written: &[&str],
) {
    for (kind, list, key) in [
        (ComponentKind::Receiver, &p.receivers, "receivers"),
        (ComponentKind::Exporter, &p.exporters, "exporters"),
    ] {
        if list.is_empty() && !written.contains(&key) {
            r.push(
                At::Key,
                &format!("{path}.{key}"),
                format!("pipeline {pipeline} has no {key}; list at least one {kind}"),
            );
        }
    }
}

/// tracecast with no pipeline would run and do nothing: refuse it.
pub(crate) fn no_pipelines(r: &mut Reporter<'_>, path: &str) {
    r.push(
        At::Key,
        path,
        "no pipelines are configured; add one under service.pipelines, like \
         traces: {receivers: [otlp], exporters: [otlp]}",
    );
}
