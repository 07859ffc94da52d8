//! Turning an HTTP request into an `ExportTraceServiceRequest`: content type and content
//! encoding negotiation, the body size limits (declared, received, decompressed), bounded
//! decompression, decoding, and dropping spans whose ids are invalid.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prost::Message;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracecast_core::otlp_json::{self, DecodeLimits, LimitExceeded, LimitedDecodeError};
use tracecast_core::ExportTraceServiceRequest;

use crate::error::{RequestError, RequestLimit, SizeCheck};
use crate::limits::Limits;
use crate::prescan;

/// The two OTLP/HTTP body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Protobuf,
    Json,
}

impl BodyEncoding {
    pub fn content_type(self) -> &'static str {
        match self {
            BodyEncoding::Protobuf => "application/x-protobuf",
            BodyEncoding::Json => "application/json",
        }
    }

    /// The encoding named by `Content-Type`, ignoring parameters (`; charset=utf-8`) and case.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, RequestError> {
        let Some(value) = headers.get(CONTENT_TYPE) else {
            return Err(RequestError::UnsupportedContentType {
                got: "(none: the header is missing)".to_string(),
            });
        };
        let raw = String::from_utf8_lossy(value.as_bytes());
        let media_type = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(BodyEncoding::Protobuf),
            "application/json" => Ok(BodyEncoding::Json),
            _ => Err(RequestError::UnsupportedContentType {
                got: format!("{raw:?}"),
            }),
        }
    }

    /// The encoding to answer in: the request's when recognisable, else protobuf (the
    /// OTLP default), so even a 415 or 404 gets a body the client can read.
    pub fn for_response(headers: &HeaderMap) -> Self {
        Self::from_headers(headers).unwrap_or(BodyEncoding::Protobuf)
    }
}

/// The supported request `Content-Encoding`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
}

impl ContentEncoding {
    /// Reads `Content-Encoding`. A list is accepted when at most one entry is not
    /// `identity`; stacked compressions are refused.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, RequestError> {
        let mut found = ContentEncoding::Identity;
        for value in headers.get_all(CONTENT_ENCODING) {
            let raw = String::from_utf8_lossy(value.as_bytes());
            for token in raw.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                let this = match token.as_str() {
                    "" | "identity" => continue,
                    "gzip" | "x-gzip" => ContentEncoding::Gzip,
                    "deflate" => ContentEncoding::Deflate,
                    "zstd" => ContentEncoding::Zstd,
                    _ => {
                        return Err(RequestError::UnsupportedEncoding {
                            got: raw.into_owned(),
                        })
                    }
                };
                if found != ContentEncoding::Identity {
                    return Err(RequestError::UnsupportedEncoding {
                        got: raw.into_owned(),
                    });
                }
                found = this;
            }
        }
        Ok(found)
    }
}

/// Refuses a request whose declared `Content-Length` is over `limit` before reading it.
pub fn check_content_length(headers: &HeaderMap, limit: u64) -> Result<(), RequestError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(len) if len > limit => Err(RequestError::TooLarge {
            check: SizeCheck::ContentLength,
            limit,
        }),
        _ => Ok(()),
    }
}

/// Reads the whole body within `timeout`, refusing it as soon as more than `limit` bytes
/// arrived (chunked bodies have no `Content-Length` to check up front). A body refused for
/// its size is handed back so the caller can drain it before answering.
pub async fn read_body(
    body: Incoming,
    limit: u64,
    timeout: Duration,
) -> Result<Bytes, (RequestError, Option<Incoming>)> {
    match tokio::time::timeout(timeout, read_limited(body, limit)).await {
        Ok(result) => result,
        Err(_) => Err((RequestError::ReadTimeout { timeout }, None)),
    }
}

