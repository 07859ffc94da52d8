//! Trace assembly: spans of one trace arrive in several batches; they are grouped by trace id
//! and released as one [`AssembledTrace`] when the trace is complete enough to write.
//!
//! A trace is due when
//! - it has a root span (empty parent span id, or a parent flagged remote in the OTLP span
//!   flags, i.e. the request was linked into a caller's trace) and no span came for
//!   `idle_timeout`; or
//! - it is a late fragment of a trace already written (its root is in the earlier file) and
//!   it was idle for `idle_timeout`; or
//! - `max_wait` passed since its first span (a root that never comes cannot hold it forever).
//!
//! A child whose parent has not arrived yet is not a root: SDKs export children before their
//! parent ends, and treating such orphans as roots would split long traces into two files.
//! Memory is bounded by span count and bytes held: past either bound the oldest traces are
//! released early (never dropped). Bytes are what assembly really holds once decoded (see
//! [`decoded_span_bytes`]), not the encoded span size: an attribute that encodes to two
//! bytes still occupies a `KeyValue` in memory. A resource's attributes are held once per
//! `ResourceSpans` of a batch (shared by its spans and scopes) and counted once, however
//! many traces and spans refer to them. The clock is passed in (`now`), so the logic is testable
//! without sleeping.
//!
//! Delivery tokens ([`tracecast_core::ack`]): each trace being assembled holds
//! [`Claims`] on the queue entries of every batch that contributed a span to it, and hands
//! them to its [`AssembledTrace`]. The exporter confirms them once the file is written or
//! dead-lettered and abandons them at the hard stop (replayed at the next start); claims
//! dropped unsettled (a task that died, a dropped assembler) count as not delivered and the
//! pipeline retries their entries: a trace held in memory is never acknowledged.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracecast_core::ack::Claims;
use tracecast_core::proto::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use tracecast_core::proto::trace::v1::Span;
use tracecast_core::TraceBatch;

/// OTLP `SpanFlags`: the span's parent is known to be remote or local.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// How many written trace ids are remembered to recognise late fragments.
const REMEMBERED_WRITTEN: usize = 100_000;

/// The resource and scope a span was sent under (shared by the spans of one `ScopeSpans`;
/// the resource attributes by every `ScopeSpans` of one `ResourceSpans`).
#[derive(Debug, Default)]
pub struct SpanOrigin {
    pub resource_attributes: Arc<[KeyValue]>,
    pub scope: Option<InstrumentationScope>,
}

/// One span with its origin.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub span: Span,
    pub origin: Arc<SpanOrigin>,
}

/// Why a trace was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Root seen (or late fragment) and idle.
    Idle,
    /// `max_wait` since the first span.
    MaxWait,
    /// Memory bound reached; the oldest traces go first.
    Pressure,
    /// Input closed (shutdown).
    Shutdown,
}

/// A trace ready to be written.
#[derive(Debug)]
pub struct AssembledTrace {
    pub trace_id: Vec<u8>,
    pub spans: Vec<SpanRecord>,
    /// Ingest key name from the first batch that carried one.
    pub api_key_name: Option<Arc<str>>,
    /// When the first span of this assembly was received.
    pub first_received: SystemTime,
    /// True when an earlier part of this trace was already released.
    pub late_fragment: bool,
    pub release: Release,
    /// Claims on the queue entries the spans came from; confirmed after writing.
    pub claims: Claims,
}

/// Bounds and timeouts of assembly.
#[derive(Debug, Clone, Copy)]
pub struct AssemblyLimits {
    pub idle_timeout: Duration,
    pub max_wait: Duration,
    pub max_spans: usize,
    pub max_bytes: u64,
}

#[derive(Debug)]
struct Pending {
    spans: Vec<SpanRecord>,
    /// Decoded bytes of `spans` (shared origins are counted in [`Assembler::shared`]).
    bytes: u64,
    /// Shared allocations (origins, resource attributes) this trace counts as a user of.
    shared: HashSet<usize>,
    first_seen: Instant,
    last_seen: Instant,
    first_received: SystemTime,
    has_root: bool,
    late_fragment: bool,
    api_key_name: Option<Arc<str>>,
    claims: Claims,
}

