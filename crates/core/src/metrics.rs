//! Process-wide metric families, registered once into the admin endpoint's registry.
//!
//! Components record with labels naming themselves, e.g.
//! `metrics::SPANS_RECEIVED.get_or_create(&labels::component("otlp")).inc_by(n)`.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

macro_rules! family {
    ($name:ident, $labels:ty, $metric:ty) => {
        pub static $name: LazyLock<Family<$labels, $metric>> = LazyLock::new(Family::default);
    };
}

family!(SPANS_RECEIVED, ComponentLabels, Counter);
family!(SPANS_REFUSED, ReasonLabels, Counter);
// Requests a receiver refused, by reason: counts refusals made before the body was decoded
// (unauthorized, too large, ...), whose span count is unknown.
family!(REQUESTS_REFUSED, ReasonLabels, Counter);
family!(PROCESSOR_SPANS_IN, ComponentLabels, Counter);
family!(PROCESSOR_SPANS_OUT, ComponentLabels, Counter);
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
}
