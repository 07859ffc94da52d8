//! A test-only processor, `fault`: panics on any span carrying a marker attribute, so the
//! end-to-end tests can show that a processor panic costs one entry (quarantined), not the
//! daemon or the entries around it. It exists only when the environment variable
//! `TRACECAST_TEST_COMPONENTS=1` is set; otherwise `fault` is an unknown processor type.

use serde::Deserialize;
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::{Processor, TraceBatch};

/// The variable that enables the test components.
pub const ENABLE_VAR: &str = "TRACECAST_TEST_COMPONENTS";

/// Whether test components may be configured in this process.
pub fn enabled() -> bool {
    std::env::var(ENABLE_VAR).is_ok_and(|v| v == "1")
}

/// Config of the `fault` processor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultProcessorConfig {
    /// A span with this attribute set to `true` makes the processor panic.
    pub panic_on_attribute: String,
}

impl Default for FaultProcessorConfig {
    fn default() -> Self {
        Self {
            panic_on_attribute: "tracecast.test.panic".into(),
        }
    }
}

/// See the module docs.
pub struct FaultProcessor(pub FaultProcessorConfig);

impl Processor for FaultProcessor {
    fn process(&mut self, batch: TraceBatch, out: &mut Vec<TraceBatch>) {
        let marked = batch
            .request()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .flat_map(|s| &s.attributes)
            .any(|kv| {
                kv.key == self.0.panic_on_attribute
                    && matches!(
                        kv.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(Value::BoolValue(true))
                    )
            });
        if marked {
            panic!("fault processor: span marked {}", self.0.panic_on_attribute);
        }
        out.push(batch);
    }
}

impl tracecast_config::Validate for FaultProcessorConfig {
    fn validate(&self) -> Vec<tracecast_config::FieldError> {
        if self.panic_on_attribute.is_empty() {
            vec![tracecast_config::FieldError::new(
                "panic_on_attribute",
                "must name an attribute".to_string(),
            )]
        } else {
            Vec::new()
        }
    }
}