/// Groups spans by trace id. Owned by the exporter's run loop (no locks).
#[derive(Debug)]
pub struct Assembler {
    limits: AssemblyLimits,
    pending: HashMap<Vec<u8>, Pending>,
    spans: usize,
    bytes: u64,
    /// Shared allocations held by pending traces: address -> (bytes, traces using it).
    /// Counted in `bytes` once, while at least one pending trace uses them.
    shared: HashMap<usize, (u64, usize)>,
    written: HashSet<Vec<u8>>,
    written_order: VecDeque<Vec<u8>>,
}

fn is_root(span: &Span) -> bool {
    span.parent_span_id.is_empty()
        || span.parent_span_id.iter().all(|b| *b == 0)
        || span.flags & (FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE) == FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE
}

impl Assembler {
    pub fn new(limits: AssemblyLimits) -> Self {
        Self {
            limits,
            pending: HashMap::new(),
            spans: 0,
            bytes: 0,
            shared: HashMap::new(),
            written: HashSet::new(),
            written_order: VecDeque::new(),
        }
    }

    /// Spans held.
    pub fn buffered_spans(&self) -> usize {
        self.spans
    }

    /// Bytes held (decoded spans plus the shared origins they refer to), what
    /// `max_buffered_bytes` bounds.
    pub fn buffered_bytes(&self) -> u64 {
        self.bytes
    }

    /// Traces being assembled (what `tracecast_s3_traces_held` reports).
    pub fn held_traces(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds a batch's spans; traces pushed past the memory bound are appended to `out`.
    /// Every trace the batch contributes to claims the batch's delivery tokens.
    pub fn ingest(&mut self, batch: &TraceBatch, now: Instant, out: &mut Vec<AssembledTrace>) {
        let ctx = batch.context();
        let mut touched: HashSet<&[u8]> = HashSet::new();
        for rs in &batch.request().resource_spans {
            // Once per ResourceSpans; its ScopeSpans share it.
            let resource_attributes: Arc<[KeyValue]> = rs
                .resource
                .as_ref()
                .map(|r| Arc::from(r.attributes.as_slice()))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                let origin = Arc::new(SpanOrigin {
                    resource_attributes: resource_attributes.clone(),
                    scope: ss.scope.clone(),
                });
                for span in &ss.spans {
                    self.add(span, &origin, ctx, now);
                    if !batch.tokens().is_empty() && touched.insert(&span.trace_id) {
                        if let Some(p) = self.pending.get_mut(&span.trace_id) {
                            p.claims.add_from(batch);
                        }
                    }
                }
            }
        }
        self.relieve_pressure(out);
    }

    fn add(
        &mut self,
        span: &Span,
        origin: &Arc<SpanOrigin>,
        ctx: &tracecast_core::BatchContext,
        now: Instant,
    ) {
        let bytes = decoded_span_bytes(span);
        let late = self.written.contains(&span.trace_id);
        let entry = self
            .pending
            .entry(span.trace_id.clone())
            .or_insert_with(|| Pending {
                spans: Vec::new(),
                bytes: 0,
                shared: HashSet::new(),
                first_seen: now,
                last_seen: now,
                first_received: ctx.received_at,
                has_root: false,
                late_fragment: late,
                api_key_name: None,
                claims: Claims::default(),
            });
        entry.has_root |= is_root(span);
        entry.last_seen = now;
        entry.bytes += bytes;
        if entry.api_key_name.is_none() {
            entry.api_key_name = ctx.api_key_name.clone();
        }
        entry.spans.push(SpanRecord {
            span: span.clone(),
            origin: origin.clone(),
        });
        let uses = [
            (Arc::as_ptr(origin) as usize, origin_bytes(origin)),
            (
                Arc::as_ptr(&origin.resource_attributes) as *const KeyValue as usize,
                attributes_bytes(&origin.resource_attributes),
            ),
        ];
        for (addr, size) in uses {
            if entry.shared.insert(addr) {
                let slot = self.shared.entry(addr).or_insert((size, 0));
                if slot.1 == 0 {
                    self.bytes += slot.0;
                }
                slot.1 += 1;
            }
        }
        self.spans += 1;
        self.bytes += bytes;
    }

