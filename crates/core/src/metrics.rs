//! Metric families every kind of component updates (spans in, out and failed, retries,
//! request durations, dead letters), registered once into the admin endpoint's registry.
//! Families only one component updates live in its crate (the S3 exporter's in
//! `tracecast_exporter_s3::metrics`, the queues' in `tracecast_runtime::metrics`) and
//! register themselves the same way, under the same `tracecast_` prefix.
//!
//! Components record with labels naming themselves, e.g.
//! `metrics::SPANS_RECEIVED.get_or_create(&labels::component("otlp")).inc_by(n)`.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label set naming one component.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

/// Label set naming a component and a reason (refusals, failures).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub component: String,
    pub reason: String,
}

/// Label set naming a pipeline (its durable queue).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub pipeline: String,
}

/// Label set of `tracecast_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

pub fn pipeline(name: &str) -> PipelineLabels {
    PipelineLabels {
        pipeline: name.to_string(),
    }
}

pub fn component(id: &str) -> ComponentLabels {
    ComponentLabels {
        component: id.to_string(),
    }
}

pub fn reason(id: &str, reason: &str) -> ReasonLabels {
    ReasonLabels {
        component: id.to_string(),
        reason: reason.to_string(),
    }
}

/// Declares a process-wide metric family (also used by the crates that own their families).
#[macro_export]
macro_rules! family {
    ($name:ident, $labels:ty, $metric:ty) => {
        pub static $name: ::std::sync::LazyLock<
            ::prometheus_client::metrics::family::Family<$labels, $metric>,
        > = ::std::sync::LazyLock::new(::prometheus_client::metrics::family::Family::default);
    };
}

family!(SPANS_RECEIVED, ComponentLabels, Counter);
family!(SPANS_REFUSED, ReasonLabels, Counter);
// Requests a receiver refused, by reason: counts refusals made before the body was decoded
// (unauthorized, too large, ...), whose span count is unknown.
family!(REQUESTS_REFUSED, ReasonLabels, Counter);
family!(PROCESSOR_SPANS_IN, ComponentLabels, Counter);
family!(PROCESSOR_SPANS_OUT, ComponentLabels, Counter);
// Spans a processor dropped on purpose, by reason (`sampled_out`, `filtered`): what a
// destination's pipeline chose not to receive, never a failure.
family!(PROCESSOR_SPANS_DROPPED, ReasonLabels, Counter);
family!(SPANS_EXPORTED, ComponentLabels, Counter);
family!(BYTES_EXPORTED, ComponentLabels, Counter);
family!(SPANS_FAILED, ReasonLabels, Counter);
family!(EXPORT_RETRIES, ComponentLabels, Counter);
family!(QUEUE_DEPTH, ComponentLabels, Gauge);
family!(WARNINGS, ReasonLabels, Counter);
family!(CONFIG_RELOADS, ReasonLabels, Counter);
// 1 when a destination's last connection test passed, 0 when it failed (re-tested every
// `service.admin.recheck_interval`).
family!(DESTINATION_UP, ComponentLabels, Gauge);
// Batches (otlp) or traces (s3) an exporter gave up on and kept in its dead-letter folder.
family!(DEAD_LETTERS, ComponentLabels, Counter);
// Files removed from a bounded folder (dead letters, quarantine) to stay under its
// `max_size`, by owner (`reason` label: the folder kind).
family!(SPOOL_FILES_REMOVED, ReasonLabels, Counter);
// Always 1; the `version` label says which build runs.
family!(BUILD_INFO, BuildLabels, Gauge);

/// A family of histograms whose buckets are set by a constructor.
pub type HistogramFamily = Family<ComponentLabels, Histogram, fn() -> Histogram>;

/// Buckets of [`REQUEST_DURATION`]: 1 ms doubling up to about 33 s (16 buckets), which
/// covers a local backend's sub-millisecond answers up to the longest request timeouts.
fn request_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Seconds one export request took (one HTTP attempt of the otlp exporter, one upload
/// attempt of the s3 exporter), whatever its outcome. Connection tests are not counted.
pub static REQUEST_DURATION: LazyLock<HistogramFamily> =
    LazyLock::new(|| Family::new_with_constructor(request_duration_histogram));

/// Records one export request of `component` that took `elapsed`.
pub fn observe_request(component: &str, elapsed: std::time::Duration) {
    REQUEST_DURATION
        .get_or_create(&self::component(component))
        .observe(elapsed.as_secs_f64());
}

/// Registers every family under the `tracecast_` prefix.
pub fn register(registry: &mut Registry) {
    let r = registry.sub_registry_with_prefix("tracecast");
    r.register(
        "receiver_accepted_spans",
        "Spans accepted by a receiver (answered 2xx)",
        SPANS_RECEIVED.clone(),
    );
    r.register(
        "receiver_refused_spans",
        "Spans refused by a receiver, by reason",
        SPANS_REFUSED.clone(),
    );
    r.register(
        "receiver_refused_requests",
        "Requests refused by a receiver, by reason",
        REQUESTS_REFUSED.clone(),
    );
    r.register(
        "processor_incoming_spans",
        "Spans entering a processor",
        PROCESSOR_SPANS_IN.clone(),
    );
    r.register(
        "processor_outgoing_spans",
        "Spans leaving a processor",
        PROCESSOR_SPANS_OUT.clone(),
    );
    r.register(
        "processor_dropped_spans",
        "Spans a processor dropped on purpose (sampling, filter rules), by reason",
        PROCESSOR_SPANS_DROPPED.clone(),
    );
    r.register(
        "exporter_sent_spans",
        "Spans delivered by an exporter",
        SPANS_EXPORTED.clone(),
    );
    r.register(
        "exporter_sent_bytes",
        "Bytes sent by an exporter (after compression)",
        BYTES_EXPORTED.clone(),
    );
    r.register(
        "exporter_failed_spans",
        "Spans an exporter could not deliver, by reason",
        SPANS_FAILED.clone(),
    );
    r.register(
        "exporter_retries",
        "Export attempts retried",
        EXPORT_RETRIES.clone(),
    );
    r.register(
        "exporter_queue_batches",
        "Batches waiting in an exporter's queue",
        QUEUE_DEPTH.clone(),
    );
    r.register(
        "config_reloads",
        "Config reloads (SIGHUP), by result: ok or failed",
        CONFIG_RELOADS.clone(),
    );
    r.register(
        "warnings",
        "Counted warnings (bad input that did not stop the pipeline), by reason",
        WARNINGS.clone(),
    );
    r.register(
        "destination_up",
        "1 when the destination's last connection test passed, else 0",
        DESTINATION_UP.clone(),
    );
    r.register(
        "dead_letters",
        "Batches (otlp) or traces (s3) an exporter gave up on and kept in its dead-letter folder",
        DEAD_LETTERS.clone(),
    );
    r.register_with_unit(
        "exporter_request_duration",
        "Duration of one export request (HTTP attempt or S3 upload), whatever its outcome",
        prometheus_client::registry::Unit::Seconds,
        REQUEST_DURATION.clone(),
    );
    r.register(
        "spool_files_removed",
        "Oldest dead-letter or quarantine files removed to keep the folder under its max_size",
        SPOOL_FILES_REMOVED.clone(),
    );
    r.register(
        "build_info",
        "Always 1; the version label names the running build",
        BUILD_INFO.clone(),
    );
}

/// Sets `tracecast_build_info{version}` to 1.
pub fn set_build_info(version: &str) {
    BUILD_INFO
        .get_or_create(&BuildLabels {
            version: version.to_string(),
        })
        .set(1);
}
