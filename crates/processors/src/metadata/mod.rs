//! The `metadata` processor: turns the gateway's request fields into namespaced span data.
//!
//! A *request* is the set of spans sharing one trace id within a batch. Its fields are read
//! from the `trace`, `user` and `session_id` attributes (names configurable) wherever the
//! gateway put them: on the root span only, on every span, or on the resource. `trace` is an
//! OTLP map, a JSON-object string, or flattened into `trace.<key>` attributes (what SDKs
//! that cannot set map values send: `trace.trace_name`, `trace.environment`, ...), all read
//! the same way; in the flattened form `trace.metadata.*` passes unchanged (idempotence) and
//! `trace.input` / `trace.output` (and their sub-keys) are content, left for Privacy Mode
//! and the trace file, never metadata. A key sent both as a map entry and flattened on the
//! same span takes the map's value. A span's
//! own value wins over the request's (root spans first), which wins over its resource's.
//! The source attributes are removed and replaced by the following (an output attribute
//! already on the span is overwritten by the request's value):
//!
//! | request field | result |
//! |---|---|
//! | `trace.trace_id` | OTLP trace id of every span of the request: 32 hex chars as is (lowercased); any other string (at most 256 bytes) -> first 16 bytes of `SHA-256("tracecast:" + string)`, the string kept as `tracecast.custom_trace_id` (on every span, see *Copies* below). Span links pointing at a moved span follow it. |
//! | `trace.trace_name` | name of the request's root span(s) |
//! | `trace.span_name` | name of intermediate (non-root, non-generation) spans |
//! | `trace.generation_name` | name of generation spans (a root that is also a generation takes `trace_name` if set) |
//! | `trace.parent_span_id` | `parent_span_id` of the root span(s) (16 hex chars), and the root's span flags get "parent is remote" (`0x100 \| 0x200`) |
//! | any other key `k` | attribute `trace.metadata.k` on every span of the request (see *Copies*); nested maps flattened with dots (`trace.metadata.a.b`), arrays kept as OTLP arrays, nulls skipped |
//! | `user` | `user.id` |
//! | `session_id` | `session.id` |
//!
//! Root spans: the spans with an empty parent; if the request has none, the spans whose
//! parent is not in the batch. Generation spans carry one of `generation_attributes`.
//!
//! *Copies*: work and memory stay linear in the request's size. The request's fields
//! (`tracecast.custom_trace_id`, `trace.metadata.*`, `user.id`, `session.id`) are copied onto
//! every span up to [`COPY_BYTES_PER_SPAN`] bytes per span, smallest first; the rest is
//! written once, on the request's first root span (readers such as the S3 trace file take
//! trace metadata from the whole trace). A request name (`trace_name`, `span_name`,
//! `generation_name`) longer than that names only the first span it applies to. A span's own
//! values are always written on it. Keys are matched with hash sets, never by rescanning.
//!
//! Bad input never stops a span; it is counted in `tracecast_warnings{reason}` with a
//! rate-limited log line: a `trace` value that is not an object is kept as
//! `trace.metadata.raw`; a `parent_span_id` that is not 16 hex chars and a `trace_id` that
//! is empty or longer than 256 bytes are skipped; a map-valued `user`/`session_id` is left as
//! it is. The output holds none of the source attributes, so running the processor twice
//! equals running it once, and input without them passes untouched (same bytes).

pub mod config;
pub mod fields;
pub mod ids;

use std::collections::{HashMap, HashSet};

use tracecast_core::proto::common::v1::AnyValue;
use tracecast_core::{metrics, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};

use crate::attrs;
use crate::warn::Warner;
pub use config::MetadataProcessorConfig;
use fields::{take_fields, Fields};
use ids::{parse_span_id, parse_trace_id, TraceIdInput};