    fn relieve_pressure(&mut self, out: &mut Vec<AssembledTrace>) {
        while self.spans > self.limits.max_spans || self.bytes > self.limits.max_bytes {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.first_seen)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => out.extend(self.release(&id, Release::Pressure)),
                None => break,
            }
        }
    }

    /// Releases every trace that is due at `now`.
    pub fn take_due(&mut self, now: Instant, out: &mut Vec<AssembledTrace>) {
        let limits = self.limits;
        let due: Vec<(Vec<u8>, Release)> = self
            .pending
            .iter()
            .filter_map(|(id, p)| {
                if now.saturating_duration_since(p.first_seen) >= limits.max_wait {
                    Some((id.clone(), Release::MaxWait))
                } else if (p.has_root || p.late_fragment)
                    && now.saturating_duration_since(p.last_seen) >= limits.idle_timeout
                {
                    Some((id.clone(), Release::Idle))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in due {
            out.extend(self.release(&id, why));
        }
    }

    /// Releases everything (input closed).
    pub fn take_all(&mut self, out: &mut Vec<AssembledTrace>) {
        let ids: Vec<Vec<u8>> = self.pending.keys().cloned().collect();
        for id in ids {
            out.extend(self.release(&id, Release::Shutdown));
        }
    }

    fn release(&mut self, id: &[u8], release: Release) -> Option<AssembledTrace> {
        let p = self.pending.remove(id)?;
        self.spans -= p.spans.len();
        self.bytes -= p.bytes;
        for addr in &p.shared {
            if let Some(slot) = self.shared.get_mut(addr) {
                slot.1 -= 1;
                if slot.1 == 0 {
                    self.bytes -= slot.0;
                    self.shared.remove(addr);
                }
            }
        }
        if self.written.insert(id.to_vec()) {
            self.written_order.push_back(id.to_vec());
            if self.written_order.len() > REMEMBERED_WRITTEN {
                if let Some(old) = self.written_order.pop_front() {
                    self.written.remove(&old);
                }
            }
        }
        Some(AssembledTrace {
            trace_id: id.to_vec(),
            spans: p.spans,
            api_key_name: p.api_key_name,
            first_received: p.first_received,
            late_fragment: p.late_fragment,
            release,
            claims: p.claims,
        })
    }
}

/// Heap and inline bytes of a decoded span as assembly holds it (its `SpanRecord`, ids,
/// name, attributes, events, links, status). An estimate that never undercounts the
/// vectors' elements: each `KeyValue`, event and link counts its full in-memory size.
pub fn decoded_span_bytes(span: &Span) -> u64 {
    let mut n = std::mem::size_of::<SpanRecord>()
        + span.trace_id.len()
        + span.span_id.len()
        + span.parent_span_id.len()
        + span.trace_state.len()
        + span.name.len()
        + attributes_bytes(&span.attributes) as usize
        + span.status.as_ref().map_or(0, |s| s.message.len());
    for e in &span.events {
        n += std::mem::size_of_val(e) + e.name.len() + attributes_bytes(&e.attributes) as usize;
    }
    for l in &span.links {
        n += std::mem::size_of_val(l)
            + l.trace_id.len()
            + l.span_id.len()
            + l.trace_state.len()
            + attributes_bytes(&l.attributes) as usize;
    }
    n as u64
}

/// Bytes of an attribute list in memory (see [`decoded_span_bytes`]).
pub fn attributes_bytes(attrs: &[KeyValue]) -> u64 {
    attrs
        .iter()
        .map(|kv| {
            (std::mem::size_of::<KeyValue>() + kv.key.len()) as u64
                + kv.value.as_ref().map_or(0, value_bytes)
        })
        .sum()
}

fn value_bytes(v: &AnyValue) -> u64 {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.len() as u64,
        Some(any_value::Value::BytesValue(b)) => b.len() as u64,
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| std::mem::size_of::<AnyValue>() as u64 + value_bytes(v))
            .sum(),
        Some(any_value::Value::KvlistValue(l)) => attributes_bytes(&l.values),
        _ => 0,
    }
}

