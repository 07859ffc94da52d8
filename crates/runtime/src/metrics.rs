//! The runtime's own metric families: each pipeline's durable queue (copied from
//! `DurableQueue::stats()` by `queue_metrics.rs`), retries and quarantine (`pipeline/task.rs`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracecast_core::family;
use tracecast_core::metrics::PipelineLabels;

family!(QUEUE_ENTRIES, PipelineLabels, Gauge);
family!(QUEUE_BYTES, PipelineLabels, Gauge);
family!(QUEUE_APPENDS, PipelineLabels, Counter);
family!(QUEUE_FSYNCS, PipelineLabels, Counter);
// Entries a pipeline got from memory (appended live by this process) / read back from disk.
family!(QUEUE_HANDED_LIVE, PipelineLabels, Counter);
family!(QUEUE_READ_FROM_DISK, PipelineLabels, Counter);
// Queue entries moved to the quarantine folder (undecodable, or not delivered after
// `service.queue.quarantine.max_attempts`).
family!(QUARANTINED, PipelineLabels, Counter);
// Entries given back to their pipeline for another attempt after a failed delivery.
family!(DELIVERY_RETRIES, PipelineLabels, Counter);

/// Registers the runtime's families under the `tracecast_` prefix.
pub fn register(registry: &mut Registry) {
    let r = registry.sub_registry_with_prefix("tracecast");
    r.register(
        "queue_entries",
        "Entries in a pipeline's durable queue not yet delivered",
        QUEUE_ENTRIES.clone(),
    );
    r.register(
        "queue_bytes",
        "Bytes of a pipeline's durable queue segment files on disk (bounded by service.queue.max_size)",
        QUEUE_BYTES.clone(),
    );
    r.register(
        "queue_appends",
        "Entries appended to a pipeline's durable queue",
        QUEUE_APPENDS.clone(),
    );
    r.register(
        "queue_fsyncs",
        "fdatasync calls on a pipeline's queue segments (group commit shares one among concurrent appends)",
        QUEUE_FSYNCS.clone(),
    );
    r.register(
        "queue_entries_handed_live",
        "Queue entries a pipeline got as live batches, without reading the queue files",
        QUEUE_HANDED_LIVE.clone(),
    );
    r.register(
        "queue_entries_read_from_disk",
        "Queue entries read back from the queue files (replay, or a pipeline far behind)",
        QUEUE_READ_FROM_DISK.clone(),
    );
    r.register(
        "queue_quarantined",
        "Queue entries moved to quarantine (undecodable, or not delivered after every attempt)",
        QUARANTINED.clone(),
    );
    r.register(
        "queue_delivery_retries",
        "Queue entries handed to their pipeline again after a failed delivery",
        DELIVERY_RETRIES.clone(),
    );
}
