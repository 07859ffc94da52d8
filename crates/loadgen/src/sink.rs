//! A minimal OTLP/HTTP sink: answers every `POST` with 200 and an empty
//! `ExportTraceServiceResponse` as fast as it can, and counts requests, bytes on the wire
//! and spans, so a load run can report loss and bytes per span.
//!
//! Protobuf bodies are not decoded: [`count_spans`] walks the wire format down to the span
//! fields and skips everything else, so the sink spends little CPU beside the collector
//! under test. Gzip bodies are inflated first (unavoidable to count). JSON bodies are
//! decoded with tracecast's OTLP/JSON codec. `GET /stats` returns the counters as JSON.

use std::convert::Infallible;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prost::encoding::{decode_key, decode_varint, WireType};
use tokio::net::TcpListener;

/// Counters of everything the sink received.
#[derive(Debug, Default)]
pub struct SinkCounters {
    requests: AtomicU64,
    spans: AtomicU64,
    bytes: AtomicU64,
    decoded_bytes: AtomicU64,
    bad_requests: AtomicU64,
}

/// A snapshot of [`SinkCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SinkStats {
    /// Export requests answered 200.
    pub requests: u64,
    /// Spans in those requests.
    pub spans: u64,
    /// Body bytes as received (compressed, if the sender compressed).
    pub bytes: u64,
    /// Body bytes after decompression.
    pub decoded_bytes: u64,
    /// Requests answered 400 (undecodable body).
    pub bad_requests: u64,
}

impl SinkCounters {
    /// The current values.
    pub fn snapshot(&self) -> SinkStats {
        SinkStats {
            requests: self.requests.load(Ordering::Relaxed),
            spans: self.spans.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            decoded_bytes: self.decoded_bytes.load(Ordering::Relaxed),
            bad_requests: self.bad_requests.load(Ordering::Relaxed),
        }
    }
}

/// Why a body could not be counted.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("malformed protobuf: {0}")]
    Protobuf(String),
    #[error("malformed OTLP/JSON: {0}")]
    Json(String),
    #[error("bad gzip body: {0}")]
    Gzip(#[from] std::io::Error),
}

/// Counts the spans of a protobuf `ExportTraceServiceRequest` without decoding them:
/// `resource_spans` (field 1) -> `scope_spans` (field 2) -> `spans` (field 2).
pub fn count_spans(body: &[u8]) -> Result<u64, CountError> {
    let mut spans = 0u64;
    for_each_len_field(body, 1, |rs| {
        for_each_len_field(rs, 2, |ss| {
            for_each_len_field(ss, 2, |_| {
                spans += 1;
                Ok(())
            })
        })
    })?;
    Ok(spans)
}

/// Calls `f` with the payload of every length-delimited field numbered `wanted`.
fn for_each_len_field(
    mut buf: &[u8],
    wanted: u32,
    mut f: impl FnMut(&[u8]) -> Result<(), CountError>,
) -> Result<(), CountError> {
    let bad = |e: prost::DecodeError| CountError::Protobuf(e.to_string());
    while buf.has_remaining() {
        let (tag, wire) = decode_key(&mut buf).map_err(bad)?;
        let skip = match wire {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(bad)?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).map_err(bad)? as usize;
                if len > buf.len() {
                    return Err(CountError::Protobuf(format!(
                        "field {tag} claims {len} bytes, {} left",
                        buf.len()
                    )));
                }
                if tag == wanted {
                    f(&buf[..len])?;
                }
                len
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(CountError::Protobuf("groups are not used by OTLP".into()))
            }
        };
        if skip > buf.len() {
            return Err(CountError::Protobuf("truncated field".into()));
        }
        buf.advance(skip);
    }
    Ok(())
}

/// Counts the spans of one received body, given its headers' encodings.
pub fn count_body(body: &[u8], gzip: bool, json: bool) -> Result<(u64, u64), CountError> {
    let inflated;
    let plain: &[u8] = if gzip {
        let mut out = Vec::with_capacity(body.len() * 4);
        flate2::read::GzDecoder::new(body).read_to_end(&mut out)?;
        inflated = out;
        &inflated
    } else {
        body
    };
    let spans = if json {
        let req = tracecast_core::otlp_json::decode_request(plain)
            .map_err(|e| CountError::Json(e.to_string()))?;
        tracecast_core::batch::span_count(&req) as u64
    } else {
        count_spans(plain)?
    };
    Ok((spans, plain.len() as u64))
}

/// Serves the sink on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, counters: Arc<SinkCounters>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, counters.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    counters: Arc<SinkCounters>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == Method::GET && req.uri().path() == "/stats" {
        let body = serde_json::to_vec(&counters.snapshot()).unwrap_or_default();
        return Ok(reply(StatusCode::OK, "application/json", body.into()));
    }
    if req.method() != Method::POST {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::new(),
        ));
    }
    let headers = req.headers();
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            return Ok(reply(StatusCode::BAD_REQUEST, "text/plain", Bytes::new()));
        }
    };
    let content_type = if json {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    match count_body(&body, gzip, json) {
        Ok((spans, decoded)) => {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            counters.spans.fetch_add(spans, Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            counters.decoded_bytes.fetch_add(decoded, Ordering::Relaxed);
            // An empty ExportTraceServiceResponse: zero bytes in protobuf, `{}` in JSON.
            let answer = if json {
                Bytes::from_static(b"{}")
            } else {
                Bytes::new()
            };
            Ok(reply(StatusCode::OK, content_type, answer))
        }
        Err(e) => {
            counters.bad_requests.fetch_add(1, Ordering::Relaxed);
            Ok(reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                Bytes::from(e.to_string()),
            ))
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{encode, Encoding};
    use crate::payload::{build_request, gzip, PayloadSpec};

    #[test]
    fn counts_spans_like_a_full_decode() {
        let spec = PayloadSpec {
            spans_per_request: 13,
            ..PayloadSpec::default()
        };
        let mut req = build_request(&spec, &mut fastrand::Rng::with_seed(3));
        // A second resource with two scopes.
        let mut more = req.resource_spans[0].clone();
        more.scope_spans.push(more.scope_spans[0].clone());
        req.resource_spans.push(more);
        let body = encode(&req, Encoding::Protobuf);
        assert_eq!(count_spans(&body).unwrap(), 39);
        assert_eq!(count_body(&gzip(&body, 1), true, false).unwrap().0, 39);
        let json = encode(&req, Encoding::Json);
        assert_eq!(count_body(&json, false, true).unwrap().0, 39);
        assert_eq!(count_spans(&[]).unwrap(), 0);
    }

    #[test]
    fn truncated_protobuf_is_an_error() {
        let body = encode(
            &build_request(&PayloadSpec::default(), &mut fastrand::Rng::with_seed(1)),
            Encoding::Protobuf,
        );
        assert!(count_spans(&body[..body.len() - 5]).is_err());
    }
}
