//! The checks behind tracecast's fuzz targets, one `pub fn <target>(data: &[u8])` per target
//! in `fuzz/fuzz_targets/`. Each runs the input through the real code and panics when an
//! invariant breaks (beyond "no panic": round trips, idempotence, span conservation, key
//! limits). The root package's `tests/fuzz_corpus.rs` includes this file and replays the
//! committed corpus (`fuzz/corpus/<target>/`) through the same functions, so CI needs no
//! fuzzer build.
//!
//! Structured targets read the input with [`Gen`], a byte reader that picks attribute keys
//! and values from the vocabularies the processors and the S3 mapping look for, so a
//! coverage-guided fuzzer reaches their branches without guessing the strings.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prost::Message;
use tracecast_core::proto::common::v1::any_value::Value as AnyValueKind;
use tracecast_core::proto::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::span::{Event, Link};
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use tracecast_core::{BatchContext, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};
use tracecast_exporter_s3::assembly::{Assembler, AssemblyLimits};
use tracecast_exporter_s3::document;
use tracecast_exporter_s3::key::{
    object_key, object_key_within, render_prefix, KeyVars, ObjectKey, PathTemplate,
};
use tracecast_exporter_s3::upload::{dead_letter_name, object_key_of, DEAD_LETTER_NAME_BYTES};
use tracecast_processors::{
    BatchProcessor, BatchProcessorConfig, MetadataProcessor, MetadataProcessorConfig,
    PrivacyProcessor, PrivacyProcessorConfig,
};
use tracecast_receiver_otlp::fuzzing::{
    decode, decode_within, decompress, drop_invalid_links, drop_invalid_spans, frame, scan,
    unframe_message, BodyEncoding, ContentEncoding, InflateBudget, Limits,
};
use tracecast_receiver_otlp::{OtlpReceiverConfig, RequestError};

/// A target's check.
pub type Check = fn(&[u8]);

/// Every target, by the name of its corpus folder.
pub const TARGETS: &[(&str, Check)] = &[
    ("receiver_decode", receiver_decode),
    ("json_decode", json_decode),
    ("json_roundtrip", json_roundtrip),
    ("proc_metadata", proc_metadata),
    ("proc_privacy", proc_privacy),
    ("proc_batch", proc_batch),
    ("s3_document", s3_document),
    ("s3_key", s3_key),
    ("grpc_decode", grpc_decode),
    ("receiver_zstd", receiver_zstd),
    ("genai_content", genai_content),
    ("proc_filter", proc_filter),
    ("proc_sampling", proc_sampling),
    ("proc_metadata_flat", proc_metadata_flat),
];

/// S3's limit on a whole object key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// A local file system's limit on one path segment (file or folder name), in bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// The highest clash suffix the uploader tries (`upload.rs`, `MAX_SUFFIX`).
const MAX_SUFFIX: u32 = 1000;
/// The receiver's default `max_request_body_size`.
const DEFAULT_BODY_LIMIT: u64 = 16 << 20;

// ---------------------------------------------------------------------------------------
// Input reader and request generator
// ---------------------------------------------------------------------------------------

/// Reads choices from fuzz input; once the input is used up every choice is 0 (so every
/// loop ends).
pub struct Gen<'a> {
    data: &'a [u8],
}

impl<'a> Gen<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u64(&mut self) -> u64 {
        let mut v = 0u64;
        for i in 0..8 {
            v |= u64::from(self.byte()) << (8 * i);
        }
        v
    }

    /// A number in `0..n` (0 when `n` is 0 or 1).
    pub fn below(&mut self, n: usize) -> usize {
        match n {
            0 | 1 => 0,
            2..=256 => self.byte() as usize % n,
            _ => (usize::from(self.byte()) | usize::from(self.byte()) << 8) % n,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Up to `max` raw bytes.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1).min(self.data.len());
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        taken
    }

    /// Up to `max` bytes of text (invalid UTF-8 replaced).
    pub fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Attribute keys the processors, Privacy Mode and the S3 mapping look for.
const KEYS: &[&str] = &[
    "trace",
    "user",
    "session_id",
    "trace.metadata.env",
    "trace.metadata.x",
    "user.id",
    "session.id",
    "tracecast.custom_trace_id",
    "tracecast.privacy.redacted_count",
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.prompt.0.content",
    "gen_ai.prompt.0.role",
    "gen_ai.completion.0.content",
    "input.value",
    "output.value",
    "span.input",
    "span.output",
    "trace.input",
    "trace.output",
    "langfuse.trace.input",
    "langfuse.trace.output",
    "langfuse.observation.input",
    "traceloop.entity.output",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.total_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.cost",
    "gen_ai.usage.input_cost",
    "gen_ai.usage.output_cost",
    "gen_ai.usage.total_cost",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.response.finish_reasons",
    "gen_ai.request.temperature",
    "llm.invocation_parameters",
    "llm.model_name",
    "llm.input_messages.0.message.content",
    "llm.token_count.total",
    "ai.prompt",
    "ai.response.text",
    "mlflow.spanInputs",
    "retrieval.documents.0.document.content",
    "retrieval.documents.0.document.id",
    "service.name",
    "openrouter.api_key_name",
    "exception.message",
    "x",
];

/// String values: ids, `trace` objects, content, path tricks.
const STRINGS: &[&str] = &[
    "",
    "0af7651916cd43dd8448eb211c80319c",
    "0AF7651916CD43DD8448EB211C80319C",
    "00f067aa0ba902b7",
    "app_trace_001",
    "not json {",
    r#"{"trace_id":"t-1","trace_name":"Root","span_name":"Mid","generation_name":"Gen","parent_span_id":"00f067aa0ba902b7","env":{"a":[1,2]}}"#,
    r#"{"trace_id":"0AF7651916CD43DD8448EB211C80319C","parent_span_id":"nope","k":null}"#,
    r#"[{"role":"user","content":"hi"}]"#,
    r#"{"temperature":0.5,"max_tokens":10}"#,
    "[1,2]",
    "{}",
    "gpt-4o",
    "stop",
    "1.5",
    "NaN",
    "..",
    "../..",
    "a/b\\c",
    " . ",
    "\u{7f}x\u{0}",
];

/// Keys of the `trace` object read by the metadata processor.
const TRACE_FIELDS: &[&str] = &[
    "trace_id",
    "trace_name",
    "span_name",
    "generation_name",
    "parent_span_id",
    "env",
    "input",
    "a.b",
];

const EVENT_NAMES: &[&str] = &[
    "exception",
    "gen_ai.content.prompt",
    "gen_ai.content.completion",
    "gen_ai.user.message",
    "details",
];

const TIMES: &[u64] = &[
    0,
    1,
    1_700_000_000_000_000_000,
    1_700_000_001_000_000_000,
    u64::MAX,
];

