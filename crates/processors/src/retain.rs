//! Dropping spans on purpose (the `sampling` and `filter` processors): what is removed from
//! a request, how it is counted, and how a batch left empty is settled.

use tracecast_core::proto::trace::v1::Span;
use tracecast_core::{metrics, ComponentId, ExportTraceServiceRequest, TraceBatch};

/// Removes every span `keep` refuses (it may also change the spans it keeps), then the
/// scope and resource entries left without spans, so a destination never receives empty
/// envelopes. Returns how many spans were removed.
pub(crate) fn retain_spans(
    req: &mut ExportTraceServiceRequest,
    mut keep: impl FnMut(&mut Span) -> bool,
) -> usize {
    let mut dropped = 0;
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            let before = ss.spans.len();
            ss.spans.retain_mut(&mut keep);
            dropped += before - ss.spans.len();
        }
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    req.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
    dropped
}

/// Counts what a dropping processor did with a batch of `spans_in` spans and passes on
/// what is left. A batch left empty is confirmed here: dropping on purpose is this copy's
/// final place, so its queue entry is delivered as far as this pipeline is concerned
/// (leaving it unsettled would replay it forever).
pub(crate) fn pass_on(
    id: &ComponentId,
    batch: TraceBatch,
    spans_in: usize,
    dropped: usize,
    reason: &str,
    out: &mut Vec<TraceBatch>,
) {
    let labels = metrics::component(id.as_str());
    metrics::PROCESSOR_SPANS_IN
        .get_or_create(&labels)
        .inc_by(spans_in as u64);
    if dropped > 0 {
        metrics::PROCESSOR_SPANS_DROPPED
            .get_or_create(&metrics::reason(id.as_str(), reason))
            .inc_by(dropped as u64);
    }
    let kept = spans_in.saturating_sub(dropped);
    metrics::PROCESSOR_SPANS_OUT
        .get_or_create(&labels)
        .inc_by(kept as u64);
    if kept == 0 {
        batch.confirm();
    } else {
        out.push(batch);
    }
}
