//! The `batch` processor: size/time batching in front of exporters, counted in spans, with
//! the OpenTelemetry Collector's defaults and semantics.
//!
//! - A buffer is sent once it holds `send_batch_size` spans (a trigger, not a cap), or
//!   `timeout` after it received its first spans (or after its last size-triggered send).
//! - `send_batch_max_size` (0 = no cap) splits what is sent into batches of at most that
//!   many spans; a split keeps each part's resource and scope.
//! - `timeout: 0` sends every batch at once (split only by `send_batch_max_size`).
//! - Batches are merged only with batches of the same context (receiver and ingest key
//!   name), one buffer per context, so `{apiKeyName}` and the like stay right.
//! - A batch that alone reaches `send_batch_size` while its buffer is empty, and needs no
//!   split, passes through untouched (its received bytes are kept).
//! - A buffer sent whole, all of whose batches still had their received protobuf bytes,
//!   carries those bytes joined end to end (a valid encoding of the merged request), so the
//!   exporter sends them instead of encoding thousands of spans again (issue 16: the
//!   re-encoding was 1-2% of the CPU when forwarding).
//! - `flush` (shutdown) sends everything held.
//! - Delivery tokens ([`tracecast_core::ack`]) travel with the spans: a buffer keeps the
//!   tokens of every batch merged into it, and each batch it sends carries them. A buffer
//!   that sends only part of its spans (a `send_batch_max_size` split) keeps its tokens for
//!   the rest too, so a queue entry counts as delivered only once every part holding any of
//!   its spans is gone (an entry may be acknowledged a little late, never early).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::time::Instant;
use tracecast_config::{Duration, FieldError, Validate};
use tracecast_core::ack::{merge_tokens, DeliveryToken};
use tracecast_core::batch::span_count;
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans};
use tracecast_core::{
    metrics, BatchContext, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch,
};

/// Config of the `batch` processor (Collector defaults).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchProcessorConfig {
    /// Spans that trigger a send regardless of `timeout`.
    pub send_batch_size: usize,
    /// Most spans in one sent batch; larger batches are split. 0 means no limit.
    pub send_batch_max_size: usize,
    /// Longest time spans wait for a batch to fill. 0 sends at once.
    pub timeout: Duration,
}

impl Default for BatchProcessorConfig {
    fn default() -> Self {
        Self {
            send_batch_size: 8192,
            send_batch_max_size: 0,
            timeout: Duration::from_millis(200),
        }
    }
}

impl Validate for BatchProcessorConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.send_batch_size == 0 {
            errors.push(FieldError::new(
                "send_batch_size",
                "must be at least 1 (to send every batch at once, set timeout: 0)",
            ));
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            errors.push(FieldError::new(
                "send_batch_max_size",
                format!(
                    "must be 0 (no limit) or at least send_batch_size ({})",
                    self.send_batch_size
                ),
            ));
        }
        errors
    }
}

/// Spans held for one context.
#[derive(Debug)]
struct Buffer {
    ctx: Arc<BatchContext>,
    request: ExportTraceServiceRequest,
    spans: usize,
    deadline: Instant,
    /// Tokens of the batches whose spans are in `request`.
    tokens: Vec<DeliveryToken>,
    /// The received protobuf bytes of every batch merged into `request`, in order; `None`
    /// once one came without them (or the buffer was split).
    encoded: Option<Vec<Bytes>>,
}

impl Buffer {
    /// Takes the buffer's whole content, with the joined protobuf bytes when every merged
    /// batch had them.
    fn take_all(&mut self) -> (ExportTraceServiceRequest, Vec<DeliveryToken>, Option<Bytes>) {
        self.spans = 0;
        let encoded = self.encoded.replace(Vec::new()).and_then(join);
        (
            std::mem::take(&mut self.request),
            std::mem::take(&mut self.tokens),
            encoded,
        )
    }
}

/// Concatenates protobuf encodings of export requests (one copy; none for a single part).
fn join(parts: Vec<Bytes>) -> Option<Bytes> {
    match parts.len() {
        0 => None,
        1 => parts.into_iter().next(),
        _ => {
            let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for part in &parts {
                out.extend_from_slice(part);
            }
            Some(out.freeze())
        }
    }
}

