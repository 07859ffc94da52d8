//! Turning HTTP results into the shared [`ExportError`] classification (Collector
//! `otlphttpexporter` rules): 429/502/503/504 and connection errors or timeouts are
//! retryable, honouring `Retry-After`; every other non-2xx status is permanent. Also reads
//! the backend's message out of error bodies and `partial_success` out of 2xx bodies.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use prost::Message;
use tracecast_core::proto::collector::trace::v1::ExportTraceServiceResponse;
use tracecast_core::ExportError;

/// Longest backend message kept in logs and errors; backends sometimes answer with a page.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// `google.rpc.Status`, the body OTLP/HTTP servers send with a failure (protobuf form).
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Spans a backend accepted the request but rejected, as its `partial_success` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialSuccess {
    pub rejected_spans: i64,
    pub message: String,
}

/// Whether the OTLP spec says the same request may succeed later.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Classifies a non-2xx answer. The message holds the status and the backend's own words.
pub fn status_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> ExportError {
    let detail = backend_message(content_type(headers), body);
    let message = if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    };
    if is_retryable_status(status) {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        ExportError::Retryable {
            message,
            retry_after,
        }
    } else {
        ExportError::Permanent { message }
    }
}

/// Parses `Retry-After`: delay-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00
/// GMT`), relative to `now`. A date in the past means "retry now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct.contains("json"))
}

fn is_protobuf(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct.contains("protobuf"))
}

/// The backend's explanation: the `message` of a `google.rpc.Status` (protobuf or JSON),
/// else the body as text; whitespace collapsed and cut to [`MAX_MESSAGE_CHARS`].
pub fn backend_message(content_type: Option<&str>, body: &[u8]) -> String {
    let text = if is_protobuf(content_type) {
        RpcStatus::decode(body)
            .map(|s| s.message)
            .unwrap_or_default()
    } else if is_json(content_type) {
        json_message(body).unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    truncate(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn json_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let field =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|m| m.as_str()).map(str::to_string);
    field(&value, "message")
        .or_else(|| field(&value, "error"))
        .or_else(|| value.get("error").and_then(|e| field(e, "message")))
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// Reads `partial_success` from a 2xx body in its content type. `None` when the backend
/// took everything (or sent no parsable body: a 2xx is a success either way).
pub fn partial_success(headers: &HeaderMap, body: &[u8]) -> Option<PartialSuccess> {
    if body.is_empty() {
        return None;
    }
    let ct = content_type(headers);
    let found = if is_json(ct) {
        json_partial_success(body)
    } else if is_protobuf(ct) {
        ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| PartialSuccess {
                rejected_spans: p.rejected_spans,
                message: p.error_message,
            })
    } else {
        None
    }?;
    (found.rejected_spans > 0 || !found.message.is_empty()).then(|| PartialSuccess {
        message: truncate(&found.message),
        ..found
    })
}

fn json_partial_success(body: &[u8]) -> Option<PartialSuccess> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let p = value
        .get("partialSuccess")
        .or_else(|| value.get("partial_success"))?;
    let get = |camel: &str, snake: &str| p.get(camel).or_else(|| p.get(snake));
    // proto3 JSON writes int64 as a string; accept a number too.
    let rejected_spans = match get("rejectedSpans", "rejected_spans") {
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
        Some(v) => v.as_i64().unwrap_or(0),
        None => 0,
    };
    let message = get("errorMessage", "error_message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    Some(PartialSuccess {
        rejected_spans,
        message,
    })
}

/// Classifies a failure below HTTP (connect, DNS, TLS, timeout, reset). All are retryable:
/// the backend may come back. `target` is `host:port`; messages say what to check.
pub fn transport_error(err: &reqwest::Error, target: &str, timeout: Duration) -> ExportError {
    let cause = root_cause(err);
    let chain = chain_text(err).to_ascii_lowercase();
    let message = if err.is_timeout() {
        format!(
            "no answer from {target} within {}; is the endpoint reachable (firewall, proxy) and the backend healthy?",
            tracecast_config::Duration(timeout)
        )
    } else if has_io_kind(err, std::io::ErrorKind::ConnectionRefused) {
        format!("cannot connect to {target}: connection refused; is the backend running and the endpoint right?")
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
        format!("cannot resolve host {host}: {cause}; check the host name in the endpoint")
    } else if let Some(tls) = find_tls_error(err) {
        format!(
            "TLS handshake with {target} failed: {tls}; check that the endpoint speaks https and its certificate, or trust its CA with tls.ca_file"
        )
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake")
    {
        format!(
            "TLS handshake with {target} failed: {cause}; check the server's certificate, or trust its CA with tls.ca_file"
        )
    } else if err.is_connect() {
        format!(
            "cannot connect to {target}: {cause}; is the backend running and the endpoint right?"
        )
    } else {
        format!("request to {target} failed: {cause}")
    };
    ExportError::retryable(message)
}

/// The next error in a chain. `io::Error`s wrapping another error (as tokio-rustls and
/// hyper-util do) report the wrapped error's *source* from `source()`, skipping the wrapped
/// error itself, so they are opened with `get_ref`.
fn next_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return Some(inner);
    }
    e.source()
}

