//! OTLP/gRPC on a real socket: the OpenTelemetry Python SDK's gRPC exporter (installed by
//! scripts/setup-test-deps.sh) sends through the receiver, gzip on, every span and
//! attribute intact; a wrong token is UNAUTHENTICATED; a full pipeline is UNAVAILABLE with
//! RetryInfo and the SDK retries until it is taken; a raw HTTP/2 client checks oversized
//! (RESOURCE_EXHAUSTED), malformed (INVALID_ARGUMENT) and unknown-method answers.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use prost::Message;
use support::{request, start, Mode, Started};
use tracecast_core::metrics;
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_receiver_otlp::config::{GrpcProtocol, Protocols};
use tracecast_receiver_otlp::{ApiKey, Protocol};

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

fn python() -> PathBuf {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../.venv/bin/python"
    ));
    assert!(
        p.exists(),
        "{}: run scripts/setup-test-deps.sh",
        p.display()
    );
    p
}

async fn start_grpc(id: &str, max_mib: Option<u64>) -> (Started, SocketAddr) {
    let s = start(id, |c| {
        c.protocols = Some(Protocols {
            http: None,
            grpc: Some(GrpcProtocol {
                endpoint: "127.0.0.1:0".into(),
                max_recv_msg_size_mib: max_mib,
                ..Default::default()
            }),
        });
        c.api_keys = vec![ApiKey {
            name: "grpc-gateway".into(),
            token: "grpc-token".into(),
        }];
    })
    .await;
    let addr = s.running.addr(Protocol::Grpc).expect("gRPC listener");
    (s, addr)
}

