//! OTLP/gRPC: the unary `opentelemetry.proto.collector.trace.v1.TraceService/Export` over
//! hyper's HTTP/2 server, written over the prost types rather than on tonic, so it shares
//! everything after the framing with OTLP/HTTP ([`Handler::ingest`]: limits, decode
//! budgets, id checks, the durable hand-off) and adds no second HTTP stack.
//!
//! What the gRPC protocol asks of a server, and where it is done here:
//! - the request body is one length-prefixed message (a compressed flag byte and a 4-byte
//!   big-endian length); its compression is named by `grpc-encoding` (gzip, deflate, zstd
//!   or identity; another is `UNIMPLEMENTED` with `grpc-accept-encoding`);
//! - the answer is HTTP 200 with `content-type: application/grpc`: an
//!   `ExportTraceServiceResponse` message then `grpc-status: 0` in trailers, or a
//!   trailers-only failure (`grpc-status`, percent-encoded `grpc-message`, and
//!   `grpc-status-details-bin`, a `google.rpc.Status` whose details carry a
//!   `google.rpc.RetryInfo` when the client should come back later);
//! - status codes as the OTLP specification gives them: `UNAVAILABLE` + `RetryInfo` when
//!   the pipeline is full or stopping (the SDKs retry), `RESOURCE_EXHAUSTED` without
//!   `RetryInfo` over a size limit (not retried), `INVALID_ARGUMENT` for malformed data,
//!   `UNAUTHENTICATED` for a missing or wrong bearer token in the `authorization` metadata.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Request, Response};
use hyper::body::{Frame, Incoming};
use prost::Message as _;
use tracecast_core::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};

use crate::decode::{self, BodyEncoding, ContentEncoding};
use crate::error::{RequestError, SizeCheck};
use crate::handler::{Accepted, Handler, Message};
use crate::status::Status;

/// The one method served.
pub(crate) const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// Sent with every answer, so clients know which compressions they may use.
const ACCEPT_ENCODING: &str = "identity,gzip,deflate,zstd";

/// gRPC status codes used here.
mod code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// A response body: at most one data frame, then trailers (none for trailers-only).
pub(crate) struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl hyper::body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// The gRPC code of a refusal.
fn grpc_code(err: &RequestError) -> i32 {
    match err {
        RequestError::MissingToken | RequestError::BadToken => code::UNAUTHENTICATED,
        RequestError::TooLarge { .. }
        | RequestError::MessageTooLarge { .. }
        | RequestError::OverLimit { .. } => code::RESOURCE_EXHAUSTED,
        RequestError::Full { .. }
        | RequestError::Unavailable { .. }
        | RequestError::Overloaded { .. }
        | RequestError::Decompressing { .. }
        | RequestError::Decoding { .. } => code::UNAVAILABLE,
        RequestError::ReadTimeout { .. } => code::DEADLINE_EXCEEDED,
        RequestError::NotFound { .. }
        | RequestError::MethodNotAllowed { .. }
        | RequestError::UnsupportedEncoding { .. } => code::UNIMPLEMENTED,
        RequestError::CorsRefused { .. } => code::PERMISSION_DENIED,
        RequestError::Internal { .. } => code::INTERNAL,
        RequestError::UnsupportedContentType { .. }
        | RequestError::Malformed { .. }
        | RequestError::BodyRead { .. } => code::INVALID_ARGUMENT,
    }
}

impl Handler {
    /// The OTLP/gRPC service function: always answers, never fails the connection.
    pub async fn handle_grpc(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<GrpcBody>, Infallible> {
        if !is_grpc(request.headers()) {
            // The gRPC spec: a request that is not gRPC gets a plain HTTP 415.
            let mut response = Response::new(GrpcBody {
                data: None,
                trailers: None,
            });
            *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Ok(response);
        }
        match self.export(request).await {
            Ok(accepted) => Ok(success(&accepted)),
            Err((err, spans)) => {
                let err = for_grpc(err);
                self.record_refusal(&err, spans);
                Ok(failure(&err))
            }
        }
    }

    async fn export(&self, request: Request<Incoming>) -> Result<Accepted, (RequestError, usize)> {
        let _permit = self.permit().map_err(|e| (e, 0))?;
        let received_at = SystemTime::now();
        let (parts, body) = request.into_parts();
        if parts.uri.path() != EXPORT_PATH {
            return Err((
                RequestError::NotFound {
                    got: parts.uri.path().to_string(),
                    expected: EXPORT_PATH.to_string(),
                },
                0,
            ));
        }
        let api_key_name = self.authenticate(&parts.headers).map_err(|e| (e, 0))?;
        let compression = message_encoding(&parts.headers).map_err(|e| (e, 0))?;
        self.ready().map_err(|e| (e, 0))?;
        let (limit, timeout) = self.body_limits();
        // The 5-byte prefix rides on top of the message limit.
        let received = decode::read_body(body, limit.saturating_add(5), timeout)
            .await
            .map_err(|(err, _)| (over_message_limit(err, limit), 0))?;
        let (content_encoding, message) =
            unframe_message(received, limit, compression).map_err(|e| (e, 0))?;
        let message = Message {
            received: message,
            content_encoding,
            encoding: BodyEncoding::Protobuf,
            api_key_name,
            received_at,
        };
        self.ingest(message).await.map_err(|r| (r.err, r.spans))
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.to_ascii_lowercase();
            ct == "application/grpc"
                || ct.starts_with("application/grpc+proto")
                || ct.starts_with("application/grpc;")
        })
}

