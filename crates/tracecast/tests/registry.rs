//! Every type the registry lists validates its `testdata` body and builds.
//!
//! The bodies live beside the crate that owns the type, named `<kind>_<type>.yaml` in some
//! `crates/*/testdata/` (e.g. `crates/exporter-s3/testdata/exporter_s3.yaml`). The test walks
//! the registry's entries (`receiver_types()`, `processor_types()`, `exporter_types()`), so a
//! type registered without such a file, or whose file no longer validates or builds, fails
//! here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tracecast::registry::{
    self, exporter_types, processor_types, receiver_types, ExporterConfig, ProcessorConfig,
    ReceiverConfig,
};
use tracecast_core::{BatchSink, ComponentId, SubmitError, TraceBatch};

/// A receiver must be given a sink to build; this one is never called.
struct NoSink;

#[async_trait]
impl BatchSink for NoSink {
    async fn submit(&self, _batch: TraceBatch) -> Result<(), SubmitError> {
        unreachable!("the receivers are built, never started")
    }
}

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The one `crates/*/testdata/<kind>_<type>.yaml`, read.
fn testdata(kind: &str, type_name: &str) -> (PathBuf, String) {
    let name = format!("{kind}_{type_name}.yaml");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(crates_dir()).unwrap() {
        let path = entry.unwrap().path().join("testdata").join(&name);
        if path.is_file() {
            found.push(path);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "{kind} type {type_name:?} is registered: it needs exactly one crates/<its crate>/testdata/{name} \
         holding a minimal valid body (found {found:?})"
    );
    let path = found.pop().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// `section:` with each type as a component whose body is its testdata file.
fn section(out: &mut String, section: &str, kind: &str, types: &[&str]) {
    out.push_str(section);
    out.push_str(":\n");
    for type_name in types {
        let (path, body) = testdata(kind, type_name);
        out.push_str(&format!("  # {}\n  {type_name}:\n", path.display()));
        for line in body.lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
}

/// One config holding every registered type, all in one pipeline.
fn config_with_every_type() -> String {
    let mut text = String::new();
    section(&mut text, "receivers", "receiver", &receiver_types());
    section(&mut text, "processors", "processor", &processor_types());
    section(&mut text, "exporters", "exporter", &exporter_types());
    text.push_str(&format!(
        "service:\n  admin: {{endpoint: \"\"}}\n  pipelines:\n    traces:\n      \
         receivers: [{}]\n      processors: [{}]\n      exporters: [{}]\n",
        receiver_types().join(", "),
        processor_types().join(", "),
        exporter_types().join(", "),
    ));
    text
}

#[tokio::test]
async fn every_registered_type_validates_its_testdata_and_builds() {
    let text = config_with_every_type();
    let config = tracecast::load_config_str("every_type.yaml", &text)
        .unwrap_or_else(|e| panic!("{e}\n--- every_type.yaml:\n{text}"));

    for type_name in receiver_types() {
        let id = ComponentId::parse(type_name).unwrap();
        let c: &ReceiverConfig = config
            .receivers
            .get(&id)
            .unwrap_or_else(|| panic!("receiver {type_name} missing after validation"));
        // Building binds nothing (that is `start`); it cannot fail on a validated config.
        registry::build_receiver(&id, c, Arc::new(NoSink));
    }
    for type_name in processor_types() {
        let id = ComponentId::parse(type_name).unwrap();
        let c: &ProcessorConfig = config
            .processors
            .get(&id)
            .unwrap_or_else(|| panic!("processor {type_name} missing after validation"));
        // A validated processor config always builds.
        registry::build_processor(&id, c);
    }
    for type_name in exporter_types() {
        let id = ComponentId::parse(type_name).unwrap();
        let c: &ExporterConfig = config
            .exporters
            .get(&id)
            .unwrap_or_else(|| panic!("exporter {type_name} missing after validation"));
        if let Err(e) = registry::build_exporter(&id, c) {
            panic!("exporter {type_name} does not build from its testdata: {e:#}");
        }
    }
}
