//! Errors: [`ReceiverError`] for starting the receiver, [`RequestError`] for one refused
//! request (each variant knows its HTTP status, its `google.rpc.Status` code and its
//! metric reason).

use std::time::Duration;

use http::StatusCode;

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("receiver {receiver}: cannot listen on {endpoint}: {source}{hint}")]
    Bind {
        receiver: String,
        endpoint: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("receiver {receiver}: TLS on {endpoint}: {message}")]
    Tls {
        receiver: String,
        endpoint: String,
        message: String,
    },
}

impl ReceiverError {
    pub(crate) fn bind(receiver: String, endpoint: String, source: std::io::Error) -> Self {
        let hint = match source.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another process already listens there; stop it or change `endpoint`)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need privileges; use a higher port)"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                " (no local interface has that address; use 127.0.0.1 or 0.0.0.0)"
            }
            _ => "",
        };
        ReceiverError::Bind {
            receiver,
            endpoint,
            hint,
            source,
        }
    }
}

/// Which size limit a body broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeCheck {
    /// The declared `Content-Length`.
    ContentLength,
    /// The bytes received on the wire.
    Received,
    /// The body after `Content-Encoding` was undone.
    Decompressed,
}

/// A bound on what one request may decode to (besides the body size), each with its
/// config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestLimit {
    Spans,
    DecodedSize,
    CustomTraceIdLength,
    TraceMetadataSize,
}

impl RequestLimit {
    /// The receiver config key that sets this limit.
    pub fn key(self) -> &'static str {
        match self {
            RequestLimit::Spans => "max_spans_per_request",
            RequestLimit::DecodedSize => "max_decoded_size",
            RequestLimit::CustomTraceIdLength => "max_custom_trace_id_length",
            RequestLimit::TraceMetadataSize => "max_trace_metadata_size",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            RequestLimit::Spans => "send fewer spans per request",
            RequestLimit::DecodedSize => "send fewer or smaller spans per request",
            RequestLimit::CustomTraceIdLength => "use a shorter trace id",
            RequestLimit::TraceMetadataSize => {
                "keep the trace metadata small (large content belongs in span attributes)"
            }
        }
    }
}

/// Why one request was refused. Its `Display` is the message sent back to the client, so
/// every variant names the problem and what to do; none contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("no OTLP traces endpoint at {got:?}; send export requests to POST {expected}")]
    NotFound { got: String, expected: String },
    #[error("method {method} is not allowed on {path}; OTLP export requests use POST")]
    MethodNotAllowed { method: String, path: String },
    #[error("missing bearer token; send the header `Authorization: Bearer <token>` with one of the configured ingest keys")]
    MissingToken,
    #[error("the bearer token does not match any configured ingest key; check the token the client sends")]
    BadToken,
    #[error("{message}; the receiver's protocols.http.cors settings decide which browser origins may send")]
    CorsRefused { message: String },
    #[error("unsupported Content-Type {got}; send application/x-protobuf or application/json")]
    UnsupportedContentType { got: String },
    #[error("unsupported Content-Encoding {got:?}; send the body with gzip, zstd, deflate or identity (no) encoding")]
    UnsupportedEncoding { got: String },
    #[error("{}", too_large_message(*.check, *.limit))]
    TooLarge { check: SizeCheck, limit: u64 },
    /// [`RequestError::TooLarge`] of an OTLP/gRPC message, whose limit has its own key.
    #[error("the gRPC message{} is larger than {limit} bytes (protocols.grpc.max_recv_msg_size_mib, else max_request_body_size); send fewer spans per request or raise the limit", if *.decompressed { " once decompressed" } else { "" })]
    MessageTooLarge { decompressed: bool, limit: u64 },
    /// Over a bound on what the request decodes to. `what` describes the request ("request
    /// has 8000000 spans"); the message adds the limit's full config path and value.
    #[error("{what}, over receivers.{receiver}.{} ({max}); {} or raise the limit", .limit.key(), .limit.hint())]
    OverLimit {
        receiver: String,
        limit: RequestLimit,
        max: u64,
        what: String,
    },
    #[error("request body is not valid {encoding}: {message}")]
    Malformed {
        encoding: &'static str,
        message: String,
    },
    #[error("could not read the request body: {message}")]
    BodyRead { message: String },
    #[error("the request body did not arrive within {}s; send it faster or in smaller requests", .timeout.as_secs_f64())]
    ReadTimeout { timeout: Duration },
    #[error("the pipeline is full; retry after {}s", retry_after_secs(*.retry_after))]
    Full { retry_after: Duration },
    #[error("tracecast cannot take data right now ({reason}); retry after {}s", retry_after_secs(*.retry_after))]
    Unavailable {
        reason: String,
        retry_after: Duration,
    },
    #[error("the receiver is handling its maximum of {limit} concurrent requests; retry after {}s", retry_after_secs(*.retry_after))]
    Overloaded { limit: usize, retry_after: Duration },
    #[error("the receiver is already decompressing its maximum of {limit} bytes (receivers.{receiver}.max_decompressing_size); retry after {}s", retry_after_secs(*.retry_after))]
    Decompressing {
        receiver: String,
        limit: u64,
        retry_after: Duration,
    },
    #[error("the receiver already holds its maximum of {limit} bytes of decoded requests (receivers.{receiver}.max_decoding_size); retry after {}s", retry_after_secs(*.retry_after))]
    Decoding {
        receiver: String,
        limit: u64,
        retry_after: Duration,
    },
    #[error("internal error: {message}")]
    Internal { message: String },
}