async fn read_limited(
    mut body: Incoming,
    limit: u64,
) -> Result<Bytes, (RequestError, Option<Incoming>)> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                let message = format!(
                    "{e}; the client closed the connection or sent invalid chunked framing"
                );
                return Err((RequestError::BodyRead { message }, None));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing OTLP uses
        };
        if (buf.len() + data.len()) as u64 > limit {
            let err = RequestError::TooLarge {
                check: SizeCheck::Received,
                limit,
            };
            return Err((err, Some(body)));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// Undoes `encoding`, never holding more than `limit + 1` decompressed bytes: a gzip bomb
/// is refused once it crosses the limit instead of inflating in memory. The buffer grows
/// by doubling but never past `limit`, so a request at the limit takes `limit` bytes here,
/// not the next power of two.
///
/// Every byte of buffer is first reserved from `budget`, shared by all requests, and held
/// in the returned [`Reserved`] until the caller is done with the request.
pub fn decompress(
    body: Bytes,
    encoding: ContentEncoding,
    limit: u64,
    budget: &InflateBudget,
) -> Result<(Bytes, Reserved), RequestError> {
    let mut reserved = Reserved(None);
    let (name, mut reader): (&'static str, Box<dyn Read + '_>) = match encoding {
        ContentEncoding::Identity => return Ok((body, reserved)),
        ContentEncoding::Gzip => ("gzip", Box::new(MultiGzDecoder::new(&body[..]))),
        // HTTP `deflate` is zlib-wrapped (RFC 9110), but some clients send raw deflate.
        ContentEncoding::Deflate if looks_like_zlib(&body) => {
            ("deflate", Box::new(ZlibDecoder::new(&body[..])))
        }
        ContentEncoding::Deflate => ("deflate", Box::new(DeflateDecoder::new(&body[..]))),
        ContentEncoding::Zstd => ("zstd", Box::new(ZstdFrames::new(&body[..], limit))),
    };
    let limit_len = usize::try_from(limit).unwrap_or(usize::MAX);
    let initial = body.len().saturating_mul(4).min(limit_len);
    budget.reserve(&mut reserved, initial)?;
    let mut out: Vec<u8> = Vec::with_capacity(initial);
    let mut chunk = [0u8; 32 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(RequestError::Malformed {
                    encoding: name,
                    message: format!(
                        "{e}; check that Content-Encoding matches how the body was compressed"
                    ),
                })
            }
        };
        let len = out.len() + n;
        if len > limit_len {
            return Err(RequestError::TooLarge {
                check: SizeCheck::Decompressed,
                limit,
            });
        }
        if len > out.capacity() {
            // Doubling, but never past the limit: the buffer is at most `limit` bytes.
            let target = out.capacity().saturating_mul(2).max(len).min(limit_len);
            budget.reserve(&mut reserved, target)?;
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok((Bytes::from(out), reserved))
}

/// The decompressed bytes all requests of one receiver may hold at once
/// (`max_decompressing_size`), counted in KiB.
#[derive(Debug, Clone)]
pub struct InflateBudget {
    permits: Arc<Semaphore>,
    limit: u64,
    receiver: String,
    /// Decompressed bodies (`max_decompressing_size`) or decoded requests
    /// (`max_decoding_size`): only the refusal's message differs.
    decoding: bool,
}

/// A request's share of the [`InflateBudget`], returned when dropped.
#[derive(Debug)]
pub struct Reserved(Option<OwnedSemaphorePermit>);

impl InflateBudget {
    pub fn new(receiver: &str, limit: u64) -> Self {
        let kib = usize::try_from(limit.div_ceil(1024)).unwrap_or(usize::MAX);
        Self {
            permits: Arc::new(Semaphore::new(kib.min(Semaphore::MAX_PERMITS))),
            limit,
            receiver: receiver.to_string(),
            decoding: false,
        }
    }

    /// The budget of decoded request memory held by all requests at once
    /// (`max_decoding_size`).
    pub fn decoding(receiver: &str, limit: u64) -> Self {
        Self {
            decoding: true,
            ..Self::new(receiver, limit)
        }
    }

    /// Grows `held` to cover a buffer of `total` bytes, or refuses (503, retry soon) when
    /// the budget is used up.
    fn reserve(&self, held: &mut Reserved, total: usize) -> Result<(), RequestError> {
        let have = held.0.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        let need = total.div_ceil(1024).saturating_sub(have);
        if need == 0 {
            return Ok(());
        }
        let kib = u32::try_from(need).unwrap_or(u32::MAX);
        let permit = self
            .permits
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| {
                let (receiver, limit, retry_after) =
                    (self.receiver.clone(), self.limit, Duration::from_secs(1));
                if self.decoding {
                    RequestError::Decoding {
                        receiver,
                        limit,
                        retry_after,
                    }
                } else {
                    RequestError::Decompressing {
                        receiver,
                        limit,
                        retry_after,
                    }
                }
            })?;
        match &mut held.0 {
            Some(existing) => existing.merge(permit),
            None => held.0 = Some(permit),
        }
        Ok(())
    }
}