/// Every error below reqwest's own (whose text names the URL, which may carry tokens).
fn chain(err: &reqwest::Error) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut current = err.source();
    while let Some(e) = current {
        out.push(e);
        current = next_error(e);
    }
    out
}

/// The innermost error's text.
fn root_cause(err: &reqwest::Error) -> String {
    chain(err)
        .last()
        .map_or_else(|| text_without_url(err), |e| e.to_string())
}

fn chain_text(err: &reqwest::Error) -> String {
    chain(err)
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The rustls error in the chain, if TLS failed.
fn find_tls_error(err: &reqwest::Error) -> Option<&rustls::Error> {
    chain(err)
        .into_iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
}

fn has_io_kind(err: &reqwest::Error, kind: std::io::ErrorKind) -> bool {
    chain(err).into_iter().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
    })
}

/// Text of a reqwest error with its URL (which may carry tokens) blanked.
fn text_without_url(err: &reqwest::Error) -> String {
    let text = err.to_string();
    match err.url() {
        Some(url) => text.replace(url.as_str(), "<endpoint>"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // Obsolete RFC 850 and asctime forms are valid HTTP-dates too.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn statuses_split_into_retryable_and_permanent() {
        let now = SystemTime::now();
        for code in [429, 502, 503, 504] {
            let e = status_error(
                StatusCode::from_u16(code).unwrap(),
                &headers(&[("retry-after", "3")]),
                b"",
                now,
            );
            assert_eq!(
                e,
                ExportError::Retryable {
                    message: format!("HTTP {}", StatusCode::from_u16(code).unwrap()),
                    retry_after: Some(Duration::from_secs(3))
                }
            );
        }
        for code in [400, 401, 403, 404, 413, 500, 501] {
            let e = status_error(
                StatusCode::from_u16(code).unwrap(),
                &HeaderMap::new(),
                b"",
                now,
            );
            assert!(!e.is_retryable(), "{code}");
        }
    }

    #[test]
    fn backend_messages_are_read_and_truncated() {
        let status = RpcStatus {
            code: 3,
            message: "span name missing".into(),
        };
        assert_eq!(
            backend_message(Some("application/x-protobuf"), &status.encode_to_vec()),
            "span name missing"
        );
        assert_eq!(
            backend_message(
                Some("application/json"),
                br#"{"code":3,"message":"bad id"}"#
            ),
            "bad id"
        );
        assert_eq!(
            backend_message(Some("text/plain"), b"  bad\n\n things "),
            "bad things"
        );
        let long = "x".repeat(2000);
        let cut = backend_message(None, long.as_bytes());
        assert_eq!(cut.len(), MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn partial_success_in_both_encodings() {
        let json = headers(&[("content-type", "application/json")]);
        assert_eq!(
            partial_success(
                &json,
                br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"no name"}}"#
            ),
            Some(PartialSuccess {
                rejected_spans: 2,
                message: "no name".into()
            })
        );
        assert_eq!(partial_success(&json, b"{}"), None);
        assert_eq!(partial_success(&json, br#"{"partialSuccess":{}}"#), None);
        let pb = headers(&[("content-type", "application/x-protobuf")]);
        let resp = ExportTraceServiceResponse {
            partial_success: Some(
                tracecast_core::proto::collector::trace::v1::ExportTracePartialSuccess {
                    rejected_spans: 5,
                    error_message: String::new(),
                },
            ),
        };
        assert_eq!(
            partial_success(&pb, &resp.encode_to_vec()).map(|p| p.rejected_spans),
            Some(5)
        );
        assert_eq!(partial_success(&pb, b""), None);
    }
}