fn too_large_message(check: SizeCheck, limit: u64) -> String {
    let what = match check {
        SizeCheck::ContentLength => "the declared Content-Length is",
        SizeCheck::Received => "the request body is",
        SizeCheck::Decompressed => "the decompressed request body is",
    };
    format!(
        "{what} larger than max_request_body_size ({limit} bytes); send fewer spans per request or raise the receiver's max_request_body_size"
    )
}

/// Whole seconds for `Retry-After`, at least 1 so clients never retry in a tight loop.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::NotFound { .. } => StatusCode::NOT_FOUND,
            RequestError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::MissingToken | RequestError::BadToken => StatusCode::UNAUTHORIZED,
            RequestError::CorsRefused { .. } => StatusCode::FORBIDDEN,
            RequestError::UnsupportedContentType { .. }
            | RequestError::UnsupportedEncoding { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestError::TooLarge { .. }
            | RequestError::MessageTooLarge { .. }
            | RequestError::OverLimit { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Malformed { .. } | RequestError::BodyRead { .. } => {
                StatusCode::BAD_REQUEST
            }
            RequestError::ReadTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            RequestError::Full { .. } => StatusCode::TOO_MANY_REQUESTS,
            RequestError::Unavailable { .. }
            | RequestError::Overloaded { .. }
            | RequestError::Decompressing { .. }
            | RequestError::Decoding { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `google.rpc.Code` matching the HTTP status (OTLP's gRPC/HTTP mapping).
    pub fn rpc_code(&self) -> i32 {
        match self {
            RequestError::NotFound { .. } => 5,          // NOT_FOUND
            RequestError::MethodNotAllowed { .. } => 12, // UNIMPLEMENTED
            RequestError::MissingToken | RequestError::BadToken => 16, // UNAUTHENTICATED
            RequestError::CorsRefused { .. } => 7,       // PERMISSION_DENIED
            RequestError::ReadTimeout { .. } => 4,       // DEADLINE_EXCEEDED
            RequestError::Full { .. } => 8,              // RESOURCE_EXHAUSTED
            RequestError::Unavailable { .. }
            | RequestError::Overloaded { .. }
            | RequestError::Decompressing { .. }
            | RequestError::Decoding { .. } => 14, // UNAVAILABLE
            RequestError::Internal { .. } => 13,         // INTERNAL
            _ => 3,                                      // INVALID_ARGUMENT
        }
    }

    /// Label value of `SPANS_REFUSED` / `REQUESTS_REFUSED`.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            RequestError::NotFound { .. } => "not_found",
            RequestError::MethodNotAllowed { .. } => "method_not_allowed",
            RequestError::MissingToken | RequestError::BadToken => "unauthorized",
            RequestError::CorsRefused { .. } => "cors",
            RequestError::UnsupportedContentType { .. }
            | RequestError::UnsupportedEncoding { .. } => "unsupported_media_type",
            RequestError::TooLarge { .. }
            | RequestError::MessageTooLarge { .. }
            | RequestError::OverLimit { .. } => "too_large",
            RequestError::Malformed { .. } | RequestError::BodyRead { .. } => "malformed",
            RequestError::ReadTimeout { .. } => "timeout",
            RequestError::Full { .. } => "full",
            RequestError::Unavailable { .. } => "unavailable",
            RequestError::Overloaded { .. }
            | RequestError::Decompressing { .. }
            | RequestError::Decoding { .. } => "overloaded",
            RequestError::Internal { .. } => "internal",
        }
    }

    /// How long the client should wait before retrying, for throttling answers.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RequestError::Full { retry_after }
            | RequestError::Unavailable { retry_after, .. }
            | RequestError::Overloaded { retry_after, .. }
            | RequestError::Decompressing { retry_after, .. }
            | RequestError::Decoding { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}