/// Runs the Python gRPC sender; returns (exit code, stdout, stderr).
async fn python_send(
    addr: SocketAddr,
    count: usize,
    prefix: &str,
    token: &str,
) -> (i32, String, String) {
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/send_spans_grpc.py"
    ));
    let args = [
        addr.to_string(),
        count.to_string(),
        prefix.to_string(),
        "gzip".to_string(),
        token.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .args(args)
            .output()
            .expect("python runs")
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn attr<'a>(span: &'a tracecast_core::proto::trace::v1::Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpc_exporter_with_gzip_delivers_every_span_intact() {
    let (s, addr) = start_grpc("otlp/grpc-py", None).await;
    let (code, stdout, stderr) = python_send(addr, 25, "pyg", "grpc-token").await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let batches = s.sink.batches();
    let mut spans: Vec<_> = batches
        .iter()
        .flat_map(|b| {
            support::spans(b.request())
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    spans.sort_by_key(|s| s.name.rsplit('-').next().unwrap().parse::<i64>().unwrap());
    assert_eq!(spans.len(), 25);
    for (i, span) in spans.iter().enumerate() {
        let i = i as i64;
        assert_eq!(span.name, format!("pyg-{i}"));
        assert_eq!(attr(span, "test.seq"), Some(&Value::IntValue(i)));
        assert_eq!(
            attr(span, "gen_ai.usage.output_tokens"),
            Some(&Value::IntValue(40 + i))
        );
        assert_eq!(attr(span, "test.ratio"), Some(&Value::DoubleValue(0.5)));
        assert_eq!(
            attr(span, "gen_ai.request.model"),
            Some(&Value::StringValue("openai/gpt-4o".into()))
        );
        assert!(
            matches!(attr(span, "test.tags"), Some(Value::ArrayValue(a)) if a.values.len() == 2)
        );
        assert_eq!(span.trace_id.len(), 16);
    }
    for batch in &batches {
        assert_eq!(
            batch.context().api_key_name.as_deref(),
            Some("grpc-gateway")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_unauthenticated() {
    let (s, addr) = start_grpc("otlp/grpc-auth", None).await;
    let (code, stdout, stderr) = python_send(addr, 1, "bad", "not-the-token").await;
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.contains("FAILURE"), "{stdout}");
    assert!(stderr.contains("UNAUTHENTICATED"), "{stderr}");
    assert!(s.sink.batches().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_is_unavailable_and_the_sdk_retries_until_taken() {
    let (s, addr) = start_grpc("otlp/grpc-full", None).await;
    s.sink.set_mode(Mode::Full(Duration::from_secs(1)));
    let sender = tokio::spawn(python_send(addr, 5, "retry", "grpc-token"));
    // Wait for the first refusal, then let the pipeline take data again.
    let refused = || {
        metrics::REQUESTS_REFUSED
            .get_or_create(&metrics::reason("otlp/grpc-full", "full"))
            .get()
    };
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while refused() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the SDK never reached the receiver");
    s.sink.set_mode(Mode::Accept);
    let (code, stdout, stderr) = sender.await.unwrap();
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let taken: usize = s.sink.batches().iter().map(|b| b.span_count()).sum();
    assert_eq!(taken, 5);
    assert!(refused() >= 1);
}

/// A raw HTTP/2 (prior knowledge) gRPC call; failures are trailers-only, so `grpc-status`
/// is readable in the response headers.
async fn raw_call(addr: SocketAddr, path: &str, body: Vec<u8>, token: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn grpc_status(resp: &reqwest::Response) -> (String, String) {
    let h = resp.headers();
    let text = |k: &str| {
        h.get(k)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (text("grpc-status"), text("grpc-message"))
}

#[tokio::test]
async fn oversized_malformed_and_unknown_calls_get_their_codes() {
    let (s, addr) = start_grpc("otlp/grpc-raw", Some(1)).await;
    // 3 MiB of spans in one message, over the 1 MiB max_recv_msg_size_mib.
    let mut big = request(1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(3 << 20);
    let resp = raw_call(addr, EXPORT, framed(&big.encode_to_vec()), "grpc-token").await;
    assert_eq!(resp.status(), 200);
    let (code, message) = grpc_status(&resp);
    assert_eq!(code, "8", "{message}");
    assert!(
        message.starts_with(
            "the gRPC message is larger than 1048576 bytes (protocols.grpc.max_recv_msg_size_mib"
        ),
        "{message}"
    );
    assert!(resp.headers().get("grpc-status-details-bin").is_some());
    // Malformed protobuf inside valid framing.
    let resp = raw_call(
        addr,
        EXPORT,
        framed(&[0x0a, 0xff, 0xff, 0xff, 0x01]),
        "grpc-token",
    )
    .await;
    let (code, message) = grpc_status(&resp);
    assert_eq!(code, "3", "{message}");
    assert!(message.contains("not valid OTLP protobuf"), "{message}");
    // Broken framing.
    let resp = raw_call(addr, EXPORT, vec![0, 0, 0, 0, 9, 1], "grpc-token").await;
    assert_eq!(grpc_status(&resp).0, "3");
    // Another method.
    let resp = raw_call(
        addr,
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        framed(&[]),
        "grpc-token",
    )
    .await;
    assert_eq!(grpc_status(&resp).0, "12");
    // No token.
    let resp = raw_call(addr, EXPORT, framed(&request(1).encode_to_vec()), "").await;
    assert_eq!(grpc_status(&resp).0, "16");
    // Not gRPC at all on the gRPC port: 415.
    let resp = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(format!("http://{addr}{EXPORT}"))
        .header("content-type", "application/x-protobuf")
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert!(s.sink.batches().is_empty());
}

#[tokio::test]
async fn spans_with_invalid_ids_are_dropped_and_reported_as_partial_success() {
    use tracecast_core::proto::collector::trace::v1::ExportTraceServiceResponse;
    let (s, addr) = start_grpc("otlp/grpc-partial", None).await;
    let mut sent = request(3);
    sent.resource_spans[0].scope_spans[0].spans[1].span_id = vec![1, 2, 3];
    let resp = raw_call(addr, EXPORT, framed(&sent.encode_to_vec()), "grpc-token").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("grpc-status").is_none(),
        "not trailers-only"
    );
    let body = resp.bytes().await.unwrap();
    assert_eq!(body[0], 0, "uncompressed message");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(body.len(), 5 + len);
    let answer = ExportTraceServiceResponse::decode(&body[5..]).unwrap();
    let partial = answer.partial_success.expect("partial_success");
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("spans[1]"),
        "{}",
        partial.error_message
    );
    let taken: usize = s.sink.batches().iter().map(|b| b.span_count()).sum();
    assert_eq!(taken, 2);
}

/// A compressed gRPC call: the flag byte set and `grpc-encoding: <encoding>`.
async fn compressed_call(addr: SocketAddr, encoding: &str, message: &[u8]) -> (String, String) {
    let mut body = vec![1];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let resp = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{addr}{EXPORT}"))
        .header("content-type", "application/grpc")
        .header("grpc-encoding", encoding)
        .header("authorization", "Bearer grpc-token")
        .body(body)
        .send()
        .await
        .unwrap();
    let accepted = resp
        .headers()
        .get("grpc-accept-encoding")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (grpc_status(&resp).0, accepted)
}

#[tokio::test]
async fn compressed_messages_hostile_and_not() {
    let (s, addr) = start_grpc("otlp/grpc-compressed", Some(1)).await;
    let message = request(3).encode_to_vec();
    // zstd and deflate messages are taken (success: grpc-status in trailers, not headers).
    let zstd = ruzstd::encoding::compress_to_vec(
        &message[..],
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    assert_eq!(compressed_call(addr, "zstd", &zstd).await.0, "");
    assert_eq!(
        compressed_call(addr, "deflate", &support::zlib(&message))
            .await
            .0,
        ""
    );
    assert_eq!(s.sink.batches().len(), 2);
    // A gzip bomb and a zstd bomb inflating past the 1 MiB message limit.
    let zeros = vec![0u8; 64 << 20];
    assert_eq!(
        compressed_call(addr, "gzip", &support::gzip(&zeros))
            .await
            .0,
        "8"
    );
    let bomb =
        ruzstd::encoding::compress_to_vec(&zeros[..], ruzstd::encoding::CompressionLevel::Fastest);
    assert!(bomb.len() < 1 << 20);
    assert_eq!(compressed_call(addr, "zstd", &bomb).await.0, "8");
    // An encoding the receiver does not know: UNIMPLEMENTED, naming what it takes.
    let (code, accepted) = compressed_call(addr, "snappy", &message).await;
    assert_eq!(code, "12");
    assert_eq!(accepted, "identity,gzip,deflate,zstd");
    // Flagged compressed but no grpc-encoding (identity): INVALID_ARGUMENT.
    assert_eq!(compressed_call(addr, "identity", &message).await.0, "3");
    // Compressed with gzip but named zstd: INVALID_ARGUMENT, not a crash.
    assert_eq!(
        compressed_call(addr, "zstd", &support::gzip(&message))
            .await
            .0,
        "3"
    );
    assert_eq!(s.sink.batches().len(), 2);
}
