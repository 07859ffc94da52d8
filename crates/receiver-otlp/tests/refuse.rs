//! One case per failure status code, on a real socket with a real HTTP client, with the
//! `google.rpc.Status` body decoded and its message checked.

mod support;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use prost::Message;
use support::{client, gzip, request, start, Mode};
use tracecast_core::metrics;
use tracecast_receiver_otlp::{ApiKey, Status};

const PROTOBUF: &str = "application/x-protobuf";

/// Decodes a protobuf `google.rpc.Status` failure body, checking status and rpc code.
async fn status_of(resp: reqwest::Response, http: u16, code: i32) -> Status {
    assert_eq!(resp.status(), http);
    assert_eq!(resp.headers()["content-type"], PROTOBUF);
    let status = Status::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, code, "{}", status.message);
    status
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

#[tokio::test]
async fn malformed_protobuf_is_400() {
    let s = start("otlp/badproto", |_| {}).await;
    let resp = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .body(vec![0x0a, 0xff, 0xff, 0xff, 0x01, 0x02])
        .send()
        .await
        .unwrap();
    let status = status_of(resp, 400, 3).await;
    assert_mentions(
        &status.message,
        &["not valid OTLP protobuf", "ExportTraceServiceRequest"],
    );
    assert!(s.sink.batches().is_empty());
    let refused = metrics::REQUESTS_REFUSED
        .get_or_create(&metrics::reason("otlp/badproto", "malformed"))
        .get();
    assert_eq!(refused, 1);
}

