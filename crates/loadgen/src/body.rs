//! Request bodies, prepared before the run so the generator's own CPU goes to HTTP only.
//!
//! A pool of distinct bodies (different message text) is encoded up front and cycled, so a
//! collector that batches many requests and compresses them together (rotel does) cannot
//! profit from identical consecutive requests: with the default 64 bodies of ~25 KB, a
//! repeat is megabytes back, far outside gzip's 32 KiB window. Uncompressed bodies also get
//! fresh trace ids per request, written over the original ids' positions (found by
//! searching the encoded bytes), so a downstream trace assembler sees distinct traces.
//! Gzip bodies cannot be patched without recompressing; their ids repeat every `pool`
//! requests.

use bytes::Bytes;
use prost::Message;
use tracecast_core::ExportTraceServiceRequest;

use crate::payload::{build_request, gzip, PayloadSpec};

/// Body encoding on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP/JSON, hex ids).
    Json,
}

impl Encoding {
    /// The `Content-Type` header value.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Encodes `request` in `encoding`.
pub fn encode(request: &ExportTraceServiceRequest, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => request.encode_to_vec(),
        Encoding::Json => tracecast_core::otlp_json::encode_request(request),
    }
}

/// An encoded body and where each of its trace ids sits.
#[derive(Debug, Clone)]
pub struct BodyTemplate {
    body: Vec<u8>,
    encoding: Encoding,
    /// Per distinct trace id: every byte offset where it (raw, or as hex in JSON) starts.
    slots: Vec<Vec<usize>>,
}

impl BodyTemplate {
    /// Encodes `request` and records the positions of its trace ids.
    pub fn new(request: &ExportTraceServiceRequest, encoding: Encoding) -> Self {
        let body = encode(request, encoding);
        let mut ids: Vec<&[u8]> = Vec::new();
        for span in request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            if span.trace_id.len() == 16 && !ids.contains(&span.trace_id.as_slice()) {
                ids.push(&span.trace_id);
            }
        }
        let slots = ids
            .iter()
            .map(|id| {
                let needle = match encoding {
                    Encoding::Protobuf => id.to_vec(),
                    Encoding::Json => hex_lower(id).into_bytes(),
                };
                find_all(&body, &needle)
            })
            .collect();
        Self {
            body,
            encoding,
            slots,
        }
    }

    /// The body as encoded (the first request's ids).
    pub fn original(&self) -> &[u8] {
        &self.body
    }

    /// The body with trace ids unique to request number `seq` (given the same `salt`).
    pub fn render(&self, seq: u64, salt: u64) -> Vec<u8> {
        let mut out = self.body.clone();
        for (slot, offsets) in self.slots.iter().enumerate() {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(seq ^ salt).to_be_bytes());
            id[8..].copy_from_slice(&((slot as u64 + 1) ^ salt.rotate_left(17) | 1).to_be_bytes());
            for &at in offsets {
                match self.encoding {
                    Encoding::Protobuf => out[at..at + 16].copy_from_slice(&id),
                    Encoding::Json => out[at..at + 32].copy_from_slice(hex_lower(&id).as_bytes()),
                }
            }
        }
        out
    }
}

/// Where each request's body comes from.
#[derive(Debug, Clone)]
pub enum BodySource {
    /// Patched copies of the templates, cycled: every request carries new trace ids.
    Patched {
        templates: Vec<BodyTemplate>,
        salt: u64,
    },
    /// Pre-compressed bodies, cycled.
    Pool(Vec<Bytes>),
}

impl BodySource {
    /// Prepares `pool` distinct bodies of `spec`'s shape, compressed with `gzip_level`
    /// when given.
    pub fn prepare(
        spec: &PayloadSpec,
        encoding: Encoding,
        gzip_level: Option<u32>,
        pool: usize,
    ) -> Self {
        let mut rng = fastrand::Rng::with_seed(spec.seed);
        match gzip_level {
            None => BodySource::Patched {
                templates: (0..pool.max(1))
                    .map(|_| BodyTemplate::new(&build_request(spec, &mut rng), encoding))
                    .collect(),
                salt: rng.u64(..),
            },
            Some(level) => BodySource::Pool(
                (0..pool.max(1))
                    .map(|_| {
                        let body = encode(&build_request(spec, &mut rng), encoding);
                        Bytes::from(gzip(&body, level))
                    })
                    .collect(),
            ),
        }
    }

    /// The body of request number `seq`.
    pub fn body(&self, seq: u64) -> Bytes {
        match self {
            BodySource::Patched { templates, salt } => {
                let template = &templates[(seq % templates.len() as u64) as usize];
                Bytes::from(template.render(seq, *salt))
            }
            BodySource::Pool(bodies) => bodies[(seq % bodies.len() as u64) as usize].clone(),
        }
    }

    /// Size of one body on the wire (the first one, for pools).
    pub fn wire_size(&self) -> usize {
        match self {
            BodySource::Patched { templates, .. } => {
                templates.first().map_or(0, |t| t.original().len())
            }
            BodySource::Pool(bodies) => bodies.first().map_or(0, Bytes::len),
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return Vec::new();
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracecast_core::batch::span_count;
    use tracecast_core::proto::trace::v1::Span;

    fn spans(req: &ExportTraceServiceRequest) -> Vec<Span> {
        req.resource_spans[0].scope_spans[0].spans.clone()
    }

    fn check_patch(encoding: Encoding) {
        let spec = PayloadSpec {
            spans_per_request: 6,
            spans_per_trace: 3,
            content_bytes: 300,
            ..PayloadSpec::default()
        };
        let source = BodySource::prepare(&spec, encoding, None, 1);
        let decode = |b: &[u8]| match encoding {
            Encoding::Protobuf => ExportTraceServiceRequest::decode(b).unwrap(),
            Encoding::Json => tracecast_core::otlp_json::decode_request(b).unwrap(),
        };
        let a = decode(&source.body(1));
        let b = decode(&source.body(2));
        assert_eq!(span_count(&a), 6);
        let (sa, sb) = (spans(&a), spans(&b));
        // Within a request the traces stay intact; across requests the ids differ.
        assert_eq!(sa[0].trace_id, sa[2].trace_id);
        assert_ne!(sa[0].trace_id, sa[3].trace_id);
        assert_ne!(sa[0].trace_id, sb[0].trace_id);
        assert_eq!(sa[0].name, sb[0].name);
        assert_eq!(sa[1].attributes, sb[1].attributes);
        let pooled = BodySource::prepare(&spec, encoding, None, 2);
        // Consecutive requests of a pool differ in content, not only in ids.
        let (p1, p2) = (decode(&pooled.body(1)), decode(&pooled.body(2)));
        assert_ne!(spans(&p1)[1].attributes, spans(&p2)[1].attributes);
    }

    #[test]
    fn protobuf_bodies_get_fresh_trace_ids() {
        check_patch(Encoding::Protobuf);
    }

    #[test]
    fn json_bodies_get_fresh_trace_ids() {
        check_patch(Encoding::Json);
    }

    #[test]
    fn gzip_pool_cycles_distinct_bodies() {
        let source = BodySource::prepare(&PayloadSpec::default(), Encoding::Protobuf, Some(1), 3);
        assert_ne!(source.body(0), source.body(1));
        assert_eq!(source.body(0), source.body(3));
        assert_eq!(&source.body(0)[..2], &[0x1f, 0x8b]);
    }
}