/// The zstd frames of a body, decoded one after the other (RFC 8878 allows several).
///
/// A frame's window (the history the decoder keeps, and reserves up front) is capped at
/// [`ZSTD_MAX_WINDOW`] or the decompressed body limit, whichever is larger: streaming
/// encoders declare their level's window whatever the body's size (8 MiB at level 19), so
/// the cap admits every standard level while a header declaring a huge window is refused
/// before anything is allocated. The decompressed output itself is bounded and budgeted by
/// [`decompress`] like gzip's. Decoding is pure Rust (`ruzstd`), so a hostile frame meets a
/// memory-safe parser.
/// The largest zstd window accepted below the body limit: 8 MiB, the window the zstd
/// format recommends every decoder support and the largest of the non-`--ultra` levels.
const ZSTD_MAX_WINDOW: u64 = 8 * 1024 * 1024;

struct ZstdFrames<'a> {
    rest: &'a [u8],
    frame: Option<ruzstd::decoding::StreamingDecoder<&'a [u8], ruzstd::decoding::FrameDecoder>>,
    max_window: u64,
}

impl<'a> ZstdFrames<'a> {
    fn new(body: &'a [u8], limit: u64) -> Self {
        Self {
            rest: body,
            frame: None,
            max_window: limit.max(ZSTD_MAX_WINDOW),
        }
    }
}

impl Read for ZstdFrames<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.rest = *frame.get_ref();
                self.frame = None;
            }
            if self.rest.is_empty() {
                return Ok(0);
            }
            match ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
                self.rest,
                self.max_window,
            ) {
                Ok(frame) => self.frame = Some(frame),
                // A skippable frame (RFC 8878 3.1.2: magic, 4-byte size, payload) carries
                // no data and a decoder skips it, as `zstd -d` does.
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let end = usize::try_from(length)
                        .ok()
                        .and_then(|length| length.checked_add(8))
                        .filter(|end| *end <= self.rest.len())
                        .ok_or_else(|| {
                            std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "a skippable zstd frame runs past the end of the body",
                            )
                        })?;
                    self.rest = &self.rest[end..];
                }
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e.to_string(),
                    ))
                }
            }
        }
    }
}