#[tokio::test]
async fn malformed_json_is_400_in_json() {
    let s = start("otlp/badjson", |_| {}).await;
    let resp = client()
        .post(&s.url)
        .header("content-type", "application/json")
        .body(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not-hex"}]}]}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], 3);
    let message = body["message"].as_str().unwrap();
    assert_mentions(message, &["not valid OTLP/JSON", "traceId"]);
}

#[tokio::test]
async fn missing_or_wrong_token_is_401() {
    let s = start("otlp/auth", |c| {
        c.api_keys = vec![ApiKey {
            name: "prod-gateway".into(),
            token: "the-right-token".into(),
        }];
    })
    .await;
    let missing = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let status = status_of(missing, 401, 16).await;
    assert_mentions(
        &status.message,
        &["missing bearer token", "Authorization: Bearer"],
    );

    let wrong = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .bearer_auth("the-wrong-token")
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    let status = status_of(wrong, 401, 16).await;
    assert_mentions(
        &status.message,
        &["does not match any configured ingest key"],
    );
    assert!(!status.message.contains("the-wrong-token"));
    assert!(s.sink.batches().is_empty());
}

#[tokio::test]
async fn wrong_path_is_404() {
    let s = start("otlp/path", |_| {}).await;
    let url = s.url.replace("/v1/traces", "/v1/metrics");
    let resp = client()
        .post(url)
        .header("content-type", PROTOBUF)
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    let status = status_of(resp, 404, 5).await;
    assert_mentions(&status.message, &["\"/v1/metrics\"", "POST /v1/traces"]);
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let s = start("otlp/method", |_| {}).await;
    let resp = client().get(&s.url).send().await.unwrap();
    assert_eq!(resp.headers()["allow"], "POST");
    let status = status_of(resp, 405, 12).await;
    assert_mentions(&status.message, &["GET", "POST"]);
}

#[tokio::test]
async fn declared_content_length_over_the_limit_is_413() {
    let s = start("otlp/toolarge", |c| {
        c.max_request_body_size = tracecast_config::ByteSize::mib(1)
    })
    .await;
    let resp = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .body(vec![0u8; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    let status = status_of(resp, 413, 3).await;
    assert_mentions(
        &status.message,
        &["Content-Length", "max_request_body_size (1048576 bytes)"],
    );
}

/// A streamed body without `Content-Length` (sent chunked): `count` chunks of `chunk`.
struct Chunks {
    count: usize,
    chunk: Bytes,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.count == 0 {
            return Poll::Ready(None);
        }
        self.count -= 1;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let s = start("otlp/chunked", |c| {
        c.max_request_body_size = tracecast_config::ByteSize::mib(1)
    })
    .await;
    let body = Chunks {
        count: 32,
        chunk: Bytes::from(vec![0u8; 64 * 1024]),
    };
    let resp = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .body(reqwest::Body::wrap(body))
        .send()
        .await
        .unwrap();
    let status = status_of(resp, 413, 3).await;
    assert_mentions(
        &status.message,
        &["the request body is larger than max_request_body_size"],
    );
}

#[tokio::test]
async fn gzip_bomb_is_413_without_inflating() {
    let s = start("otlp/bomb", |c| {
        c.max_request_body_size = tracecast_config::ByteSize::mib(1)
    })
    .await;
    let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
    assert!(
        bomb.len() < 64 * 1024,
        "the compressed bomb itself is small"
    );
    let resp = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    let status = status_of(resp, 413, 3).await;
    assert_mentions(&status.message, &["decompressed request body is larger"]);
    let refused = metrics::REQUESTS_REFUSED
        .get_or_create(&metrics::reason("otlp/bomb", "too_large"))
        .get();
    assert_eq!(refused, 1);
}

#[tokio::test]
async fn unsupported_content_type_is_415() {
    let s = start("otlp/ctype", |_| {}).await;
    let resp = client()
        .post(&s.url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let status = status_of(resp, 415, 3).await;
    assert_mentions(
        &status.message,
        &[
            "\"text/plain\"",
            "application/x-protobuf",
            "application/json",
        ],
    );
}

#[tokio::test]
async fn unsupported_content_encoding_is_415() {
    let s = start("otlp/cenc", |_| {}).await;
    let resp = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .header("content-encoding", "br")
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    let status = status_of(resp, 415, 3).await;
    assert_mentions(&status.message, &["\"br\"", "gzip", "deflate", "identity"]);
}

#[tokio::test]
async fn full_pipeline_is_429_with_retry_after() {
    let s = start("otlp/full", |_| {}).await;
    s.sink.set_mode(Mode::Full(Duration::from_secs(7)));
    let resp = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .body(request(4).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["retry-after"], "7");
    let status = status_of(resp, 429, 8).await;
    assert_mentions(&status.message, &["pipeline is full", "retry after 7s"]);
    let refused = metrics::SPANS_REFUSED
        .get_or_create(&metrics::reason("otlp/full", "full"))
        .get();
    assert_eq!(refused, 4);
}

#[tokio::test]
async fn unavailable_pipeline_is_503_with_retry_after() {
    let s = start("otlp/unavail", |_| {}).await;
    s.sink
        .set_mode(Mode::Unavailable(Duration::from_millis(2500)));
    let resp = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["retry-after"], "3");
    let status = status_of(resp, 503, 14).await;
    assert_mentions(&status.message, &["disk queue is full", "retry after 3s"]);
}

#[tokio::test]
async fn requests_beyond_max_concurrent_requests_are_503() {
    let s = start("otlp/concurrency", |c| c.max_concurrent_requests = 1).await;
    s.sink.set_mode(Mode::Hold);
    let url = s.url.clone();
    let first = tokio::spawn(async move {
        client()
            .post(&url)
            .header("content-type", PROTOBUF)
            .body(request(1).encode_to_vec())
            .send()
            .await
    });
    s.sink.entered().await;
    let second = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(second.headers()["retry-after"], "1");
    let status = status_of(second, 503, 14).await;
    assert_mentions(&status.message, &["maximum of 1 concurrent requests"]);
    s.sink.release();
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn slow_body_is_408() {
    let s = start("otlp/slow", |c| {
        c.read_timeout = tracecast_config::Duration::from_millis(200)
    })
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let body = SlowBody { rx, _tx: tx };
    let resp = client()
        .post(&s.url)
        .header("content-type", PROTOBUF)
        .body(reqwest::Body::wrap(body))
        .send()
        .await
        .unwrap();
    let status = status_of(resp, 408, 4).await;
    assert_mentions(&status.message, &["did not arrive within 0.2s"]);
}

/// A body that never sends anything (its sender is kept alive but unused).
struct SlowBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    _tx: tokio::sync::mpsc::Sender<Bytes>,
}

impl hyper::body::Body for SlowBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[tokio::test]
async fn a_taken_address_is_a_clear_start_error() {
    let s = start("otlp/first", |_| {}).await;
    let endpoint = s.running.local_addr.to_string();
    let config = tracecast_receiver_otlp::OtlpReceiverConfig {
        endpoint: endpoint.clone(),
        ..Default::default()
    };
    let second = tracecast_receiver_otlp::OtlpReceiver::new(
        tracecast_core::ComponentId::parse("otlp/second").unwrap(),
        config,
        support::RecordingSink::new(),
    );
    let err = second
        .start(tracecast_core::CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert_mentions(
        &err,
        &[
            "otlp/second",
            &endpoint,
            "another process already listens there",
        ],
    );
}