/// The `batch` processor. See the module docs.
#[derive(Debug)]
pub struct BatchProcessor {
    id: ComponentId,
    send_batch_size: usize,
    max_size: Option<usize>,
    timeout: std::time::Duration,
    /// One buffer per context, in order of creation (few contexts: a linear scan is fine).
    buffers: Vec<Buffer>,
}

fn same_context(a: &BatchContext, b: &BatchContext) -> bool {
    a.receiver == b.receiver && a.api_key_name == b.api_key_name
}

impl BatchProcessor {
    /// Builds the processor. The config is expected to have passed `validate`; a zero
    /// `send_batch_size` is treated as 1.
    pub fn new(id: ComponentId, cfg: BatchProcessorConfig) -> Self {
        Self {
            id,
            send_batch_size: cfg.send_batch_size.max(1),
            max_size: (cfg.send_batch_max_size > 0).then_some(cfg.send_batch_max_size),
            timeout: cfg.timeout.get(),
            buffers: Vec::new(),
        }
    }

    /// Spans currently held.
    pub fn held_spans(&self) -> usize {
        self.buffers.iter().map(|b| b.spans).sum()
    }

    /// Sends `request` (split by `send_batch_max_size`); every part carries a claim on
    /// each of `tokens` (so an entry is delivered once every part is). An empty request
    /// has nothing to deliver: its claims are confirmed.
    fn emit(
        &self,
        ctx: &Arc<BatchContext>,
        mut request: ExportTraceServiceRequest,
        tokens: Vec<DeliveryToken>,
        mut encoded: Option<Bytes>,
        out: &mut Vec<TraceBatch>,
    ) {
        let labels = metrics::component(self.id.as_str());
        if let Some(max) = self.max_size {
            while span_count(&request) > max {
                // The joined bytes describe the whole request, not its parts.
                encoded = None;
                let part = split_off_front(&mut request, max);
                metrics::PROCESSOR_SPANS_OUT
                    .get_or_create(&labels)
                    .inc_by(max as u64);
                out.push(TraceBatch::with_context(ctx.clone(), part).with_tokens(tokens.to_vec()));
            }
        }
        let n = span_count(&request);
        if n > 0 {
            metrics::PROCESSOR_SPANS_OUT
                .get_or_create(&labels)
                .inc_by(n as u64);
            let batch = TraceBatch::with_context(ctx.clone(), request).with_tokens(tokens);
            out.push(match encoded {
                Some(bytes) => batch.with_protobuf(bytes),
                None => batch,
            });
        } else {
            tokens.into_iter().for_each(DeliveryToken::confirm);
        }
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, batch: TraceBatch, out: &mut Vec<TraceBatch>) {
        let n = batch.span_count();
        let labels = metrics::component(self.id.as_str());
        metrics::PROCESSOR_SPANS_IN
            .get_or_create(&labels)
            .inc_by(n as u64);
        if n == 0 {
            batch.confirm();
            return;
        }
        let idx = self
            .buffers
            .iter()
            .position(|b| same_context(&b.ctx, batch.context()));
        let fits = self.max_size.is_none_or(|max| n <= max);
        let buffer_empty = idx.is_none_or(|i| self.buffers[i].spans == 0);
        if buffer_empty && fits && (n >= self.send_batch_size || self.timeout.is_zero()) {
            metrics::PROCESSOR_SPANS_OUT
                .get_or_create(&labels)
                .inc_by(n as u64);
            out.push(batch);
            return;
        }
        let (ctx, request, encoded, tokens) = batch.into_parts_with_protobuf();
        if self.timeout.is_zero() {
            self.emit(&ctx, request, tokens, encoded, out);
            return;
        }
        let now = Instant::now();
        let i = match idx {
            Some(i) => i,
            None => {
                self.buffers.push(Buffer {
                    ctx,
                    request: ExportTraceServiceRequest::default(),
                    spans: 0,
                    deadline: now + self.timeout,
                    tokens: Vec::new(),
                    encoded: Some(Vec::new()),
                });
                self.buffers.len() - 1
            }
        };
        let buffer = &mut self.buffers[i];
        if buffer.spans == 0 {
            buffer.deadline = now + self.timeout;
        }
        buffer.request.resource_spans.extend(request.resource_spans);
        match (&mut buffer.encoded, encoded) {
            (Some(parts), Some(bytes)) => parts.push(bytes),
            (slot, _) => *slot = None,
        }
        buffer.spans += n;
        merge_tokens(&mut buffer.tokens, tokens);
        while self.buffers[i].spans >= self.send_batch_size {
            let buffer = &mut self.buffers[i];
            let take = match self.max_size {
                Some(max) if buffer.spans > max => max,
                _ => buffer.spans,
            };
            let (part, part_tokens, encoded) = if take == buffer.spans {
                buffer.take_all()
            } else {
                // The spans left behind may belong to any of the tokens: keep them all.
                // What stays is no longer described by the received bytes.
                buffer.encoded = None;
                buffer.spans -= take;
                (
                    split_off_front(&mut buffer.request, take),
                    buffer.tokens.clone(),
                    None,
                )
            };
            buffer.deadline = now + self.timeout;
            let ctx = buffer.ctx.clone();
            self.emit(&ctx, part, part_tokens, encoded, out);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.buffers
            .iter()
            .filter(|b| b.spans > 0)
            .map(|b| b.deadline)
            .min()
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<TraceBatch>) {
        let mut due = Vec::new();
        for buffer in &mut self.buffers {
            if buffer.spans > 0 && buffer.deadline <= now {
                let (request, tokens, encoded) = buffer.take_all();
                due.push((buffer.ctx.clone(), request, tokens, encoded));
            }
        }
        for (ctx, request, tokens, encoded) in due {
            self.emit(&ctx, request, tokens, encoded, out);
        }
    }

    fn flush(&mut self, out: &mut Vec<TraceBatch>) {
        for mut buffer in std::mem::take(&mut self.buffers) {
            // An empty buffer's claims (none, normally) are confirmed by `emit`.
            let (request, tokens, encoded) = buffer.take_all();
            self.emit(&buffer.ctx, request, tokens, encoded, out);
        }
    }
}

/// Moves the first `n` spans of `request` into a new request, keeping each part's
/// resource and scope (they are copied when a resource or scope is split).
fn split_off_front(request: &mut ExportTraceServiceRequest, n: usize) -> ExportTraceServiceRequest {
    let mut front = ExportTraceServiceRequest::default();
    let mut left = n;
    while left > 0 && !request.resource_spans.is_empty() {
        let rs = &mut request.resource_spans[0];
        let rs_count: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
        if rs_count <= left {
            left -= rs_count;
            front.resource_spans.push(request.resource_spans.remove(0));
            continue;
        }
        let mut part = ResourceSpans {
            resource: rs.resource.clone(),
            scope_spans: Vec::new(),
            schema_url: rs.schema_url.clone(),
        };
        while left > 0 && !rs.scope_spans.is_empty() {
            let ss = &mut rs.scope_spans[0];
            if ss.spans.len() <= left {
                left -= ss.spans.len();
                part.scope_spans.push(rs.scope_spans.remove(0));
                continue;
            }
            let spans: Vec<_> = ss.spans.drain(..left).collect();
            left = 0;
            part.scope_spans.push(ScopeSpans {
                scope: ss.scope.clone(),
                spans,
                schema_url: ss.schema_url.clone(),
            });
        }
        front.resource_spans.push(part);
    }
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_collectors() {
        let cfg = BatchProcessorConfig::default();
        assert_eq!(cfg.send_batch_size, 8192);
        assert_eq!(cfg.send_batch_max_size, 0);
        assert_eq!(cfg.timeout, Duration::from_millis(200));
        assert!(cfg.validate().is_empty());
    }

    #[test]
    fn rejects_a_max_below_the_trigger_and_a_zero_trigger() {
        let cfg = BatchProcessorConfig {
            send_batch_size: 0,
            send_batch_max_size: 0,
            ..Default::default()
        };
        assert_eq!(cfg.validate()[0].path, "send_batch_size");
        let cfg = BatchProcessorConfig {
            send_batch_size: 100,
            send_batch_max_size: 10,
            ..Default::default()
        };
        let errs = cfg.validate();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "send_batch_max_size");
    }
}