/// Prefix of custom metadata attributes.
pub const METADATA_PREFIX: &str = "trace.metadata.";
/// Span attribute holding the request's `user`.
pub const USER_ID_ATTRIBUTE: &str = "user.id";
/// Span attribute holding the request's `session_id`.
pub const SESSION_ID_ATTRIBUTE: &str = "session.id";
/// Span attribute keeping a custom (non-hex) `trace_id` string, for the S3 trace `id`.
pub const CUSTOM_TRACE_ID_ATTRIBUTE: &str = "tracecast.custom_trace_id";
/// OTLP `SpanFlags` bits set on a root span given `trace.parent_span_id`:
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK` (0x100) | `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`
/// (0x200), "the parent is known to be remote". Readers that look for roots (the S3 trace
/// assembly) then still see the request's root as the root of its trace.
pub const SPAN_FLAGS_PARENT_IS_REMOTE: u32 = 0x100 | 0x200;

/// The `metadata` processor. See the module docs for the mapping.
#[derive(Debug)]
pub struct MetadataProcessor {
    id: ComponentId,
    cfg: MetadataProcessorConfig,
    warner: Warner,
}

/// Position of a span: resource, scope, span index.
type Pos = (usize, usize, usize);

struct SpanInfo {
    pos: Pos,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    generation: bool,
    fields: Fields,
}

impl MetadataProcessor {
    /// Builds the processor. `cfg` has nothing to parse: it is its own validated value (the
    /// registry validates it first).
    pub fn new(id: ComponentId, cfg: MetadataProcessorConfig) -> Self {
        Self {
            warner: Warner::new(id.clone()),
            id,
            cfg,
        }
    }

    /// Whether any resource or span carries a source attribute (else nothing to do).
    fn has_work(&self, req: &ExportTraceServiceRequest) -> bool {
        let is_source = |attrs: &[tracecast_core::proto::common::v1::KeyValue]| {
            attrs.iter().any(|a| {
                a.key == self.cfg.trace_attribute
                    || a.key == self.cfg.user_attribute
                    || a.key == self.cfg.session_id_attribute
                    || fields::is_flattened_trace_key(&a.key, &self.cfg.trace_attribute)
            })
        };
        req.resource_spans.iter().any(|rs| {
            rs.resource
                .as_ref()
                .is_some_and(|r| is_source(&r.attributes))
                || rs
                    .scope_spans
                    .iter()
                    .flat_map(|ss| ss.spans.iter())
                    .any(|s| is_source(&s.attributes))
        })
    }

    fn rewrite(&mut self, req: &mut ExportTraceServiceRequest) {
        let mut resource_fields = Vec::with_capacity(req.resource_spans.len());
        let mut spans: Vec<SpanInfo> = Vec::new();
        // Groups of span indexes by original trace id, in order of first appearance.
        let mut groups: Vec<(Vec<u8>, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<Vec<u8>, usize> = HashMap::new();
        for (ri, rs) in req.resource_spans.iter_mut().enumerate() {
            resource_fields.push(match rs.resource.as_mut() {
                Some(r) => take_fields(&mut r.attributes, &self.cfg, &mut self.warner),
                None => Fields::default(),
            });
            for (si, ss) in rs.scope_spans.iter_mut().enumerate() {
                for (pi, span) in ss.spans.iter_mut().enumerate() {
                    let fields = take_fields(&mut span.attributes, &self.cfg, &mut self.warner);
                    let generation = self
                        .cfg
                        .generation_attributes
                        .iter()
                        .any(|k| attrs::has(&span.attributes, k));
                    let g = *group_of.entry(span.trace_id.clone()).or_insert_with(|| {
                        groups.push((span.trace_id.clone(), Vec::new()));
                        groups.len() - 1
                    });
                    groups[g].1.push(spans.len());
                    spans.push(SpanInfo {
                        pos: (ri, si, pi),
                        span_id: span.span_id.clone(),
                        parent: span.parent_span_id.clone(),
                        generation,
                        fields,
                    });
                }
            }
        }

        // (old trace id, span id) -> new trace id, for span links.
        let mut moved: HashMap<(Vec<u8>, Vec<u8>), [u8; 16]> = HashMap::new();
        for (old_trace_id, members) in &groups {
            let ids: HashSet<&[u8]> = members.iter().map(|&i| &spans[i].span_id[..]).collect();
            let any_empty_parent = members.iter().any(|&i| spans[i].parent.is_empty());
            let is_root = |i: usize| {
                let p = &spans[i].parent;
                p.is_empty() || (!any_empty_parent && !ids.contains(&p[..]))
            };
            let mut order: Vec<usize> = members.iter().copied().filter(|&i| is_root(i)).collect();
            order.extend(members.iter().copied().filter(|&i| !is_root(i)));
            // The span that receives the request's fields too large to copy onto every
            // span: the first root (else the first span).
            let anchor = order[0];
            let mut layers: Vec<&Fields> = order.iter().map(|&i| &spans[i].fields).collect();
            let mut seen_resources = HashSet::new();
            for &i in members {
                let ri = spans[i].pos.0;
                if seen_resources.insert(ri) {
                    layers.push(&resource_fields[ri]);
                }
            }
            let request = Fields::layered(&layers);

            let new_trace =
                request
                    .trace_id
                    .as_deref()
                    .and_then(|s| match parse_trace_id(s) {
                        TraceIdInput::Hex(id) => Some((id, None)),
                        TraceIdInput::Custom(id, original) => Some((id, Some(original))),
                        TraceIdInput::Unusable => {
                            let len = s.len();
                            self.warner.warn("trace_id_unusable", || {
                        format!("trace.trace_id is empty or {len} bytes long (max 256); not used")
                    });
                            None
                        }
                    });
            let new_parent = request.parent_span_id.as_deref().and_then(|s| {
                let parsed = parse_span_id(s);
                if parsed.is_none() {
                    let shown: String = s.chars().take(40).collect();
                    self.warner.warn("bad_parent_span_id", || {
                        format!("trace.parent_span_id {shown:?} is not 16 hex characters; skipped")
                    });
                }
                parsed
            });
            let custom = new_trace.as_ref().and_then(|(_, c)| c.clone());
            let plan = CopyPlan::new(&request, custom);
            if !plan.anchor_only.is_empty() && members.len() > 1 {
                let (n, spans_n) = (plan.anchor_only.len(), members.len());
                self.warner.warn("request_field_not_copied", || {
                    format!(
                        "{n} request field(s) too large to copy onto all {spans_n} spans of \
                         the request; written once, on its root span (limit \
                         {COPY_BYTES_PER_SPAN} bytes per span)"
                    )
                });
            }
            // Whether a request name too long to copy was used already, per kind
            // (trace_name, generation_name, span_name).
            let mut long_name_used = [false; 3];

            for &i in members {
                let info = &spans[i];
                let (ri, si, pi) = info.pos;
                let root = is_root(i);
                let span = &mut req.resource_spans[ri].scope_spans[si].spans[pi];
                if let Some((id, _)) = &new_trace {
                    if span.trace_id != id[..] {
                        moved.insert((old_trace_id.clone(), span.span_id.clone()), *id);
                        span.trace_id = id.to_vec();
                    }
                }
                if root {
                    if let Some(p) = new_parent {
                        span.parent_span_id = p.to_vec();
                        // The parent lives in the caller's trace: flag it remote (OTLP
                        // `SpanFlags`), so the root is still a root to trace assembly.
                        span.flags |= SPAN_FLAGS_PARENT_IS_REMOTE;
                    }
                }
                // A name is the span's own (its input) or the request's; a request name too
                // long to copy names only the first span it applies to.
                let own = &info.fields;
                let (kind, name) = if root && request.trace_name.is_some() {
                    (0, (false, request.trace_name.as_deref()))
                } else if info.generation {
                    (1, own_or(&own.generation_name, &request.generation_name))
                } else if !root {
                    (2, own_or(&own.span_name, &request.span_name))
                } else {
                    (0, (false, None))
                };
                if let (is_own, Some(name)) = name {
                    let long = !is_own && name.len() > COPY_BYTES_PER_SPAN;
                    if !long || !long_name_used[kind] {
                        long_name_used[kind] |= long;
                        span.name = name.to_string();
                    }
                }
                attrs::set_all(&mut span.attributes, plan.updates(own, i == anchor));
            }
        }
        if !moved.is_empty() {
            for span in req
                .resource_spans
                .iter_mut()
                .flat_map(|rs| rs.scope_spans.iter_mut())
                .flat_map(|ss| ss.spans.iter_mut())
            {
                for link in &mut span.links {
                    if let Some(id) = moved.get(&(link.trace_id.clone(), link.span_id.clone())) {
                        link.trace_id = id.to_vec();
                    }
                }
            }
        }
    }
}

/// The span's own value when it has one (`true`), else the request's.
fn own_or<'a>(own: &'a Option<String>, request: &'a Option<String>) -> (bool, Option<&'a str>) {
    match own {
        Some(v) => (true, Some(v)),
        None => (false, request.as_deref()),
    }
}

/// Bytes of request fields (key plus value) copied onto each span of a request, at most.
/// Fields are taken smallest first; the rest is written once, on the request's root span.
/// This keeps the processor's output linear in its input: a 4 MB `trace` value on a root
/// with 60,000 children is written once, not 60,000 times, while the usual small fields
/// (`environment`, `user.id`, a custom trace id) still reach every span, where OTLP
/// backends filter on them. The split depends only on the fields themselves, so `privacy`
/// (which never touches them) still commutes with this processor.
pub const COPY_BYTES_PER_SPAN: usize = 1024;

/// Which of a request's fields (as output attributes) go onto every span and which only
/// onto its anchor span.
struct CopyPlan {
    /// Written on every span (unless the span has its own value).
    everywhere: Vec<(String, AnyValue)>,
    /// Written on the anchor span only (unless it has its own value).
    anchor_only: Vec<(String, AnyValue)>,
}

impl CopyPlan {
    fn new(request: &Fields, custom_trace_id: Option<String>) -> Self {
        let mut entries: Vec<(String, AnyValue)> = Vec::new();
        if let Some(c) = custom_trace_id {
            entries.push((CUSTOM_TRACE_ID_ATTRIBUTE.to_string(), attrs::string(c)));
        }
        for (k, v) in &request.metadata {
            entries.push((format!("{METADATA_PREFIX}{k}"), v.clone()));
        }
        if let Some(user) = &request.user {
            entries.push((USER_ID_ATTRIBUTE.to_string(), attrs::string(user.clone())));
        }
        if let Some(session) = &request.session_id {
            entries.push((
                SESSION_ID_ATTRIBUTE.to_string(),
                attrs::string(session.clone()),
            ));
        }
        // Smallest first (equal sizes keep their order), until the budget is spent.
        let mut by_size: Vec<(usize, usize)> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, v))| (k.len() + attrs::value_bytes(v), i))
            .collect();
        by_size.sort_unstable();
        let mut copy = vec![false; entries.len()];
        let mut spent = 0usize;
        for (cost, i) in by_size {
            if spent + cost > COPY_BYTES_PER_SPAN {
                break;
            }
            spent += cost;
            copy[i] = true;
        }
        let (mut everywhere, mut anchor_only) = (Vec::new(), Vec::new());
        for (e, copy) in entries.into_iter().zip(copy) {
            if copy {
                everywhere.push(e);
            } else {
                anchor_only.push(e);
            }
        }
        Self {
            everywhere,
            anchor_only,
        }
    }

    /// The attributes to set on one span, in the request's order: its own fields, then the
    /// request's fields it has no own value for (all of them on the anchor).
    fn updates(&self, own: &Fields, anchor: bool) -> Vec<(String, AnyValue)> {
        let mut out: Vec<(String, AnyValue)> = own
            .metadata
            .iter()
            .map(|(k, v)| (format!("{METADATA_PREFIX}{k}"), v.clone()))
            .collect();
        if let Some(user) = &own.user {
            out.push((USER_ID_ATTRIBUTE.to_string(), attrs::string(user.clone())));
        }
        if let Some(session) = &own.session_id {
            out.push((
                SESSION_ID_ATTRIBUTE.to_string(),
                attrs::string(session.clone()),
            ));
        }
        let taken: HashSet<String> = out.iter().map(|(k, _)| k.clone()).collect();
        let extra: &[(String, AnyValue)] = if anchor { &self.anchor_only } else { &[] };
        for (k, v) in self.everywhere.iter().chain(extra) {
            if !taken.contains(k) {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }
}

impl Processor for MetadataProcessor {
    fn process(&mut self, mut batch: TraceBatch, out: &mut Vec<TraceBatch>) {
        let n = batch.span_count() as u64;
        let labels = metrics::component(self.id.as_str());
        metrics::PROCESSOR_SPANS_IN.get_or_create(&labels).inc_by(n);
        if self.has_work(batch.request()) {
            self.rewrite(batch.request_mut());
        }
        metrics::PROCESSOR_SPANS_OUT
            .get_or_create(&labels)
            .inc_by(n);
        out.push(batch);
    }
}