/// Bytes of a `SpanOrigin` itself (its scope); the resource attributes are counted apart.
fn origin_bytes(origin: &SpanOrigin) -> u64 {
    let scope = origin.scope.as_ref().map_or(0, |s| {
        (s.name.len() + s.version.len()) as u64 + attributes_bytes(&s.attributes)
    });
    std::mem::size_of::<SpanOrigin>() as u64 + scope
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans};
    use tracecast_core::{BatchContext, ExportTraceServiceRequest};

    fn span(trace: u8, id: u8, parent: Option<u8>) -> Span {
        Span {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("s{id}"),
            ..Default::default()
        }
    }

    fn batch(spans: Vec<Span>) -> TraceBatch {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        TraceBatch::new(BatchContext::new("otlp"), req, None)
    }

    fn limits() -> AssemblyLimits {
        AssemblyLimits {
            idle_timeout: Duration::from_secs(5),
            max_wait: Duration::from_secs(60),
            max_spans: 100,
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn waits_for_the_root_then_idle() {
        let mut a = Assembler::new(limits());
        let t0 = Instant::now();
        let mut out = Vec::new();
        a.ingest(&batch(vec![span(1, 2, Some(1))]), t0, &mut out);
        a.take_due(t0 + Duration::from_secs(10), &mut out);
        assert!(out.is_empty(), "no root yet: held");
        a.ingest(
            &batch(vec![span(1, 1, None)]),
            t0 + Duration::from_secs(10),
            &mut out,
        );
        a.take_due(t0 + Duration::from_secs(14), &mut out);
        assert!(out.is_empty(), "root seen but not idle yet");
        a.take_due(t0 + Duration::from_secs(15), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].spans.len(), 2);
        assert_eq!(out[0].release, Release::Idle);
        assert!(a.is_empty());

        // A late span of the written trace: a new assembly, released on idle.
        let mut out = Vec::new();
        a.ingest(
            &batch(vec![span(1, 3, Some(1))]),
            t0 + Duration::from_secs(20),
            &mut out,
        );
        a.take_due(t0 + Duration::from_secs(25), &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].late_fragment);
    }

    #[test]
    fn max_wait_and_pressure_release_without_root() {
        let mut a = Assembler::new(AssemblyLimits {
            max_spans: 3,
            ..limits()
        });
        let t0 = Instant::now();
        let mut out = Vec::new();
        a.ingest(&batch(vec![span(1, 2, Some(1))]), t0, &mut out);
        a.ingest(
            &batch(vec![span(2, 2, Some(1)), span(2, 3, Some(1))]),
            t0 + Duration::from_secs(1),
            &mut out,
        );
        assert!(out.is_empty());
        a.ingest(
            &batch(vec![span(3, 1, None)]),
            t0 + Duration::from_secs(2),
            &mut out,
        );
        assert_eq!(out.len(), 1, "over the span bound: the oldest trace goes");
        assert_eq!(out[0].trace_id, vec![1; 16]);
        assert_eq!(out[0].release, Release::Pressure);
        let mut out = Vec::new();
        a.take_due(t0 + Duration::from_secs(61), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(a.buffered_spans(), 0);
    }

    #[test]
    fn remote_parent_counts_as_root() {
        let mut s = span(1, 2, Some(9));
        s.flags = FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE;
        assert!(is_root(&s));
        s.flags = FLAG_HAS_IS_REMOTE;
        assert!(!is_root(&s));
    }
}