fn looks_like_zlib(body: &[u8]) -> bool {
    match body {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Decodes an export request in `encoding`, refusing it with 413 when it would hold more
/// spans or take more memory than `limits` allow: protobuf is pre-scanned on the wire
/// before prost allocates anything, JSON is counted while it decodes and stopped early.
/// (Without a decoding budget: the fuzz targets and tests call it.)
#[allow(dead_code)]
pub fn decode(
    encoding: BodyEncoding,
    body: &[u8],
    limits: &Limits,
) -> Result<ExportTraceServiceRequest, RequestError> {
    decode_within(encoding, body, limits, None).map(|(request, _)| request)
}

/// JSON's worst amplification from text to decoded structs: an empty span `{},` (3 bytes)
/// decodes to about 200. Reserved up front from the decoding budget, capped at
/// `max_decoded_size` (the JSON decoder stops there anyway).
pub const JSON_DECODE_FACTOR: u64 = 64;

/// [`decode`], first reserving the request's decoded memory from `budget` (shared by all
/// requests of the receiver, `max_decoding_size`): the protobuf pre-scan's estimate, or for
/// JSON [`JSON_DECODE_FACTOR`] x the body (at most `max_decoded_size`). The reservation is
/// held until the request is answered; when the budget is used up the request gets 503
/// with `Retry-After` before anything is decoded.
pub fn decode_within(
    encoding: BodyEncoding,
    body: &[u8],
    limits: &Limits,
    budget: Option<&InflateBudget>,
) -> Result<(ExportTraceServiceRequest, Reserved), RequestError> {
    let mut reserved = Reserved(None);
    let mut reserve = |bytes: u64| match budget {
        Some(b) => b.reserve(&mut reserved, usize::try_from(bytes).unwrap_or(usize::MAX)),
        None => Ok(()),
    };
    let malformed_protobuf = |message: String| {
        RequestError::Malformed {
        encoding: "OTLP protobuf",
        message: format!(
            "{message}; send a protobuf-encoded ExportTraceServiceRequest, or Content-Type: application/json for OTLP/JSON"
        ),
    }
    };
    match encoding {
        BodyEncoding::Protobuf => {
            let shape = prescan::scan(body).map_err(|e| malformed_protobuf(e.0))?;
            limits.check_shape(shape)?;
            reserve(shape.decoded_size)?;
            let request = ExportTraceServiceRequest::decode(body)
                .map_err(|e| malformed_protobuf(e.to_string()))?;
            Ok((request, reserved))
        }
        BodyEncoding::Json => {
            reserve(
                (body.len() as u64)
                    .saturating_mul(JSON_DECODE_FACTOR)
                    .min(limits.max_decoded_size),
            )?;
            let json_limits = DecodeLimits {
                max_spans: limits.max_spans,
                max_decoded_size: limits.max_decoded_size,
            };
            otlp_json::decode_request_limited(body, json_limits).map_err(|e| match e {
                LimitedDecodeError::Invalid(e) => RequestError::Malformed {
                    encoding: "OTLP/JSON",
                    message: format!("{e}; send an OTLP/JSON ExportTraceServiceRequest"),
                },
                LimitedDecodeError::OverLimit(LimitExceeded::Spans { limit }) => limits.over(
                    RequestLimit::Spans,
                    format!("request has more than {limit} spans (decoding stopped there)"),
                ),
                LimitedDecodeError::OverLimit(LimitExceeded::DecodedSize { limit }) => {
                    limits.over(
                        RequestLimit::DecodedSize,
                        format!(
                            "request would take more than {limit} bytes once decoded (decoding stopped there)"
                        ),
                    )
                }
            })
            .map(|request| (request, reserved))
        }
    }
}

/// Spans removed from a request because their ids are invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub count: usize,
    /// The first problem found, named with its place in the request.
    pub first_problem: String,
}

/// Removes spans whose `trace_id` is not 16 bytes, whose `span_id` is not 8 bytes, or
/// whose `parent_span_id` is neither empty nor 8 bytes: nothing downstream can group or
/// link them. Scopes and resources left without spans are removed too.
pub fn drop_invalid_spans(request: &mut ExportTraceServiceRequest) -> Option<Rejected> {
    let mut count = 0usize;
    let mut first_problem: Option<String> = None;
    for (ri, rs) in request.resource_spans.iter_mut().enumerate() {
        for (si, ss) in rs.scope_spans.iter_mut().enumerate() {
            let mut index = 0usize;
            ss.spans.retain(|span| {
                let at = index;
                index += 1;
                let problem = if span.trace_id.len() != 16 {
                    Some(("traceId", span.trace_id.len(), 16))
                } else if span.span_id.len() != 8 {
                    Some(("spanId", span.span_id.len(), 8))
                } else if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
                    Some(("parentSpanId", span.parent_span_id.len(), 8))
                } else {
                    None
                };
                let Some((field, got, want)) = problem else {
                    return true;
                };
                count += 1;
                if first_problem.is_none() {
                    first_problem = Some(format!(
                        "resourceSpans[{ri}].scopeSpans[{si}].spans[{at}] (name {:?}) has a {got}-byte {field}; it must be {want} bytes",
                        span.name
                    ));
                }
                false
            });
        }
    }
    if count == 0 {
        return None;
    }
    for rs in &mut request.resource_spans {
        rs.scope_spans.retain(|ss| !ss.spans.is_empty());
    }
    request
        .resource_spans
        .retain(|rs| !rs.scope_spans.is_empty());
    Some(Rejected {
        count,
        first_problem: first_problem.unwrap_or_default(),
    })
}