/// The compression `grpc-encoding` names for the request message.
pub fn message_encoding(headers: &HeaderMap) -> Result<ContentEncoding, RequestError> {
    let Some(value) = headers.get("grpc-encoding") else {
        return Ok(ContentEncoding::Identity);
    };
    let name = String::from_utf8_lossy(value.as_bytes())
        .trim()
        .to_ascii_lowercase();
    match name.as_str() {
        "identity" => Ok(ContentEncoding::Identity),
        "gzip" => Ok(ContentEncoding::Gzip),
        "deflate" => Ok(ContentEncoding::Deflate),
        "zstd" => Ok(ContentEncoding::Zstd),
        _ => Err(RequestError::UnsupportedEncoding { got: name }),
    }
}

/// A body over the limit while it was read is a message over `max_recv_msg_size`.
fn over_message_limit(err: RequestError, limit: u64) -> RequestError {
    match err {
        RequestError::TooLarge { check, .. } => RequestError::TooLarge { check, limit },
        other => other,
    }
}

/// The size refusals in gRPC's terms (the message and its own limit key).
fn for_grpc(err: RequestError) -> RequestError {
    match err {
        RequestError::TooLarge { check, limit } => RequestError::MessageTooLarge {
            decompressed: check == SizeCheck::Decompressed,
            limit,
        },
        other => other,
    }
}

/// The one message of a unary request body and the compression to undo on it: the framing
/// ([`unframe`]) and the compressed flag checked against what `grpc-encoding` named
/// (`named`). A flagged message without a named compression is malformed; an unflagged one
/// is identity whatever was named (gRPC compresses per message). Pure, so the fuzz targets
/// run it (`fuzzing` feature).
pub fn unframe_message(
    body: Bytes,
    limit: u64,
    named: ContentEncoding,
) -> Result<(ContentEncoding, Bytes), RequestError> {
    let (compressed, message) = unframe(body, limit)?;
    let content_encoding = match (compressed, named) {
        (false, _) => ContentEncoding::Identity,
        (true, ContentEncoding::Identity) => {
            return Err(RequestError::Malformed {
                encoding: "gRPC message",
                message: "the message is flagged compressed but grpc-encoding names none"
                    .to_string(),
            })
        }
        (true, c) => c,
    };
    Ok((content_encoding, message))
}

/// The one message of a unary request body: `(compressed, message)`.
pub fn unframe(body: Bytes, limit: u64) -> Result<(bool, Bytes), RequestError> {
    let malformed = |message: String| RequestError::Malformed {
        encoding: "gRPC framing",
        message,
    };
    let [flag, a, b, c, d, ..] = body[..] else {
        return Err(malformed(format!(
            "the body has {} bytes, fewer than a message's 5-byte prefix",
            body.len()
        )));
    };
    let len = u64::from(u32::from_be_bytes([a, b, c, d]));
    if len > limit {
        return Err(RequestError::TooLarge {
            check: SizeCheck::ContentLength,
            limit,
        });
    }
    if flag > 1 {
        return Err(malformed(format!("unknown compressed flag {flag}")));
    }
    let rest = body.len() as u64 - 5;
    if rest != len {
        return Err(malformed(format!(
            "the prefix announces a {len}-byte message but {rest} bytes follow; Export takes exactly one message"
        )));
    }
    Ok((flag == 1, body.slice(5..)))
}

pub fn frame(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(message.len() + 5);
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

fn grpc_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(
        HeaderName::from_static("grpc-accept-encoding"),
        HeaderValue::from_static(ACCEPT_ENCODING),
    );
    headers
}

/// The message, then `grpc-status: 0`; `partial_success` when spans were rejected.
fn success(accepted: &Accepted) -> Response<GrpcBody> {
    let response = ExportTraceServiceResponse {
        partial_success: accepted
            .rejected
            .as_ref()
            .map(|r| ExportTracePartialSuccess {
                rejected_spans: r.count as i64,
                error_message: format!(
                    "{} span(s) rejected because of invalid ids; first: {}",
                    r.count, r.first_problem
                ),
            }),
    };
    let mut trailers = HeaderMap::new();
    trailers.insert(
        HeaderName::from_static("grpc-status"),
        HeaderValue::from(code::OK),
    );
    let mut out = Response::new(GrpcBody {
        data: Some(frame(&response.encode_to_vec())),
        trailers: Some(trailers),
    });
    *out.headers_mut() = grpc_headers();
    out
}