impl Gen<'_> {
    /// A string value: from the vocabulary, arbitrary, or a long run (custom trace ids of
    /// hundreds of characters).
    pub fn string(&mut self) -> String {
        match self.below(8) {
            0..=3 => self.pick(STRINGS).to_string(),
            4 | 5 => self.text(24),
            6 => {
                let c = self.pick(&['x', 'é', '/', '.', 'A']);
                let n = self.below(1200);
                std::iter::repeat_n(c, n).collect()
            }
            _ => self.json(3).to_string(),
        }
    }

    /// A JSON value, mostly objects with the `trace` fields.
    pub fn json(&mut self, depth: u32) -> serde_json::Value {
        use serde_json::Value as J;
        match if depth == 0 {
            self.below(5)
        } else {
            self.below(8)
        } {
            0 => J::Null,
            1 => J::Bool(self.bool()),
            2 => J::from(self.u64() as i64),
            3 => serde_json::Number::from_f64(f64::from_bits(self.u64()))
                .map(J::Number)
                .unwrap_or(J::Null),
            4 => J::String(self.string_leaf()),
            5 => J::Array((0..self.below(4)).map(|_| self.json(depth - 1)).collect()),
            _ => {
                let mut map = serde_json::Map::new();
                for _ in 0..self.below(6) {
                    let key = if self.below(4) == 0 {
                        self.text(8)
                    } else {
                        self.pick(TRACE_FIELDS).to_string()
                    };
                    map.insert(key, self.json(depth - 1));
                }
                J::Object(map)
            }
        }
    }

    fn string_leaf(&mut self) -> String {
        match self.below(4) {
            0 | 1 => self.pick(STRINGS).to_string(),
            2 => self.text(16),
            _ => std::iter::repeat_n('x', self.below(600)).collect(),
        }
    }

    pub fn key(&mut self) -> String {
        if self.below(6) == 0 {
            self.text(16)
        } else {
            self.pick(KEYS).to_string()
        }
    }

    pub fn any_value(&mut self, depth: u32) -> AnyValue {
        let kinds = if depth == 0 { 6 } else { 9 };
        let value = match self.below(kinds) {
            0 | 1 => Some(AnyValueKind::StringValue(self.string())),
            2 => Some(AnyValueKind::BoolValue(self.bool())),
            3 => {
                let any = self.u64() as i64;
                Some(AnyValueKind::IntValue(self.pick(&[
                    0,
                    1,
                    -1,
                    i64::MAX,
                    i64::MIN,
                    any,
                ])))
            }
            4 => {
                let any = f64::from_bits(self.u64());
                Some(AnyValueKind::DoubleValue(self.pick(&[
                    0.5,
                    -0.0,
                    f64::NAN,
                    f64::INFINITY,
                    1e300,
                    any,
                ])))
            }
            5 => None,
            6 => Some(AnyValueKind::BytesValue(self.bytes(16).to_vec())),
            7 => Some(AnyValueKind::ArrayValue(ArrayValue {
                values: (0..self.below(4))
                    .map(|_| self.any_value(depth - 1))
                    .collect(),
            })),
            _ => Some(AnyValueKind::KvlistValue(KeyValueList {
                values: self.attributes(depth - 1, 4),
            })),
        };
        AnyValue { value }
    }

    pub fn attributes(&mut self, depth: u32, max: usize) -> Vec<KeyValue> {
        (0..self.below(max + 1))
            .map(|_| KeyValue {
                key: self.key(),
                value: (self.below(8) != 0).then(|| self.any_value(depth)),
                ..Default::default()
            })
            .collect()
    }

    /// An id: one of a few shared values (so spans share traces and parents), empty, or
    /// arbitrary bytes of any length.
    pub fn id(&mut self, len: usize) -> Vec<u8> {
        match self.below(8) {
            0..=4 => vec![self.below(3) as u8 + 1; len],
            5 => Vec::new(),
            6 => vec![0; len],
            _ => self.bytes(20).to_vec(),
        }
    }

    pub fn span(&mut self) -> Span {
        let any_flags = self.u64() as u32;
        Span {
            trace_id: self.id(16),
            span_id: self.id(8),
            trace_state: if self.below(8) == 0 {
                self.text(8)
            } else {
                String::new()
            },
            parent_span_id: if self.bool() { Vec::new() } else { self.id(8) },
            flags: self.pick(&[0, 0x100, 0x300, 1, any_flags]),
            name: if self.bool() {
                self.pick(&["chat", "root", ""]).to_string()
            } else {
                self.text(12)
            },
            kind: self.pick(&[0, 1, 2, 3, 4, 5, 6, -1]),
            start_time_unix_nano: self.pick(TIMES),
            end_time_unix_nano: self.pick(TIMES),
            attributes: self.attributes(2, 6),
            dropped_attributes_count: 0,
            events: (0..self.below(3))
                .map(|_| Event {
                    time_unix_nano: self.pick(TIMES),
                    name: if self.below(4) == 0 {
                        self.text(8)
                    } else {
                        self.pick(EVENT_NAMES).to_string()
                    },
                    attributes: self.attributes(1, 3),
                    dropped_attributes_count: 0,
                })
                .collect(),
            dropped_events_count: 0,
            links: (0..self.below(3))
                .map(|_| Link {
                    trace_id: self.id(16),
                    span_id: self.id(8),
                    trace_state: String::new(),
                    attributes: self.attributes(1, 2),
                    dropped_attributes_count: 0,
                    flags: 0,
                })
                .collect(),
            dropped_links_count: 0,
            status: match self.below(4) {
                0 => None,
                n => Some(Status {
                    message: if n == 3 { self.text(8) } else { String::new() },
                    code: self.pick(&[0, 1, 2, 7]),
                }),
            },
        }
    }

    pub fn request(&mut self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: (0..self.below(4))
                .map(|_| ResourceSpans {
                    resource: self.bool().then(|| Resource {
                        attributes: self.attributes(2, 5),
                        dropped_attributes_count: 0,
                        entity_refs: Vec::new(),
                    }),
                    scope_spans: (0..self.below(4))
                        .map(|_| ScopeSpans {
                            scope: self.bool().then(|| InstrumentationScope {
                                name: self.text(8),
                                version: self.text(4),
                                attributes: self.attributes(1, 2),
                                dropped_attributes_count: 0,
                            }),
                            spans: (0..self.below(9)).map(|_| self.span()).collect(),
                            schema_url: String::new(),
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Protobuf bytes: equality that treats NaN doubles as equal to themselves.
fn pb(req: &ExportTraceServiceRequest) -> Vec<u8> {
    req.encode_to_vec()
}

fn spans(req: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    req.resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|ss| ss.spans.iter())
}

fn span_count(req: &ExportTraceServiceRequest) -> usize {
    spans(req).count()
}

fn received_at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn context(api_key_name: Option<&str>) -> BatchContext {
    BatchContext {
        receiver: "otlp".into(),
        api_key_name: api_key_name.map(Into::into),
        received_at: received_at(),
    }
}

fn component(id: &str) -> ComponentId {
    ComponentId::parse(id).expect("valid component id")
}

/// Runs one batch through `p`, expecting exactly one batch out (metadata and privacy).
fn run_one(p: &mut impl Processor, batch: TraceBatch) -> TraceBatch {
    let mut out = Vec::new();
    p.process(batch, &mut out);
    assert_eq!(
        out.len(),
        1,
        "a 1:1 processor emitted {} batches",
        out.len()
    );
    out.pop().unwrap()
}

fn run_request(
    p: &mut impl Processor,
    req: ExportTraceServiceRequest,
) -> ExportTraceServiceRequest {
    run_one(p, TraceBatch::new(context(None), req, None)).into_request()
}

fn metadata_processor(cfg: MetadataProcessorConfig) -> MetadataProcessor {
    MetadataProcessor::new(component("metadata/fuzz"), cfg)
}

/// Every attribute list of a request, sorted by key then encoded value (processors may
/// reorder attributes; OTLP gives the order no meaning).
fn normalized(mut req: ExportTraceServiceRequest) -> Vec<u8> {
    fn sort(list: &mut [KeyValue]) {
        list.sort_by_cached_key(|kv| {
            (kv.key.clone(), kv.value.as_ref().map(|v| v.encode_to_vec()))
        });
    }
    for rs in &mut req.resource_spans {
        if let Some(r) = rs.resource.as_mut() {
            sort(&mut r.attributes);
        }
        for ss in &mut rs.scope_spans {
            if let Some(s) = ss.scope.as_mut() {
                sort(&mut s.attributes);
            }
            for span in &mut ss.spans {
                sort(&mut span.attributes);
                for e in &mut span.events {
                    sort(&mut e.attributes);
                }
                for l in &mut span.links {
                    sort(&mut l.attributes);
                }
            }
        }
    }
    pb(&req)
}

/// Every attribute key of a request, with where it is.
fn all_keys(req: &ExportTraceServiceRequest) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut add = |at: &'static str, list: &[KeyValue]| {
        out.extend(list.iter().map(|kv| (at, kv.key.clone())));
    };
    for rs in &req.resource_spans {
        if let Some(r) = &rs.resource {
            add("resource", &r.attributes);
        }
        for ss in &rs.scope_spans {
            if let Some(s) = &ss.scope {
                add("scope", &s.attributes);
            }
            for span in &ss.spans {
                add("span", &span.attributes);
                for e in &span.events {
                    add("event", &e.attributes);
                }
                for l in &span.links {
                    add("link", &l.attributes);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Decoders
// ---------------------------------------------------------------------------------------

fn compress(body: &[u8], encoding: ContentEncoding, zlib: bool) -> Vec<u8> {
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;
    let level = Compression::fast();
    match encoding {
        ContentEncoding::Identity => body.to_vec(),
        ContentEncoding::Gzip => {
            let mut e = GzEncoder::new(Vec::new(), level);
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        ContentEncoding::Deflate if zlib => {
            let mut e = ZlibEncoder::new(Vec::new(), level);
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        ContentEncoding::Deflate => {
            let mut e = DeflateEncoder::new(Vec::new(), level);
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        ContentEncoding::Zstd => {
            ruzstd::encoding::compress_to_vec(body, ruzstd::encoding::CompressionLevel::Fastest)
        }
    }
}

/// The receiver's request limits for the two top bits of the flags byte: the defaults, or
/// small ones so that every over-limit path is reached.
fn receiver_limits(profile: u8, body_limit: u64) -> (OtlpReceiverConfig, Limits) {
    let mut config = OtlpReceiverConfig {
        max_request_body_size: tracecast_config::ByteSize(body_limit),
        ..Default::default()
    };
    if profile & 1 != 0 {
        config.max_spans_per_request = 3;
        config.max_decoded_size = Some(tracecast_config::ByteSize(4096));
    }
    if profile & 2 != 0 {
        config.max_custom_trace_id_length = 8;
        config.max_trace_metadata_size = tracecast_config::ByteSize(64);
    }
    let limits = Limits::new("otlp", &config);
    (config, limits)
}

/// The receiver's decode path, as the handler runs it: decompress (bounded) -> decode
/// (protobuf after the pre-scan, or OTLP/JSON with counting) -> the checks on the decoded
/// request -> drop spans with invalid ids.
///
/// First byte: bit 0 JSON, bits 1-2 content encoding (identity, gzip, deflate), bit 3
/// compress the rest here first (so the decoders see real requests through gzip/deflate),
/// bit 4 a small decompression limit, bit 5 zlib-wrapped deflate, bits 6-7 small request
/// limits. Checks: the decompression limit holds and our own compression is undone
/// exactly; the pre-scan accepts whatever prost decodes, counts its spans exactly and
/// never estimates less than the decoded request holds; a request is refused over a limit
/// only when it is over it; a decoded request re-encodes to itself; a request that passed
/// the limits stays within them through the `metadata` processor (custom trace id length,
/// trace metadata per span); invalid-id filtering leaves only valid spans.
pub fn receiver_decode(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let encoding = if flags & 1 == 0 {
        BodyEncoding::Protobuf
    } else {
        BodyEncoding::Json
    };
    let content = match (flags >> 1) & 3 {
        1 => ContentEncoding::Gzip,
        2 => ContentEncoding::Deflate,
        _ => ContentEncoding::Identity,
    };
    let ours = flags & 8 != 0 && content != ContentEncoding::Identity;
    let limit = if flags & 16 != 0 {
        (body.len() as u64 / 2).max(1)
    } else {
        DEFAULT_BODY_LIMIT
    };
    let (config, limits) = receiver_limits(flags >> 6, limit);
    let wire = if ours {
        compress(body, content, flags & 32 != 0)
    } else {
        body.to_vec()
    };
    // A budget of exactly one request's limit: one request alone never exhausts it, and
    // what a request reserved is back once it is dropped (a second decompression fits).
    let budget = InflateBudget::new("otlp", limit);
    let wire = Bytes::from(wire);
    let first = decompress(wire.clone(), content, limit, &budget);
    assert!(
        !matches!(first, Err(RequestError::Decompressing { .. })),
        "one request exhausted a budget of its own limit"
    );
    let first_ok = first.as_ref().map(|(b, _)| b.clone()).ok();
    drop(first);
    let plain = match decompress(wire, content, limit, &budget) {
        Ok((plain, _reserved)) => {
            assert_eq!(
                first_ok.as_ref(),
                Some(&plain),
                "second decompression differs"
            );
            plain
        }
        Err(RequestError::Decompressing { .. }) => {
            panic!("the budget was not returned when the first request was dropped")
        }
        Err(RequestError::TooLarge { limit: l, .. }) => {
            assert_eq!(l, limit);
            assert!(
                content != ContentEncoding::Identity,
                "identity bodies are never refused by decompress"
            );
            if ours {
                assert!(
                    body.len() as u64 > limit,
                    "refused {} <= {limit} bytes",
                    body.len()
                );
            }
            return;
        }
        Err(e) => {
            assert!(!ours, "our own {content:?} body was refused: {e}");
            return;
        }
    };
    assert!(plain.len() as u64 <= limit || content == ContentEncoding::Identity);
    if ours {
        assert_eq!(&plain[..], body, "decompression changed the body");
    }

    let unlimited = match encoding {
        BodyEncoding::Protobuf => {
            let prost = ExportTraceServiceRequest::decode(&plain[..]).ok();
            if let Some(request) = &prost {
                match scan(&plain) {
                    Ok(shape) => {
                        assert_eq!(
                            shape.spans as usize,
                            span_count(request),
                            "pre-scan span count"
                        );
                        let held = decoded_size(request);
                        assert!(
                            shape.decoded_size >= held,
                            "pre-scan estimate {} < {held} bytes the decoded request holds",
                            shape.decoded_size
                        );
                    }
                    // Finding 4 (fuzz/README.md, fixed): unknown groups are skipped.
                    Err(e) => panic!("pre-scan refuses a body prost decodes: {}", e.0),
                }
            }
            prost
        }
        BodyEncoding::Json => tracecast_core::otlp_json::decode_request(&plain).ok(),
    };
    let mut request = match decode(encoding, &plain, &limits) {
        Ok(request) => {
            let full =
                unlimited.expect("the limited decode accepted what the plain decode refuses");
            assert_eq!(pb(&request), pb(&full), "limited and plain decode differ");
            request
        }
        Err(RequestError::OverLimit { limit, .. }) => {
            // Counting stops at the limit, before the rest is parsed: a malformed body over a
            // limit is refused for the limit (413), which is fine.
            let Some(full) = unlimited else {
                return;
            };
            if limit == tracecast_receiver_otlp::RequestLimit::Spans {
                assert!(
                    span_count(&full) as u64 > config.max_spans_per_request,
                    "refused for its span count with {} spans",
                    span_count(&full)
                );
            }
            return;
        }
        Err(e) => {
            assert!(unlimited.is_none(), "a decodable request refused: {e}");
            return;
        }
    };
    if limits.check_decoded(&request).is_err() {
        return;
    }
    // A decoded request survives its own encoding unchanged.
    let bytes = pb(&request);
    let again = ExportTraceServiceRequest::decode(&bytes[..]).expect("re-encoded request decodes");
    assert_eq!(pb(&again), bytes, "protobuf round trip changed the request");
    if encoding == BodyEncoding::Json {
        json_fixed_point(&request);
    }
    within_limits_after_metadata(&config, &request);

    let before = span_count(&request);
    let rejected = drop_invalid_spans(&mut request);
    let after = span_count(&request);
    assert_eq!(before - after, rejected.as_ref().map_or(0, |r| r.count));
    for span in spans(&request) {
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.span_id.len(), 8);
        assert!(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8);
    }
    if rejected.is_some() {
        for rs in &request.resource_spans {
            assert!(!rs.scope_spans.is_empty(), "empty resource kept");
            assert!(
                rs.scope_spans.iter().all(|ss| !ss.spans.is_empty()),
                "empty scope kept"
            );
        }
    }
}

/// What a request the receiver let through becomes in the `metadata` processor: custom
/// trace ids no longer than `max_custom_trace_id_length`, and per span at most a bounded
/// multiple of `max_trace_metadata_size` of `trace.metadata.*` (the processor copies a
/// request's metadata onto each of its spans; the receiver bounds it per carrier).
///
/// Finding 3 (`fuzz/README.md`, `fuzz/findings/receiver_decode/`): flattening repeats a
/// nested map's key path in every leaf, so the copy per span can be quadratic in the
/// metadata's size. Checked only with `TRACECAST_FUZZ_OPEN_FINDINGS=1`.
fn within_limits_after_metadata(config: &OtlpReceiverConfig, request: &ExportTraceServiceRequest) {
    let mut m = metadata_processor(MetadataProcessorConfig::default());
    let out = run_request(&mut m, request.clone());
    let max_metadata = 8 * config.max_trace_metadata_size.get() + 4096;
    for span in spans(&out) {
        let mut metadata = 0u64;
        for kv in &span.attributes {
            if kv.key == "tracecast.custom_trace_id" {
                let len = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(AnyValueKind::StringValue(s)) => s.len() as u64,
                    _ => 0,
                };
                assert!(
                    len <= config.max_custom_trace_id_length,
                    "custom trace id of {len} bytes passed the receiver (limit {})",
                    config.max_custom_trace_id_length
                );
            }
            if kv.key.starts_with("trace.metadata.") {
                metadata += kv.encoded_len() as u64;
            }
        }
        if open_findings() {
            assert!(
                metadata <= max_metadata,
                "{metadata} bytes of trace metadata on one span (receiver limit {} per carrier)",
                config.max_trace_metadata_size.get()
            );
        }
    }
}

/// The memory a decoded request holds by the pre-scan's rules (`prescan.rs`): the size of
/// every element of a repeated message field plus the length of every string and bytes.
fn decoded_size(req: &ExportTraceServiceRequest) -> u64 {
    use std::mem::size_of;
    fn value(v: &AnyValue) -> usize {
        match &v.value {
            Some(AnyValueKind::StringValue(s)) => s.len(),
            Some(AnyValueKind::BytesValue(b)) => b.len(),
            Some(AnyValueKind::ArrayValue(a)) => a
                .values
                .iter()
                .map(|v| size_of::<AnyValue>() + value(v))
                .sum(),
            Some(AnyValueKind::KvlistValue(l)) => list(&l.values),
            _ => 0,
        }
    }
    fn list(l: &[KeyValue]) -> usize {
        l.iter()
            .map(|kv| size_of::<KeyValue>() + kv.key.len() + kv.value.as_ref().map_or(0, value))
            .sum()
    }
    let mut n = size_of::<ExportTraceServiceRequest>();
    for rs in &req.resource_spans {
        n += size_of::<ResourceSpans>() + rs.schema_url.len();
        if let Some(r) = &rs.resource {
            n += list(&r.attributes);
            for e in &r.entity_refs {
                n += size_of::<tracecast_core::proto::common::v1::EntityRef>()
                    + e.schema_url.len()
                    + e.r#type.len();
                for k in e.id_keys.iter().chain(&e.description_keys) {
                    n += size_of::<String>() + k.len();
                }
            }
        }
        for ss in &rs.scope_spans {
            n += size_of::<ScopeSpans>() + ss.schema_url.len();
            if let Some(s) = &ss.scope {
                n += s.name.len() + s.version.len() + list(&s.attributes);
            }
            for span in &ss.spans {
                n += size_of::<Span>()
                    + span.trace_id.len()
                    + span.span_id.len()
                    + span.trace_state.len()
                    + span.parent_span_id.len()
                    + span.name.len()
                    + list(&span.attributes);
                for e in &span.events {
                    n += size_of::<Event>() + e.name.len() + list(&e.attributes);
                }
                for l in &span.links {
                    n += size_of::<Link>()
                        + l.trace_id.len()
                        + l.span_id.len()
                        + l.trace_state.len()
                        + list(&l.attributes);
                }
                n += span.status.as_ref().map_or(0, |s| s.message.len());
            }
        }
    }
    n as u64
}

/// `encode(decode(encode(r))) == encode(r)` and the decode equals `r`.
fn json_fixed_point(request: &ExportTraceServiceRequest) {
    use tracecast_core::otlp_json::{decode_request, encode_request};
    let json = encode_request(request);
    let back = match decode_request(&json) {
        Ok(r) => r,
        Err(e) => panic!(
            "OTLP/JSON written by encode_request does not decode: {e}\n{}",
            String::from_utf8_lossy(&json)
        ),
    };
    assert_eq!(
        pb(&back),
        pb(request),
        "OTLP/JSON round trip changed the request"
    );
    assert_eq!(
        encode_request(&back),
        json,
        "OTLP/JSON encoding is not a fixed point"
    );
}

/// OTLP/JSON decoder on arbitrary bytes; what decodes must round-trip through the encoder.
///
/// `decode_request_limited` agrees with `decode_request`: same request when within the
/// limits, and a span-count refusal only for a request with more spans than the limit.
pub fn json_decode(data: &[u8]) {
    use tracecast_core::otlp_json::{
        decode_request_limited, DecodeLimits, LimitExceeded, LimitedDecodeError,
    };
    let plain = tracecast_core::otlp_json::decode_request(data);
    if let Ok(request) = &plain {
        json_fixed_point(request);
    }
    let max_spans = data.first().map_or(0, |b| u64::from(b % 8));
    for limits in [
        DecodeLimits {
            max_spans,
            max_decoded_size: 2048,
        },
        DecodeLimits {
            max_spans: u64::MAX,
            max_decoded_size: u64::MAX,
        },
    ] {
        match (decode_request_limited(data, limits), &plain) {
            (Ok(limited), Ok(full)) => assert_eq!(pb(&limited), pb(full), "limited decode differs"),
            (Ok(_), Err(e)) => panic!("limited decode accepts what decode refuses: {e}"),
            (Err(LimitedDecodeError::Invalid(_)), Err(_)) => {}
            (Err(LimitedDecodeError::Invalid(e)), Ok(_)) => {
                panic!("limited decode refuses a valid request as invalid: {e}")
            }
            (Err(LimitedDecodeError::OverLimit(over)), full) => {
                assert!(
                    limits.max_spans != u64::MAX,
                    "unlimited decode over a limit: {over}"
                );
                if let (LimitExceeded::Spans { limit }, Ok(full)) = (over, full) {
                    assert!(
                        span_count(full) as u64 > limit,
                        "refused with {} spans",
                        span_count(full)
                    );
                }
            }
        }
    }
    if let Ok(response) = tracecast_core::otlp_json::decode_response(data) {
        let json = tracecast_core::otlp_json::encode_response(&response);
        let back = tracecast_core::otlp_json::decode_response(&json).expect("response decodes");
        assert_eq!(back, response, "response round trip");
    }
}

/// A request the receiver accepts (generated, then filtered like the receiver does),
/// encoded as OTLP/JSON (what the `otlp` exporter sends with `encoding: json`) must decode
/// to itself (NaN payloads aside: JSON has one NaN).
///
/// Finding 2 (`fuzz/README.md`, fixed): the receiver checked the ids of spans but not of
/// span links, and a link id of another length was written as hex that no OTLP/JSON
/// decoder accepts. The receiver now drops such links (`drop_invalid_links`).
pub fn json_roundtrip(data: &[u8]) {
    let mut g = Gen::new(data);
    let mut request = g.request();
    drop_invalid_spans(&mut request);
    drop_invalid_links(&mut request);
    canonical_nans(&mut request);
    json_fixed_point(&request);
}

/// Whether to check the invariants that open findings break (see `fuzz/README.md`).
fn open_findings() -> bool {
    std::env::var_os("TRACECAST_FUZZ_OPEN_FINDINGS").is_some()
}

fn canonical_nans(req: &mut ExportTraceServiceRequest) {
    fn value(v: &mut AnyValue) {
        match v.value.as_mut() {
            Some(AnyValueKind::DoubleValue(d)) if d.is_nan() => *d = f64::NAN,
            Some(AnyValueKind::ArrayValue(a)) => a.values.iter_mut().for_each(value),
            Some(AnyValueKind::KvlistValue(l)) => list(&mut l.values),
            _ => {}
        }
    }
    fn list(l: &mut [KeyValue]) {
        l.iter_mut()
            .filter_map(|kv| kv.value.as_mut())
            .for_each(value);
    }
    for rs in &mut req.resource_spans {
        if let Some(r) = rs.resource.as_mut() {
            list(&mut r.attributes);
        }
        for ss in &mut rs.scope_spans {
            if let Some(s) = ss.scope.as_mut() {
                list(&mut s.attributes);
            }
            for span in &mut ss.spans {
                list(&mut span.attributes);
                span.events.iter_mut().for_each(|e| list(&mut e.attributes));
                span.links.iter_mut().for_each(|l| list(&mut l.attributes));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Processors
// ---------------------------------------------------------------------------------------

fn metadata_config(g: &mut Gen<'_>) -> MetadataProcessorConfig {
    if g.below(4) != 0 {
        return MetadataProcessorConfig::default();
    }
    MetadataProcessorConfig {
        trace_attribute: g.pick(&["trace", "x", "gen_ai.prompt"]).into(),
        user_attribute: g.pick(&["user", "service.name"]).into(),
        session_id_attribute: "session_id".into(),
        generation_attributes: vec![g.pick(&["gen_ai.system", "input.value"]).into()],
    }
}

/// `metadata`: never panics, keeps every span and span id in order, gives 16-byte trace
/// ids where it had them, passes input without source attributes untouched (same bytes),
/// and running it twice equals running it once.
pub fn proc_metadata(data: &[u8]) {
    let mut g = Gen::new(data);
    let cfg = metadata_config(&mut g);
    let sources = [
        cfg.trace_attribute.clone(),
        cfg.user_attribute.clone(),
        cfg.session_id_attribute.clone(),
    ];
    let request = g.request();
    let mut p = metadata_processor(cfg);
    let encoded = Bytes::from(request.encode_to_vec());
    let out = run_one(
        &mut p,
        TraceBatch::new(context(None), request.clone(), Some(encoded.clone())),
    );
    let has_sources = all_keys(&request)
        .iter()
        .any(|(at, k)| matches!(*at, "resource" | "span") && sources.contains(k));
    if !has_sources {
        assert_eq!(
            out.received_protobuf(),
            Some(&encoded),
            "input without source attributes was rewritten"
        );
    }
    let once = out.into_request();
    let ids =
        |r: &ExportTraceServiceRequest| spans(r).map(|s| s.span_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&once), ids(&request), "span ids or order changed");
    for (a, b) in spans(&request).zip(spans(&once)) {
        if a.trace_id.len() == 16 {
            assert_eq!(b.trace_id.len(), 16, "a valid trace id became invalid");
        }
    }
    let twice = run_request(&mut p, once.clone());
    assert_eq!(pb(&twice), pb(&once), "metadata twice != metadata once");
}

fn privacy_config(g: &mut Gen<'_>) -> PrivacyProcessorConfig {
    let mut cfg = PrivacyProcessorConfig {
        allow_list_mode: g.bool(),
        ..Default::default()
    };
    if g.below(4) == 0 {
        cfg.extra_keys = vec![g.key()];
        cfg.extra_patterns = vec![g.pick(&["^x$", "content", r"^gen_ai\.", "metadata"]).into()];
        cfg.extra_events = vec![g.pick(EVENT_NAMES).into()];
    }
    if g.below(4) == 0 {
        cfg.allow_keys = vec![g.key()];
        cfg.allow_patterns = vec![g.pick(&["^service\\.", "^trace\\.metadata\\."]).into()];
    }
    cfg
}

/// `privacy`: never panics, keeps every span, leaves no key it removes, is idempotent, and
/// (with no extra keys or patterns and the default allow lists) commutes with `metadata` up to attribute order.
pub fn proc_privacy(data: &[u8]) {
    let mut g = Gen::new(data);
    let cfg = privacy_config(&mut g);
    // A replaced allow list need not keep `metadata`'s inputs: then the order matters.
    let defaults = PrivacyProcessorConfig::default();
    let plain_rules = cfg.extra_keys.is_empty()
        && cfg.extra_patterns.is_empty()
        && cfg.allow_keys == defaults.allow_keys
        && cfg.allow_patterns == defaults.allow_patterns;
    let request = g.request();
    // A generated config may not validate (a bad pattern): then there is nothing to build.
    let Ok(valid) = tracecast_config::ValidateInto::validate_into(&cfg) else {
        return;
    };
    let mut p = PrivacyProcessor::new(component("privacy/fuzz"), valid);
    let once = run_request(&mut p, request.clone());
    assert_eq!(span_count(&once), span_count(&request));
    for (at, key) in all_keys(&once) {
        assert!(
            !p.removes_key(&key),
            "{at} attribute {key:?} should have been removed"
        );
    }
    let twice = run_request(&mut p, once.clone());
    assert_eq!(pb(&twice), pb(&once), "privacy twice != privacy once");

    if plain_rules {
        let mut m = metadata_processor(MetadataProcessorConfig::default());
        let a = run_request(&mut p, run_request(&mut m, request.clone()));
        let b = run_request(&mut m, run_request(&mut p, request.clone()));
        let json = |r: &ExportTraceServiceRequest| {
            String::from_utf8_lossy(&tracecast_core::otlp_json::encode_request(r)).into_owned()
        };
        assert!(
            normalized(a.clone()) == normalized(b.clone()),
            "privacy(metadata(r)) != metadata(privacy(r)) (attribute order aside)\nr: {}\nprivacy(metadata(r)): {}\nmetadata(privacy(r)): {}",
            json(&request),
            json(&a),
            json(&b)
        );
    }
}

/// A span with where it was, for comparing batch output with its input.
fn placed_spans(api_key_name: Option<&str>, req: &ExportTraceServiceRequest) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let mut rec = api_key_name.unwrap_or("-").as_bytes().to_vec();
                rec.push(0);
                rec.extend(
                    rs.resource
                        .as_ref()
                        .map(|r| r.encode_to_vec())
                        .unwrap_or_default(),
                );
                rec.push(0);
                rec.extend(rs.schema_url.as_bytes());
                rec.push(0);
                rec.extend(
                    ss.scope
                        .as_ref()
                        .map(|s| s.encode_to_vec())
                        .unwrap_or_default(),
                );
                rec.push(0);
                rec.extend(ss.schema_url.as_bytes());
                rec.push(0);
                rec.extend(span.encode_to_vec());
                out.push(rec);
            }
        }
    }
    out
}

/// `batch`: over a few batches from two contexts, every span comes out exactly once, with
/// its resource, scope and context; no batch is empty or over `send_batch_max_size`; nothing
/// is held after `flush`.
pub fn proc_batch(data: &[u8]) {
    let mut g = Gen::new(data);
    let size = 1 + g.below(8);
    let max = match g.below(3) {
        0 => 0,
        1 => size,
        _ => size + g.below(8),
    };
    let timeout_ms = g.pick(&[0, 200]);
    let mut p = BatchProcessor::new(
        component("batch/fuzz"),
        BatchProcessorConfig {
            send_batch_size: size,
            send_batch_max_size: max,
            timeout: tracecast_config::Duration(Duration::from_millis(timeout_ms)),
        },
    );
    let mut expected = Vec::new();
    let mut out = Vec::new();
    for _ in 0..1 + g.below(4) {
        let key = g.pick(&[None, Some("k1")]);
        let request = g.request();
        expected.extend(placed_spans(key, &request));
        let encoded = g.bool().then(|| Bytes::from(request.encode_to_vec()));
        p.process(TraceBatch::new(context(key), request, encoded), &mut out);
    }
    p.flush(&mut out);
    assert_eq!(p.held_spans(), 0, "spans held after flush");
    let mut got = Vec::new();
    for batch in &out {
        let n = batch.span_count();
        assert!(n > 0, "empty batch sent");
        if max > 0 {
            assert!(
                n <= max,
                "batch of {n} spans over send_batch_max_size {max}"
            );
        }
        if let Some(bytes) = batch.received_protobuf() {
            assert_eq!(
                bytes,
                &batch.request().encode_to_vec(),
                "stale received bytes"
            );
        }
        got.extend(placed_spans(
            batch.context().api_key_name.as_deref(),
            batch.request(),
        ));
    }
    expected.sort();
    got.sort();
    assert!(
        expected == got,
        "spans lost, duplicated or moved ({} in, {} out)",
        expected.len(),
        got.len()
    );
}

// ---------------------------------------------------------------------------------------
// S3 exporter: assembly, document, key
// ---------------------------------------------------------------------------------------

const TEMPLATES: &[&str] = &[
    "openrouter-traces/{date}",
    "{prefix}/{apiKeyName}/{year}/{month}/{day}/{hour}",
    "{prefix}{apiKeyName}",
    "{apiKeyName}",
    "a/./b//{date}/",
    "/{prefix}/",
    "{date",
    "{nope}",
    "a/../b",
    "",
];

/// Checks a key against the store limits and the sanitising rules. A backslash may come
/// only from the template's own text (the operator's config), never from a value.
pub fn check_key(key: &ObjectKey, template_has_backslash: bool) {
    for n in [1, 2, MAX_SUFFIX] {
        let s = key.nth(n);
        assert!(
            s.len() <= MAX_KEY_BYTES,
            "key of {} bytes (> {MAX_KEY_BYTES}): {s:?}",
            s.len()
        );
        assert!(!s.starts_with('/'), "key starts with '/': {s:?}");
        for seg in s.split('/') {
            assert!(!seg.is_empty(), "empty segment in {s:?}");
            assert!(
                seg.len() <= MAX_SEGMENT_BYTES,
                "segment of {} bytes (> {MAX_SEGMENT_BYTES}) in {s:?}",
                seg.len()
            );
            assert!(seg != "." && seg != "..", "dot segment in {s:?}");
            assert!(
                !seg.chars().any(char::is_control),
                "control character in {s:?}"
            );
            assert!(
                template_has_backslash || !seg.contains('\\'),
                "backslash in {s:?}"
            );
        }
    }
    assert_eq!(
        &object_key_of(&key.nth(1)),
        key,
        "stored key does not split back"
    );
    let dead = dead_letter_name(&key.nth(1));
    assert!(
        dead.len() <= DEAD_LETTER_NAME_BYTES,
        "dead-letter name of {} bytes",
        dead.len()
    );
    assert!(
        !dead.contains('/') && !dead.is_empty(),
        "dead-letter name {dead:?}"
    );
}

/// [`check_key`] for a store with a base folder: no name longer than `max`.
fn check_key_within(key: &ObjectKey, max: usize, template_has_backslash: bool) {
    check_key(key, template_has_backslash);
    for n in [1, 2, MAX_SUFFIX, u32::MAX] {
        let s = key.nth(n);
        assert!(
            s.len() <= max,
            "key of {} bytes (> {max} left by the base folder): {s:?}",
            s.len()
        );
    }
}

/// Time for keys: any instant the `time` crate can format.
fn instant(g: &mut Gen<'_>) -> time::OffsetDateTime {
    let secs = match g.below(4) {
        0 => 1_700_000_000,
        1 => 0,
        _ => g.u64() as i64 % 253_402_300_799,
    };
    time::OffsetDateTime::from_unix_timestamp(secs).expect("in range")
}

/// Object keys from any template, prefix, ingest key name, trace id and instant.
pub fn s3_key(data: &[u8]) {
    let mut g = Gen::new(data);
    let source = if g.below(3) == 0 {
        g.text(40)
    } else {
        g.pick(TEMPLATES).to_string()
    };
    let Ok(template) = PathTemplate::parse(&source) else {
        return;
    };
    let prefix = g.string();
    let api_key_name = g.string();
    let trace_id = g.string();
    let at = instant(&mut g);
    let ext = g.pick(&[".json", ".json.gz"]);
    let vars = KeyVars {
        prefix: &prefix,
        api_key_name: &api_key_name,
    };
    let folder = render_prefix(&template, vars, at);
    let key = object_key(&template, vars, &trace_id, at, ext);
    if folder.len() + key.stem.len() + ext.len() + 12 <= MAX_KEY_BYTES {
        assert_eq!(key.folder, folder, "a key that fits was shortened");
    }
    let backslash = source.contains('\\');
    check_key(&key, backslash);
    assert_eq!(
        key,
        object_key(&template, vars, &trace_id, at, ext),
        "not deterministic"
    );
    // A bucket base folder leaves less room (at least 100 bytes; config keeps it short).
    let max = MAX_KEY_BYTES - g.below(MAX_KEY_BYTES - 100);
    let within = object_key_within(&template, vars, &trace_id, at, ext, max);
    check_key_within(&within, max, backslash);
}

/// Spans (optionally through `metadata` first) assembled into traces, each built into its
/// document and keyed: every span lands in exactly one trace, every span and event is one
/// observation, the document serialises, and the key fits the store limits.
pub fn s3_document(data: &[u8]) {
    let mut g = Gen::new(data);
    let run_metadata = g.bool();
    let attr = g.pick(&[None, Some("openrouter.api_key_name"), Some("service.name")]);
    let template = PathTemplate::parse(g.pick(&TEMPLATES[..6])).expect("valid template");
    let prefix = g.string();
    let limits = AssemblyLimits {
        idle_timeout: Duration::from_secs(1),
        max_wait: Duration::from_secs(10),
        max_spans: g.pick(&[1, 3, 100_000]),
        max_bytes: g.pick(&[100, 64 << 20]),
    };
    let mut assembler = Assembler::new(limits);
    let now = tokio::time::Instant::now();
    let mut traces = Vec::new();
    let mut total = 0;
    for _ in 0..1 + g.below(2) {
        let key = g.pick(&[None, Some("k1")]);
        let mut request = g.request();
        if run_metadata {
            let mut m = metadata_processor(MetadataProcessorConfig::default());
            request = run_request(&mut m, request);
        }
        total += span_count(&request);
        assembler.ingest(
            &TraceBatch::new(context(key), request, None),
            now,
            &mut traces,
        );
    }
    assembler.take_all(&mut traces);
    assert!(assembler.is_empty());
    assert_eq!(traces.iter().map(|t| t.spans.len()).sum::<usize>(), total);
    for trace in &traces {
        assert!(trace
            .spans
            .iter()
            .all(|s| s.span.trace_id == trace.trace_id));
        let doc = document::build(trace, attr);
        let events: usize = trace.spans.iter().map(|s| s.span.events.len()).sum();
        assert_eq!(doc.observations.len(), trace.spans.len() + events);
        let json = serde_json::to_vec(&doc).expect("document serialises");
        serde_json::from_slice::<serde_json::Value>(&json).expect("document is JSON");
        let ext = g.pick(&[".json", ".json.gz"]);
        let key = object_key(
            &template,
            KeyVars {
                prefix: &prefix,
                api_key_name: &doc.api_key_name,
            },
            &doc.id,
            doc.start,
            ext,
        );
        check_key(&key, false);
    }
}

// ---------------------------------------------------------------------------------------
// Input paths of 2026-11-30 (second round): gRPC framing, zstd bodies, GenAI content,
// filter, sampling, flattened `trace.*` metadata. New vocabularies only: the ones above
// stay as they are, so the committed corpora of the older targets read the same.
// ---------------------------------------------------------------------------------------

/// The protobuf decode as the receiver runs it after decompression (pre-scan, limits,
/// budget, prost), checked against prost alone: what prost decodes is accepted unless it is
/// over a limit (and then only over it), what it refuses is refused, and the decoded
/// request is prost's.
fn check_protobuf_decode(plain: &[u8], config: &OtlpReceiverConfig, limits: &Limits) {
    let prost = ExportTraceServiceRequest::decode(plain).ok();
    if let Some(request) = &prost {
        match scan(plain) {
            Ok(shape) => {
                assert_eq!(
                    shape.spans as usize,
                    span_count(request),
                    "pre-scan span count"
                );
                assert!(
                    shape.decoded_size >= decoded_size(request),
                    "pre-scan estimate below the decoded request"
                );
            }
            Err(e) => panic!("pre-scan refuses a body prost decodes: {}", e.0),
        }
    }
    let budget = InflateBudget::decoding("otlp", config.decoding_size_limit());
    match decode_within(BodyEncoding::Protobuf, plain, limits, Some(&budget)) {
        Ok((request, _reserved)) => {
            let full = prost.expect("the receiver decoded what prost refuses");
            assert_eq!(pb(&request), pb(&full), "receiver and prost decode differ");
        }
        Err(RequestError::OverLimit { limit, .. }) => {
            if let (Some(full), tracecast_receiver_otlp::RequestLimit::Spans) = (&prost, limit) {
                assert!(
                    span_count(full) as u64 > config.max_spans_per_request,
                    "refused for its span count with {} spans",
                    span_count(full)
                );
            }
        }
        Err(RequestError::Decoding { .. }) => {
            panic!("one request exhausted the decoding budget on its own")
        }
        Err(e) => assert!(prost.is_none(), "a request prost decodes was refused: {e}"),
    }
}

/// Decompression as the receiver runs it, with a budget of exactly the limit: never more
/// than `limit` bytes out, never the budget exhausted by one request, the budget given
/// back on drop (a second run fits and gives the same bytes). `Err` only for a refusal.
fn bounded_decompress(
    wire: &[u8],
    content: ContentEncoding,
    limit: u64,
) -> Result<Bytes, RequestError> {
    let budget = InflateBudget::new("otlp", limit);
    let wire = Bytes::copy_from_slice(wire);
    let first = decompress(wire.clone(), content, limit, &budget);
    if let Err(RequestError::Decompressing { .. }) = first {
        panic!("one request exhausted a budget of its own limit");
    }
    let first = first.map(|(b, _)| b);
    let second = decompress(wire, content, limit, &budget);
    if let Err(RequestError::Decompressing { .. }) = second {
        panic!("the budget was not returned when the first request was dropped");
    }
    let second = second.map(|(b, _)| b);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "decompression is not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("decompression is not deterministic"),
    }
    if let Ok(plain) = &first {
        if content != ContentEncoding::Identity {
            assert!(
                plain.len() as u64 <= limit,
                "{} > limit {limit}",
                plain.len()
            );
        }
    }
    if let Err(RequestError::TooLarge { limit: l, .. }) = &first {
        assert_eq!(*l, limit);
        assert!(content != ContentEncoding::Identity);
    }
    first
}

/// OTLP/gRPC: framing, the compressed flag against `grpc-encoding`, bounded decompression
/// at `max_recv_msg_size`, then the protobuf decode, as `grpc.rs` runs them.
///
/// First byte: bits 0-1 the named `grpc-encoding` (identity, gzip, deflate, zstd), bit 2
/// frame the rest here (else it is the whole body, prefix included), bit 3 compress the
/// message here first, bit 4 a small message limit, bits 5-6 request-limit profile, bit 7
/// set the compressed flag without compressing. Checks: the framing refuses exactly a
/// short body, a length over the limit (before anything else), an unknown flag and a length
/// that does not match the rest; a flagged message needs a named compression; our own
/// framed (and compressed) message comes back exactly; decompression stays within the
/// limit; the decode is prost's.
pub fn grpc_decode(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let named = [
        ContentEncoding::Identity,
        ContentEncoding::Gzip,
        ContentEncoding::Deflate,
        ContentEncoding::Zstd,
    ][usize::from(flags & 3)];
    let frame_here = flags & 4 != 0;
    let ours = frame_here && flags & 8 != 0 && named != ContentEncoding::Identity;
    let limit = if flags & 16 != 0 {
        (rest.len() as u64 / 2).max(1)
    } else {
        DEFAULT_BODY_LIMIT
    };
    let (config, limits) = receiver_limits((flags >> 5) & 3, limit);
    let body = if frame_here {
        let message = if ours {
            compress(rest, named, true)
        } else {
            rest.to_vec()
        };
        let mut framed = frame(&message).to_vec();
        framed[0] = u8::from(ours || flags & 128 != 0);
        framed
    } else {
        rest.to_vec()
    };

    // The framing, modelled from the gRPC spec.
    let expected: Result<(ContentEncoding, &[u8]), &str> = match body[..] {
        [flag, a, b, c, d, ..] => {
            let len = u64::from(u32::from_be_bytes([a, b, c, d]));
            if len > limit {
                Err("too large")
            } else if flag > 1
                || body.len() as u64 - 5 != len
                || (flag == 1 && named == ContentEncoding::Identity)
            {
                Err("malformed")
            } else if flag == 1 {
                Ok((named, &body[5..]))
            } else {
                Ok((ContentEncoding::Identity, &body[5..]))
            }
        }
        _ => Err("malformed"),
    };
    let got = unframe_message(Bytes::from(body.clone()), limit, named);
    let (content, message) = match (expected, got) {
        (Ok((e, m)), Ok((g, message))) => {
            assert_eq!((e, m), (g, &message[..]), "unframed message differs");
            (g, message)
        }
        (Err("too large"), Err(RequestError::TooLarge { limit: l, .. })) => {
            assert_eq!(l, limit);
            return;
        }
        (Err("malformed"), Err(RequestError::Malformed { .. })) => return,
        (e, g) => panic!(
            "framing: expected {e:?}, got {:?}",
            g.map(|(c, m)| (c, m.len()))
        ),
    };
    if frame_here && !ours {
        assert_eq!(&message[..], rest);
    }
    let plain = match bounded_decompress(&message, content, limit) {
        Ok(plain) => plain,
        Err(e) => {
            if ours {
                assert!(
                    matches!(e, RequestError::TooLarge { .. }) && rest.len() as u64 > limit,
                    "our own {named:?} message of {} bytes was refused: {e}",
                    rest.len()
                );
            }
            return;
        }
    };
    if ours {
        assert_eq!(&plain[..], rest, "decompression changed the message");
    }
    check_protobuf_decode(&plain, &config, &limits);
}

/// The window a body's first zstd frame declares (RFC 8878 3.1.1.1.2), when it has a
/// window descriptor (single-segment frames declare their content size instead).
fn declared_window(body: &[u8]) -> Option<u64> {
    let [0x28, 0xb5, 0x2f, 0xfd, descriptor, window, ..] = *body else {
        return None;
    };
    if descriptor & 0x20 != 0 {
        return None;
    }
    let base = 1u64 << (10 + u64::from(window >> 3));
    Some(base + base / 8 * u64::from(window & 7))
}

/// zstd request bodies (`decode.rs`, `ruzstd` with a window cap and the inflate budget).
///
/// First byte: bit 0 encode the rest here (else the rest is the body), bit 1 a small
/// limit, bit 2 ruzstd's `Uncompressed` level (else `Fastest`), bit 3 two frames (the rest
/// split at the second byte's share), bit 4 a skippable frame in front. Checks: the output
/// never exceeds the limit; one request never exhausts a budget of its limit and gives it
/// back; decoding is deterministic; an encoder's frames come back exactly, refused only
/// when over the limit; what decodes is then decoded like any protobuf body.
pub fn receiver_zstd(data: &[u8]) {
    use ruzstd::encoding::{compress_to_vec, CompressionLevel};
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let ours = flags & 1 != 0;
    let limit = if flags & 2 != 0 {
        (rest.len() as u64 / 2).max(1)
    } else {
        DEFAULT_BODY_LIMIT
    };
    let (body, wire) = if ours {
        let (cut, body) = match rest.split_first() {
            Some((&cut, body)) if flags & 8 != 0 => (usize::from(cut) * body.len() / 255, body),
            _ => (rest.len(), rest),
        };
        let level = if flags & 4 != 0 {
            CompressionLevel::Uncompressed
        } else {
            CompressionLevel::Fastest
        };
        let mut wire = Vec::new();
        if flags & 16 != 0 {
            // A skippable frame (RFC 8878 3.1.2): magic 0x184D2A5?, 4-byte size, payload.
            wire.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        }
        let (a, b) = body.split_at(cut.min(body.len()));
        wire.extend(compress_to_vec(a, level));
        if flags & 8 != 0 {
            wire.extend(compress_to_vec(b, level));
        }
        (body, wire)
    } else {
        (rest, rest.to_vec())
    };
    let result = bounded_decompress(&wire, ContentEncoding::Zstd, limit);
    if let Some(window) = declared_window(&wire) {
        // The receiver's cap (`decode.rs`, `ZSTD_MAX_WINDOW`): a larger window is refused
        // from the frame header, before its buffer is allocated.
        if window > limit.max(8 << 20) {
            assert!(result.is_err(), "a {window}-byte zstd window was accepted");
        }
        // Open finding 6 (`fuzz/README.md`): the window buffer is reserved up front and not
        // charged to the inflate budget, so below an 8 MiB limit a tiny body holds an 8 MiB
        // window beside its budgeted output.
        if open_findings() && result.is_ok() {
            assert!(
                window <= limit,
                "a {window}-byte zstd window under a {limit}-byte limit, outside the budget"
            );
        }
    }
    let plain = match result {
        Ok(plain) => plain,
        Err(e) => {
            if ours {
                assert!(
                    matches!(e, RequestError::TooLarge { .. }) && body.len() as u64 > limit,
                    "our own zstd body of {} bytes was refused at limit {limit}: {e}",
                    body.len()
                );
            }
            return;
        }
    };
    if ours {
        assert_eq!(&plain[..], body, "zstd decompression changed the body");
    }
    let (config, limits) = receiver_limits(flags >> 6, DEFAULT_BODY_LIMIT);
    check_protobuf_decode(&plain, &config, &limits);
}

/// Attribute keys `tracecast_core::genai` reads (every convention), for [`genai_content`].
const GENAI_KEYS: &[&str] = &[
    "gen_ai.system_instructions",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.prompt.0.content",
    "gen_ai.prompt.0.role",
    "gen_ai.prompt.1.content",
    "gen_ai.prompt.0.tool_calls.0.name",
    "gen_ai.prompt.0.tool_calls.0.arguments",
    "gen_ai.prompt.0.tool_calls.0.id",
    "gen_ai.completion.0.content",
    "gen_ai.completion.0.role",
    "gen_ai.completion.0.finish_reason",
    "gen_ai.completion.1.content",
    "gen_ai.completion.0.tool_calls.0.name",
    "llm.input_messages.0.message.content",
    "llm.input_messages.0.message.role",
    "llm.input_messages.1.message.contents.0.message_content.text",
    "llm.input_messages.0.message.tool_calls.0.tool_call.function.name",
    "llm.input_messages.0.message.tool_calls.0.tool_call.function.arguments",
    "llm.output_messages.0.message.content",
    "llm.output_messages.0.message.role",
    "ai.prompt.messages",
    "ai.prompt",
    "ai.response.text",
    "ai.response.toolCalls",
    "ai.response.reasoning",
    "ai.response.object",
    "span.input",
    "span.output",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "input.value",
    "output.value",
    "traceloop.entity.input",
    "traceloop.entity.output",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "ai.toolCall.args",
    "ai.toolCall.result",
    "trace.input",
    "trace.output",
    "langfuse.trace.input",
    "langfuse.trace.output",
    "gen_ai.response.finish_reasons",
];

/// Event names and event attribute keys the deprecated GenAI message events use.
const GENAI_EVENTS: &[&str] = &[
    "gen_ai.system.message",
    "gen_ai.user.message",
    "gen_ai.assistant.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
    "gen_ai.content.prompt",
    "gen_ai.content.completion",
];
const GENAI_EVENT_KEYS: &[&str] = &[
    "gen_ai.event.content",
    "content",
    "role",
    "tool_calls",
    "id",
    "name",
    "message",
    "finish_reason",
    "index",
    "gen_ai.prompt",
    "gen_ai.completion",
];

/// Keys and values of chat-shaped JSON (messages, parts, tool calls).
const CHAT_KEYS: &[&str] = &[
    "role",
    "content",
    "parts",
    "type",
    "text",
    "tool_calls",
    "function_call",
    "message",
    "messages",
    "system",
    "prompt",
    "choices",
    "completion",
    "reasoning",
    "toolCalls",
    "function",
    "name",
    "arguments",
    "args",
    "input",
    "id",
    "toolCallId",
    "call_id",
    "tool_use_id",
    "toolName",
    "response",
    "result",
    "output",
    "thinking",
    "finish_reason",
    "value",
];
const CHAT_STRINGS: &[&str] = &[
    "user",
    "assistant",
    "system",
    "tool",
    "text",
    "input_text",
    "output_text",
    "reasoning",
    "thinking",
    "tool_call",
    "tool-call",
    "tool_use",
    "function_call",
    "tool_call_response",
    "tool-result",
    "tool_result",
    "stop",
    "",
    "hi",
    "\\\"\u{0}",
];

impl Gen<'_> {
    /// Chat-shaped JSON: message lists, messages with parts and tool calls, `{messages}`,
    /// `{choices}`, `{completion}` objects, nested to `depth`.
    pub fn chat_json(&mut self, depth: u32) -> serde_json::Value {
        use serde_json::Value as J;
        match self.below(if depth == 0 { 4 } else { 7 }) {
            0 => J::String(self.pick(CHAT_STRINGS).to_string()),
            1 => J::String(self.text(24)),
            2 => J::from(self.u64() as i64 % 1000),
            3 => J::Null,
            4 => J::Array(
                (0..self.below(5))
                    .map(|_| self.chat_json(depth - 1))
                    .collect(),
            ),
            5 => J::String(self.chat_json(depth - 1).to_string()),
            _ => {
                let mut map = serde_json::Map::new();
                for _ in 0..self.below(5) {
                    let key = self.pick(CHAT_KEYS).to_string();
                    map.insert(key, self.chat_json(depth - 1));
                }
                J::Object(map)
            }
        }
    }

    fn genai_value(&mut self, depth: u32) -> AnyValue {
        match self.below(6) {
            0..=2 => AnyValue {
                value: Some(AnyValueKind::StringValue(self.chat_json(3).to_string())),
            },
            3 => AnyValue {
                value: Some(AnyValueKind::StringValue(
                    self.pick(CHAT_STRINGS).to_string(),
                )),
            },
            4 => json_to_any(&self.chat_json(3)),
            _ => self.any_value(depth),
        }
    }

    fn genai_attributes(&mut self, keys: &[&str], max: usize) -> Vec<KeyValue> {
        (0..self.below(max + 1))
            .map(|_| KeyValue {
                key: if self.below(8) == 0 {
                    self.key()
                } else {
                    self.pick(keys).to_string()
                },
                value: (self.below(16) != 0).then(|| self.genai_value(1)),
                ..Default::default()
            })
            .collect()
    }

    /// A span carrying the GenAI conventions' content keys and message events.
    pub fn genai_span(&mut self) -> Span {
        Span {
            attributes: self.genai_attributes(GENAI_KEYS, 8),
            events: (0..self.below(4))
                .map(|_| Event {
                    name: self.pick(GENAI_EVENTS).to_string(),
                    attributes: self.genai_attributes(GENAI_EVENT_KEYS, 4),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// A JSON value as an OTLP value (objects as key-value lists).
fn json_to_any(v: &serde_json::Value) -> AnyValue {
    use serde_json::Value as J;
    let value = match v {
        J::Null => None,
        J::Bool(b) => Some(AnyValueKind::BoolValue(*b)),
        J::Number(n) => Some(match n.as_i64() {
            Some(i) => AnyValueKind::IntValue(i),
            None => AnyValueKind::DoubleValue(n.as_f64().unwrap_or_default()),
        }),
        J::String(s) => Some(AnyValueKind::StringValue(s.clone())),
        J::Array(items) => Some(AnyValueKind::ArrayValue(ArrayValue {
            values: items.iter().map(json_to_any).collect(),
        })),
        J::Object(map) => Some(AnyValueKind::KvlistValue(KeyValueList {
            values: map
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: Some(json_to_any(v)),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    AnyValue { value }
}

/// How much bigger than the span's encoded size the converted content may be. Every
/// output byte comes from an input byte, at most JSON-escaped (6x for a control
/// character) and written twice (a completion also among its `choices`), plus a fixed
/// overhead per message; anything superlinear (one input string in every message, say)
/// breaks it soon.
const GENAI_AMPLIFICATION: usize = 16;
const GENAI_OVERHEAD: usize = 1024;

/// `genai`: `span_content`, `trace_content` and `request_text` over spans with the
/// conventions' keys and events: no panic, the same answer twice, and output (the trace
/// file's input/output JSON and the request text) bounded by a fixed multiple of the
/// span's encoded size (no amplification).
pub fn genai_content(data: &[u8]) {
    use tracecast_core::genai::{request_text, span_content, trace_content};
    let mut g = Gen::new(data);
    let span = g.genai_span();
    let in_size = span.encoded_len();
    let render = |span: &Span| {
        let c = span_content(&span.attributes, &span.events);
        let (ti, to, used) = trace_content(&span.attributes);
        let text = request_text(span);
        let mut used_keys: Vec<_> = c.used_keys.iter().cloned().collect();
        used_keys.sort();
        let mut used_events: Vec<_> = c.used_events.iter().copied().collect();
        used_events.sort();
        for i in &used_events {
            assert!(
                *i < span.events.len(),
                "used event {i} of {}",
                span.events.len()
            );
        }
        serde_json::json!({
            "input": c.input.as_ref().map(|i| i.to_json()),
            "output": c.output.as_ref().map(|o| o.to_json()),
            "finish_reasons": c.finish_reasons,
            "used_keys": used_keys,
            "used_events": used_events,
            "trace_input": ti.as_ref().map(|i| i.to_json()),
            "trace_output": to.as_ref().map(|o| o.to_json()),
            "trace_used": used,
            "text_input": text.input,
            "text_output": text.output,
        })
        .to_string()
    };
    let once = render(&span);
    assert_eq!(once, render(&span), "genai content is not deterministic");
    let bound = GENAI_AMPLIFICATION * in_size + GENAI_OVERHEAD;
    assert!(
        once.len() <= bound,
        "{} bytes of content from a {in_size}-byte span (bound {bound})",
        once.len()
    );
}

// --- filter --------------------------------------------------------------------------------

const FILTER_FIELDS: &[&str] = &[
    "model",
    "provider",
    "session_id",
    "user_id",
    "api_key_name",
    "finish_reason",
    "input",
    "output",
    "total_cost",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "no_such_field",
];
/// The filter's own operator list (same order as before, so the corpus reads the same).
const FILTER_OPERATORS: &[&str] = tracecast_processors::filter::config::OPERATORS;
const FILTER_VALUES: &[&str] = &[
    "gpt-4o", "stop", "hi", "", "u1", "s1", "key-a", "^gpt", "(", "a|b",
];

fn filter_config(g: &mut Gen<'_>) -> tracecast_processors::FilterProcessorConfig {
    use tracecast_processors::filter::{RuleConfig, RuleGroupConfig};
    let group = |g: &mut Gen<'_>| RuleGroupConfig {
        logic: g.pick(&["and", "or", "and", "xor"]).to_string(),
        rules: (0..1 + g.below(3))
            .map(|_| {
                let by_attribute = g.below(4) == 0;
                RuleConfig {
                    field: (!by_attribute).then(|| g.pick(FILTER_FIELDS).to_string()),
                    attribute: by_attribute.then(|| g.key()),
                    operator: g.pick(FILTER_OPERATORS).to_string(),
                    value: match g.below(6) {
                        0 => None,
                        1 => Some(serde_json::json!(g.below(1000) as f64 / 10.0)),
                        2 => Some(serde_json::json!([g.pick(FILTER_VALUES), g.pick(STRINGS)])),
                        3 => Some(serde_json::Value::String(g.pick(STRINGS).to_string())),
                        _ => Some(serde_json::Value::String(g.pick(FILTER_VALUES).to_string())),
                    },
                }
            })
            .collect(),
    };
    tracecast_processors::FilterProcessorConfig {
        include: (0..g.below(3)).map(|_| group(g)).collect(),
        exclude: (0..g.below(3)).map(|_| group(g)).collect(),
        api_key_name_attribute: g
            .bool()
            .then(|| g.pick(&["openrouter.api_key_name", "x"]).into()),
    }
}

/// The placed spans of `req` grouped by trace id, each group as a sorted multiset.
fn by_trace(
    api_key_name: Option<&str>,
    req: &ExportTraceServiceRequest,
) -> std::collections::BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
    let mut groups = std::collections::BTreeMap::<Vec<u8>, Vec<Vec<u8>>>::new();
    let placed = placed_spans(api_key_name, req);
    for (span, rec) in spans(req).zip(placed) {
        groups.entry(span.trace_id.clone()).or_default().push(rec);
    }
    for list in groups.values_mut() {
        list.sort();
    }
    groups
}

/// `filter`: over generated rule groups (validated as the config loader does) and requests,
/// a request (the spans of one trace id) is kept whole or dropped whole, never a span twice,
/// kept spans keep their resource, scope and bytes; a batch kept whole passes untouched
/// (same received bytes); the decision is deterministic and the same when the request
/// comes alone.
pub fn proc_filter(data: &[u8]) {
    use tracecast_config::ValidateInto;
    use tracecast_processors::FilterProcessor;
    let mut g = Gen::new(data);
    let cfg = filter_config(&mut g);
    let Ok(rules) = cfg.validate_into() else {
        return;
    };
    let key = g.pick(&[None, Some("key-a"), Some("")]);
    let request = g.request();
    let encoded = Bytes::from(request.encode_to_vec());
    let mut p = FilterProcessor::new(component("filter/fuzz"), rules.clone());
    let mut out = Vec::new();
    p.process(
        TraceBatch::new(context(key), request.clone(), Some(encoded.clone())),
        &mut out,
    );
    assert!(out.len() <= 1, "filter emitted {} batches", out.len());
    let input = by_trace(key, &request);
    let kept = out
        .first()
        .map(|b| by_trace(key, b.request()))
        .unwrap_or_default();
    for (trace_id, spans_out) in &kept {
        let spans_in = input
            .get(trace_id)
            .expect("a span of no input trace came out");
        assert_eq!(
            spans_out, spans_in,
            "request {trace_id:02x?} kept in part or changed"
        );
    }
    if kept.len() == input.len() && !input.is_empty() {
        let batch = out.first().expect("kept batch");
        assert_eq!(
            batch.received_protobuf(),
            Some(&encoded),
            "a kept batch was rewritten"
        );
    }
    // Deterministic, and a request's fate does not depend on the other requests.
    let mut again = FilterProcessor::new(component("filter/fuzz"), rules);
    for (trace_id, _) in input {
        let mut alone = request.clone();
        for rs in &mut alone.resource_spans {
            for ss in &mut rs.scope_spans {
                ss.spans.retain(|s| s.trace_id == trace_id);
            }
        }
        let mut out = Vec::new();
        again.process(TraceBatch::new(context(key), alone, None), &mut out);
        let kept_alone = out.first().is_some_and(|b| span_count(b.request()) > 0);
        assert_eq!(
            kept_alone,
            kept.contains_key(&trace_id),
            "request {trace_id:02x?} decided differently alone"
        );
    }
}

// --- sampling ------------------------------------------------------------------------------

const TRACE_STATES: &[&str] = &[
    "",
    "ot=th:8",
    "ot=th:c",
    "ot=th:0",
    "ot=th:fffffffffffff",
    "ot=rv:00000000000000",
    "ot=rv:ffffffffffffff",
    "ot=rv:80000000000000;th:4",
    "ot=th:8;rv:7fffffffffffff",
    "vendor=x,ot=th:1",
    "ot=th:",
    "ot=rv:zz",
    "ot=th:10000000000000000",
    "a=b,ot=p:8;th:2,c=d",
];

/// Spans of `req` taken by `part(span index)`, in place (empty scopes and resources kept).
fn split_request(
    req: &ExportTraceServiceRequest,
    parts: usize,
    part_of: &dyn Fn(usize, &Span) -> usize,
) -> Vec<ExportTraceServiceRequest> {
    (0..parts)
        .map(|part| {
            let mut i = 0;
            let mut out = req.clone();
            for rs in &mut out.resource_spans {
                for ss in &mut rs.scope_spans {
                    ss.spans.retain(|s| {
                        let here = part_of(i, s) == part;
                        i += 1;
                        here
                    });
                }
            }
            out
        })
        .collect()
}

/// `sampling`: the decision does not depend on how a batch is split (whole requests into
/// several batches for `by: session_id`/`user_id`, any split for `by: trace_id`); never a
/// span twice; sampling the output again changes nothing (the same sampler chained); the
/// recorded ratio is a probability.
pub fn proc_sampling(data: &[u8]) {
    use tracecast_processors::sampling::{SampleBy, RATIO_ATTRIBUTE};
    use tracecast_processors::{SamplingProcessor, SamplingProcessorConfig};
    let mut g = Gen::new(data);
    let any_ratio = f64::from(g.u64() as u32) / f64::from(u32::MAX);
    let ratio = g
        .pick(&[0.0001, 0.05, 0.25, 0.5, 0.999, 1.0, any_ratio])
        .max(0.0001);
    let by = g.pick(&[SampleBy::TraceId, SampleBy::SessionId, SampleBy::UserId]);
    let cfg = SamplingProcessorConfig { ratio, by };
    let mut request = g.request();
    for rs in &mut request.resource_spans {
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                if g.below(3) == 0 {
                    span.trace_state = g.pick(TRACE_STATES).to_string();
                }
            }
        }
    }
    let parts = 1 + g.below(3);
    let choices: Vec<usize> = (0..span_count(&request)).map(|_| g.below(parts)).collect();
    let mut trace_part = std::collections::HashMap::new();
    for (i, span) in spans(&request).enumerate() {
        trace_part
            .entry(span.trace_id.clone())
            .or_insert(choices[i]);
    }
    let mut p = SamplingProcessor::new(component("sampling/fuzz"), &cfg);
    let run = |p: &mut SamplingProcessor, req: ExportTraceServiceRequest| {
        let mut out = Vec::new();
        p.process(TraceBatch::new(context(None), req, None), &mut out);
        assert!(out.len() <= 1, "sampling emitted {} batches", out.len());
        out.pop().map(TraceBatch::into_request)
    };
    let whole = run(&mut p, request.clone());
    let mut kept = whole
        .as_ref()
        .map(|r| placed_spans(None, r))
        .unwrap_or_default();
    kept.sort();
    assert!(kept.len() <= span_count(&request), "more spans out than in");
    let split = split_request(&request, parts, &|i, s| match by {
        SampleBy::TraceId => choices[i],
        _ => trace_part[&s.trace_id],
    });
    let mut kept_split = Vec::new();
    for part in split {
        if let Some(out) = run(&mut p, part) {
            kept_split.extend(placed_spans(None, &out));
        }
    }
    kept_split.sort();
    assert_eq!(
        kept, kept_split,
        "decisions differ across batch splits ({parts} parts)"
    );
    if let Some(once) = whole {
        // A recorded ratio is a probability (unless the input already had one).
        let had_ratio = all_keys(&request).iter().any(|(_, k)| k == RATIO_ATTRIBUTE);
        for span in spans(&once).filter(|_| !had_ratio) {
            let ratio = span
                .attributes
                .iter()
                .find(|kv| kv.key == RATIO_ATTRIBUTE)
                .and_then(|kv| kv.value.as_ref()?.value.clone());
            match ratio {
                Some(AnyValueKind::DoubleValue(r)) => {
                    assert!(r > 0.0 && r <= 1.0, "recorded ratio {r}")
                }
                other => panic!("kept span without a ratio: {other:?}"),
            }
        }
        let twice = run(&mut p, once.clone()).expect("a kept batch sampled again is dropped");
        assert_eq!(pb(&twice), pb(&once), "sampling twice != sampling once");
    }
}

// --- metadata, flattened `trace.*` ---------------------------------------------------------

/// `trace.<k>` suffixes: the request fields, metadata, content and nested paths.
const FLAT_FIELDS: &[&str] = &[
    "trace_id",
    "trace_name",
    "span_name",
    "generation_name",
    "parent_span_id",
    "env",
    "env.a",
    "env.a.b",
    "metadata.x",
    "metadata.env.a",
    "metadata",
    "input",
    "output",
    "input.messages",
    "output.0",
    "a.b",
    "",
    ".",
    "raw",
];

/// `metadata` with the `trace` field flattened into `<trace_attribute>.<k>` attributes
/// (beside the map and JSON forms and the output keys `trace.metadata.*`): span ids and
/// order kept, no flattened source key left, and twice = once.
pub fn proc_metadata_flat(data: &[u8]) {
    use tracecast_processors::metadata::fields::is_flattened_trace_key;
    let mut g = Gen::new(data);
    let cfg = metadata_config(&mut g);
    let prefix = cfg.trace_attribute.clone();
    let mut request = g.request();
    let flat = |g: &mut Gen<'_>, attrs: &mut Vec<KeyValue>| {
        for _ in 0..g.below(5) {
            let value = match g.below(4) {
                0 => g.any_value(1),
                1 => json_to_any(&g.json(2)),
                _ => AnyValue {
                    value: Some(AnyValueKind::StringValue(g.string())),
                },
            };
            let kv = KeyValue {
                key: format!("{prefix}.{}", g.pick(FLAT_FIELDS)),
                value: (g.below(8) != 0).then_some(value),
                ..Default::default()
            };
            let at = g.below(attrs.len() + 1);
            attrs.insert(at, kv);
        }
    };
    for rs in &mut request.resource_spans {
        if let Some(resource) = &mut rs.resource {
            flat(&mut g, &mut resource.attributes);
        }
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                flat(&mut g, &mut span.attributes);
            }
        }
    }
    let mut p = metadata_processor(cfg);
    let once = run_request(&mut p, request.clone());
    let ids =
        |r: &ExportTraceServiceRequest| spans(r).map(|s| s.span_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&once), ids(&request), "span ids or order changed");
    for span in spans(&once) {
        for kv in &span.attributes {
            assert!(
                !is_flattened_trace_key(&kv.key, &prefix),
                "flattened source key {:?} left on a span",
                kv.key
            );
        }
    }
    let twice = run_request(&mut p, once.clone());
    assert_eq!(
        pb(&twice),
        pb(&once),
        "metadata twice != metadata once (flattened input)"
    );
}