/// Removes span links whose `trace_id` is not 16 bytes or whose `span_id` is not 8 bytes
/// (the span itself is kept). Found by fuzzing: accepted as they were, such links made the
/// OTLP/JSON the forwarder writes unreadable to every decoder downstream. Returns how many.
pub fn drop_invalid_links(request: &mut ExportTraceServiceRequest) -> usize {
    let mut dropped = 0usize;
    for span in request
        .resource_spans
        .iter_mut()
        .flat_map(|rs| rs.scope_spans.iter_mut())
        .flat_map(|ss| ss.spans.iter_mut())
    {
        let before = span.links.len();
        span.links
            .retain(|l| l.trace_id.len() == 16 && l.span_id.len() == 8);
        dropped += before - span.links.len();
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::io::Write;
    use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn headers(name: http::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn content_type_ignores_parameters_and_case() {
        let json = headers(CONTENT_TYPE, "Application/JSON; charset=utf-8");
        assert_eq!(BodyEncoding::from_headers(&json), Ok(BodyEncoding::Json));
        let proto = headers(CONTENT_TYPE, "application/protobuf");
        assert_eq!(
            BodyEncoding::from_headers(&proto),
            Ok(BodyEncoding::Protobuf)
        );
        assert!(BodyEncoding::from_headers(&HeaderMap::new()).is_err());
        let text = headers(CONTENT_TYPE, "text/json");
        assert_eq!(BodyEncoding::for_response(&text), BodyEncoding::Protobuf);
    }

    #[test]
    fn content_encoding_lists_allow_one_compression() {
        let h = headers(CONTENT_ENCODING, "identity, GZIP");
        assert_eq!(ContentEncoding::from_headers(&h), Ok(ContentEncoding::Gzip));
        let h = headers(CONTENT_ENCODING, "gzip, deflate");
        assert!(ContentEncoding::from_headers(&h).is_err());
        assert_eq!(
            ContentEncoding::from_headers(&HeaderMap::new()),
            Ok(ContentEncoding::Identity)
        );
    }

    #[test]
    fn raw_deflate_is_accepted_too() {
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello spans").unwrap();
        let raw = Bytes::from(enc.finish().unwrap());
        let budget = InflateBudget::new("otlp", 1 << 20);
        let (out, _reserved) = decompress(raw, ContentEncoding::Deflate, 100, &budget).unwrap();
        assert_eq!(&out[..], b"hello spans");
        let err = decompress(
            Bytes::from_static(b"\x1f\x8bnot gzip"),
            ContentEncoding::Gzip,
            100,
            &budget,
        );
        assert!(matches!(
            err,
            Err(RequestError::Malformed {
                encoding: "gzip",
                ..
            })
        ));
    }

    /// RFC 8878 3.1.2: skippable frames carry no data and are skipped wherever they are
    /// (before, between, after data frames), as `zstd -d` does; one that claims more bytes
    /// than the body has is malformed. Found by the `receiver_zstd` fuzz target.
    #[test]
    fn zstd_skippable_frames_are_skipped() {
        // `echo hello | zstd --no-check`, and a skippable frame with a 3-byte payload.
        const HELLO: &[u8] = &[
            0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x31, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
            0x0a,
        ];
        const SKIP: &[u8] = &[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3];
        let budget = InflateBudget::new("otlp", 1 << 20);
        let zstd =
            |body: Vec<u8>| decompress(Bytes::from(body), ContentEncoding::Zstd, 1 << 20, &budget);
        let body = [SKIP, HELLO, SKIP, HELLO, SKIP].concat();
        assert_eq!(&zstd(body).unwrap().0[..], b"hello\nhello\n");
        assert!(zstd(SKIP.to_vec()).unwrap().0.is_empty());
        let truncated = [HELLO, &SKIP[..10]].concat();
        let err = zstd(truncated).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{err}");
        assert!(err.to_string().contains("skippable zstd frame"), "{err}");
    }

    #[test]
    fn inflating_shares_one_budget_and_gives_it_back() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&[0u8; 200 * 1024]).unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        let budget = InflateBudget::new("otlp/in", 400 * 1024);
        let (first, held) =
            decompress(gz.clone(), ContentEncoding::Gzip, 1 << 20, &budget).unwrap();
        assert_eq!(first.len(), 200 * 1024);
        // The first body still holds its ~256 KiB buffer: a second one does not fit beside it.
        let err = decompress(gz.clone(), ContentEncoding::Gzip, 1 << 20, &budget).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(
            err.to_string(),
            "the receiver is already decompressing its maximum of 409600 bytes \
             (receivers.otlp/in.max_decompressing_size); retry after 1s"
        );
        drop(held);
        assert!(decompress(gz, ContentEncoding::Gzip, 1 << 20, &budget).is_ok());
    }

    #[test]
    fn decoded_requests_share_one_budget_and_give_it_back() {
        use crate::config::OtlpReceiverConfig;
        use crate::limits::Limits;
        use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans};
        let limits = Limits::new("otlp/dec", &OtlpReceiverConfig::default());
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(); 2000],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = request.encode_to_vec();
        let estimate = crate::prescan::scan(&body).unwrap().decoded_size;
        // Room for one such request at a time.
        let budget = InflateBudget::decoding("otlp/dec", estimate + estimate / 2);
        let (decoded, held) =
            decode_within(BodyEncoding::Protobuf, &body, &limits, Some(&budget)).unwrap();
        assert_eq!(decoded, request);
        let err = decode_within(BodyEncoding::Protobuf, &body, &limits, Some(&budget)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the receiver already holds its maximum of {} bytes of decoded requests \
                 (receivers.otlp/dec.max_decoding_size); retry after 1s",
                estimate + estimate / 2
            )
        );
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        assert!(decode_within(BodyEncoding::Protobuf, &body, &limits, Some(&budget)).is_ok());
        // JSON reserves 64 x its body up front.
        let json = format!("{{\"resourceSpans\":[]}}{}", " ".repeat(1004));
        assert_eq!(json.len(), 1024);
        let small = InflateBudget::decoding("otlp/dec", 63 * 1024);
        assert!(decode_within(BodyEncoding::Json, json.as_bytes(), &limits, Some(&small)).is_err());
        let enough = InflateBudget::decoding("otlp/dec", 64 * 1024);
        assert!(decode_within(BodyEncoding::Json, json.as_bytes(), &limits, Some(&enough)).is_ok());
    }

    #[test]
    fn invalid_parent_ids_are_dropped_and_empty_scopes_removed() {
        let span = |parent: Vec<u8>| Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: parent,
            ..Default::default()
        };
        let scope = |spans| ScopeSpans {
            spans,
            ..Default::default()
        };
        let mut request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![
                    scope(vec![span(vec![3; 4])]),
                    scope(vec![span(vec![]), span(vec![3; 8])]),
                ],
                ..Default::default()
            }],
        };
        let rejected = drop_invalid_spans(&mut request).unwrap();
        assert_eq!(rejected.count, 1);
        assert_eq!(
            rejected.first_problem,
            "resourceSpans[0].scopeSpans[0].spans[0] (name \"\") has a 4-byte parentSpanId; it must be 8 bytes"
        );
        assert_eq!(request.resource_spans[0].scope_spans.len(), 1);
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 2);
    }
}
