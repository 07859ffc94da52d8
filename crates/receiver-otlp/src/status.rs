//! Responses: the `ExportTraceServiceResponse` for accepted requests and the
//! `google.rpc.Status` body for refused ones, each in the request's encoding (OTLP/HTTP:
//! "the response body MUST be encoded in the same format as the request").

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use prost::Message;
use tracecast_core::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};

use crate::decode::BodyEncoding;
use crate::error::{retry_after_secs, RequestError};

/// `google.rpc.Status`, the body of every OTLP/HTTP failure response. `details` holds
/// `google.protobuf.Any` messages on the wire; they are kept as raw bytes because the
/// receiver never sends any and clients only read `code` and `message`.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub details: Vec<Vec<u8>>,
}

pub(crate) type ResponseBody = Full<Bytes>;

/// 200 with an `ExportTraceServiceResponse`; `partial_success` is set when spans were
/// rejected (`rejected > 0`), as the OTLP spec requires.
pub(crate) fn success(
    encoding: BodyEncoding,
    rejected: i64,
    error_message: &str,
) -> Response<ResponseBody> {
    let body = match encoding {
        BodyEncoding::Protobuf => {
            let response = ExportTraceServiceResponse {
                partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: error_message.to_string(),
                }),
            };
            response.encode_to_vec()
        }
        BodyEncoding::Json => {
            // Proto3 JSON: int64 as a string, lowerCamelCase names, absent message omitted.
            let value = if rejected > 0 {
                serde_json::json!({
                    "partialSuccess": {
                        "rejectedSpans": rejected.to_string(),
                        "errorMessage": error_message,
                    }
                })
            } else {
                serde_json::json!({})
            };
            value.to_string().into_bytes()
        }
    };
    respond(StatusCode::OK, encoding, body)
}

/// The failure response for `err`: its status code, a `google.rpc.Status` body, and the
/// headers the status calls for (`Retry-After`, `Allow`, `WWW-Authenticate`).
pub(crate) fn failure(encoding: BodyEncoding, err: &RequestError) -> Response<ResponseBody> {
    let message = err.to_string();
    let code = err.rpc_code();
    let body = match encoding {
        BodyEncoding::Protobuf => Status {
            code,
            message,
            details: Vec::new(),
        }
        .encode_to_vec(),
        BodyEncoding::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    let mut response = respond(err.status(), encoding, body);
    let headers = response.headers_mut();
    if let Some(after) = err.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(after)));
    }
    match err {
        RequestError::MethodNotAllowed { .. } => {
            headers.insert(ALLOW, HeaderValue::from_static("POST"));
        }
        RequestError::MissingToken | RequestError::BadToken => {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    response
}

fn respond(status: StatusCode, encoding: BodyEncoding, body: Vec<u8>) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    response
}