/// A trailers-only answer for `err`.
fn failure(err: &RequestError) -> Response<GrpcBody> {
    let code = grpc_code(err);
    let message = err.to_string();
    let mut headers = grpc_headers();
    headers.insert(
        HeaderName::from_static("grpc-status"),
        HeaderValue::from(code),
    );
    if let Ok(value) = HeaderValue::from_str(&percent_encode(&message)) {
        headers.insert(HeaderName::from_static("grpc-message"), value);
    }
    let mut details = Vec::new();
    if let (code::UNAVAILABLE, Some(after)) = (code, err.retry_after()) {
        details.push(retry_info(after));
    }
    let status = Status {
        code,
        message,
        details,
    };
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.encode_to_vec());
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert(HeaderName::from_static("grpc-status-details-bin"), value);
    }
    let mut out = Response::new(GrpcBody {
        data: None,
        trailers: None,
    });
    *out.headers_mut() = headers;
    out
}

/// A `google.protobuf.Any` holding a `google.rpc.RetryInfo` of `after`.
fn retry_info(after: Duration) -> Vec<u8> {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(after.subsec_nanos()).unwrap_or(0),
        }),
    };
    Any {
        type_url: "type.googleapis.com/google.rpc.RetryInfo".to_string(),
        value: info.encode_to_vec(),
    }
    .encode_to_vec()
}

/// `grpc-message` encoding: printable ASCII except `%` as is, everything else `%XX`.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_framed_message_is_taken_and_anything_else_refused() {
        let framed = frame(b"hello");
        assert_eq!(
            unframe(framed.clone(), 100).unwrap(),
            (false, Bytes::from_static(b"hello"))
        );
        let two = Bytes::from([&framed[..], &framed[..]].concat());
        assert!(matches!(
            unframe(two, 100),
            Err(RequestError::Malformed { .. })
        ));
        assert!(matches!(
            unframe(Bytes::from_static(&[0, 0, 0]), 100),
            Err(RequestError::Malformed { .. })
        ));
        assert!(matches!(
            unframe(Bytes::from_static(&[0, 0xff, 0, 0, 0]), 100),
            Err(RequestError::TooLarge { .. })
        ));
        assert!(matches!(
            unframe(Bytes::from_static(&[7, 0, 0, 0, 0]), 100),
            Err(RequestError::Malformed { .. })
        ));
    }

    #[test]
    fn the_compressed_flag_needs_a_named_compression() {
        let mut flagged = frame(b"z").to_vec();
        flagged[0] = 1;
        let flagged = Bytes::from(flagged);
        assert_eq!(
            unframe_message(flagged.clone(), 100, ContentEncoding::Zstd).unwrap(),
            (ContentEncoding::Zstd, Bytes::from_static(b"z"))
        );
        assert!(matches!(
            unframe_message(flagged, 100, ContentEncoding::Identity),
            Err(RequestError::Malformed { .. })
        ));
        // gRPC compresses per message: an unflagged one is identity whatever was named.
        assert_eq!(
            unframe_message(frame(b"p"), 100, ContentEncoding::Gzip).unwrap(),
            (ContentEncoding::Identity, Bytes::from_static(b"p"))
        );
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("50% off\né"), "50%25 off%0A%C3%A9");
    }

    #[test]
    fn codes_follow_the_otlp_specification() {
        let full = RequestError::Full {
            retry_after: Duration::from_secs(2),
        };
        assert_eq!(grpc_code(&full), code::UNAVAILABLE);
        let response = failure(&full);
        let details = response.headers()["grpc-status-details-bin"]
            .to_str()
            .unwrap();
        let status = Status::decode(
            &base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(details)
                .unwrap()[..],
        )
        .unwrap();
        assert_eq!(status.code, code::UNAVAILABLE);
        let any = Any::decode(&status.details[0][..]).unwrap();
        assert_eq!(any.type_url, "type.googleapis.com/google.rpc.RetryInfo");
        let info = RetryInfo::decode(&any.value[..]).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, 2);
        let big = RequestError::TooLarge {
            check: SizeCheck::Received,
            limit: 1,
        };
        assert_eq!(grpc_code(&big), code::RESOURCE_EXHAUSTED);
        assert!(Status::decode(
            &base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(
                    failure(&big).headers()["grpc-status-details-bin"]
                        .to_str()
                        .unwrap()
                )
                .unwrap()[..]
        )
        .unwrap()
        .details
        .is_empty());
        assert_eq!(grpc_code(&RequestError::BadToken), code::UNAUTHENTICATED);
    }
}
