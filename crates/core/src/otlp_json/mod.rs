//! OTLP/JSON codec for trace export requests and responses.
//!
//! Decode accepts everything real clients send (the full proto3 JSON mapping, not only the
//! canonical form): lowerCamelCase and snake_case keys, hex ids in either case, 64- and
//! 32-bit integers as numbers or strings, enums as numbers or names, `"NaN"`/`"Infinity"`
//! doubles, base64 bytes, `null` for any field, `{}` for an empty `arrayValue`/`kvlistValue`
//! or `AnyValue`, and unknown fields (ignored). It streams through serde visitors straight
//! into the prost types (no `serde_json::Value` tree; strings are copied once, into the
//! message). Errors name the JSON path, e.g.
//! `resourceSpans[0].scopeSpans[1].spans[3].traceId: expected 32 hex characters, got 7`
//! (`$` is the document itself).
//!
//! Encode writes canonical OTLP/JSON straight into a byte buffer.
//!
//! opentelemetry-proto's own `with-serde` is not used: it rejects non-finite doubles as
//! strings, `{}` empty lists and `null`s, which the official Python exporter sends.
//!
//! Files: `de.rs` (generic seeds, path-carrying errors), `scalars.rs` (leaf parsers),
//! `decode.rs` (per-message field tables), `encode.rs` (the writer).

mod de;
mod decode;
mod encode;
mod scalars;
#[cfg(test)]
mod tests;

use serde::de::DeserializeSeed;

use crate::proto::collector::trace::v1::ExportTraceServiceResponse;
use crate::ExportTraceServiceRequest;

pub use de::MAX_VALUE_DEPTH;

/// Why a JSON body is not an OTLP export request. The message names the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JsonDecodeError {
    /// Where in the document decoding failed, e.g. `resourceSpans[0].scopeSpans[1].spans[3].traceId`;
    /// `$` for the document itself.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_request(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonDecodeError> {
    decode_document(body)
}

/// Bounds on what one [`decode_request_limited`] call may build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Spans in the whole request.
    pub max_spans: u64,
    /// Estimated bytes of the decoded request: the size of every decoded struct (span,
    /// attribute, event, value, ...) plus the body's length, which bounds every string
    /// copied out of it. Vectors' spare capacity is not counted.
    pub max_decoded_size: u64,
}

/// Which [`DecodeLimits`] bound stopped a decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("the request has more than {limit} spans")]
    Spans { limit: u64 },
    #[error("the decoded request would be larger than {limit} bytes")]
    DecodedSize { limit: u64 },
}

/// Why [`decode_request_limited`] failed: the body is not OTLP/JSON, or it is but
/// decodes to more than the limits allow (decoding stopped there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitedDecodeError {
    #[error(transparent)]
    Invalid(#[from] JsonDecodeError),
    #[error(transparent)]
    OverLimit(LimitExceeded),
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`, counting spans and decoded bytes as
/// they are built and stopping as soon as `limits` are crossed: a 16 MiB body of `{}`
/// spans never becomes millions of structs.
pub fn decode_request_limited(
    body: &[u8],
    limits: DecodeLimits,
) -> Result<ExportTraceServiceRequest, LimitedDecodeError> {
    let cx = de::Cx::limited(limits, body.len() as u64);
    decode_with(&cx, body).map_err(|err| match cx.exceeded() {
        Some(exceeded) => LimitedDecodeError::OverLimit(exceeded),
        None => LimitedDecodeError::Invalid(cx.into_error(err)),
    })
}

/// Encodes an `ExportTraceServiceRequest` as OTLP/JSON.
pub fn encode_request(request: &ExportTraceServiceRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode::request(&mut out, request);
    out
}

/// Decodes an OTLP/JSON `ExportTraceServiceResponse` (what a backend answers; its
/// `partialSuccess` says how many spans it rejected and why).
pub fn decode_response(body: &[u8]) -> Result<ExportTraceServiceResponse, JsonDecodeError> {
    decode_document(body)
}

/// Encodes an `ExportTraceServiceResponse` as OTLP/JSON (`{}` when fully successful).
pub fn encode_response(response: &ExportTraceServiceResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode::response(&mut out, response);
    out
}

fn decode_document<M: de::Msg>(body: &[u8]) -> Result<M, JsonDecodeError> {
    let cx = de::Cx::default();
    decode_with(&cx, body).map_err(|err| cx.into_error(err))
}

fn decode_with<M: de::Msg>(cx: &de::Cx, body: &[u8]) -> Result<M, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let result = de::OptObj::<M>::root(cx)
        .deserialize(&mut reader)
        .and_then(|msg| reader.end().map(|()| msg));
    match result {
        // The root seed turns `null` into an error, so `None` does not occur.
        Ok(msg) => Ok(msg.unwrap_or_default()),
        Err(err) => Err(err),
    }
}
