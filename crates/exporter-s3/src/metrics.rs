//! The S3 exporter's own metric families (the shared ones are in `tracecast_core::metrics`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracecast_core::family;
use tracecast_core::metrics::ComponentLabels;

// Traces the S3 exporter is assembling (spans held in memory, not yet written).
family!(S3_TRACES_HELD, ComponentLabels, Gauge);
// Uploads the S3 exporter lets run at once now (its adaptive limit, see `UploadConcurrency`).
family!(S3_UPLOAD_CONCURRENCY, ComponentLabels, Gauge);
// Objects the S3 exporter created (a replay finding its object already there is not one).
family!(S3_OBJECTS_WRITTEN, ComponentLabels, Counter);

/// Registers this crate's families under the `tracecast_` prefix.
pub fn register(registry: &mut Registry) {
    let r = registry.sub_registry_with_prefix("tracecast");
    r.register(
        "s3_traces_held",
        "Traces the S3 exporter is assembling in memory",
        S3_TRACES_HELD.clone(),
    );
    r.register(
        "s3_upload_concurrency",
        "Uploads the S3 exporter lets run at once now (its adaptive limit)",
        S3_UPLOAD_CONCURRENCY.clone(),
    );
    r.register(
        "s3_objects_written",
        "Objects (trace files) the S3 exporter created",
        S3_OBJECTS_WRITTEN.clone(),
    );
}
