//! The forwarder against a recording OTLP server on 127.0.0.1: encodings, headers, gzip,
//! and one case per status class (retried exactly where the spec says, nothing lost on the
//! retryable path, nothing retried forever).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use prost::Message;
use support::{batch, build, config, export, exported, failed, retries};
use tokio::sync::mpsc;
use tracecast_config::Duration as ConfigDuration;
use tracecast_core::{CancellationToken, Exporter};
use tracecast_exporter_otlp::{Compression, Encoding};
use tracecast_test_util::fixtures::{
    flatten_spans, gateway_request, request_with_named_spans, request_with_spans,
};
use tracecast_test_util::otlp_server::{RecordingOtlpServer, Response};

#[tokio::test]
async fn protobuf_and_json_deliver_the_same_spans_with_headers_gzip_and_zstd() {
    let server = RecordingOtlpServer::start().await;
    let request = gateway_request();
    let id = "otlp/encodings";
    for (encoding, compression) in [
        (Encoding::Protobuf, Compression::Gzip),
        (Encoding::Json, Compression::Gzip),
        (Encoding::Json, Compression::None),
        (Encoding::Protobuf, Compression::Zstd),
    ] {
        let mut c = config(&server.endpoint());
        c.encoding = encoding;
        c.compression = compression;
        c.headers
            .insert("Authorization".into(), "Bearer xaat-test".into());
        c.headers
            .insert("X-Axiom-Dataset".into(), "my-dataset".into());
        export(id, c, vec![batch(request.clone())]).await;
    }

    let reqs = server.requests();
    assert_eq!(reqs.len(), 4);
    let expected = flatten_spans(&request);
    for (r, (ct, ce)) in reqs.iter().zip([
        ("application/x-protobuf", Some("gzip")),
        ("application/json", Some("gzip")),
        ("application/json", None),
        ("application/x-protobuf", Some("zstd")),
    ]) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/traces");
        assert_eq!(r.content_type.as_deref(), Some(ct));
        assert_eq!(r.content_encoding.as_deref(), ce);
        assert_eq!(r.header("authorization"), Some("Bearer xaat-test"));
        assert_eq!(r.header("x-axiom-dataset"), Some("my-dataset"));
        assert!(r.header("user-agent").unwrap().starts_with("tracecast/"));
        assert_eq!(r.status, 200);
        assert_eq!(r.spans(), expected, "{ct} {ce:?}");
    }
    // The untouched batch was forwarded as the exact bytes received.
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&reqs[0].body[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, request.encode_to_vec());
    assert!(reqs[2].body.starts_with(b"{"));
    assert_eq!(exported(id), 8);
}

#[tokio::test]
async fn status_400_is_permanent_one_request_counted() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![Response::status(400).body("bad things")]);
    let id = "otlp/s400";
    export(
        id,
        config(&server.endpoint()),
        vec![batch(request_with_spans(3))],
    )
    .await;
    assert_eq!(server.request_count(), 1);
    assert_eq!(failed(id, "permanent"), 3);
    assert_eq!(retries(id), 0);
    assert_eq!(exported(id), 0);
}

#[tokio::test]
async fn status_500_is_permanent_one_request() {
    let server = RecordingOtlpServer::start().await;
    server.set_default(Response::status(500).body("internal error"));
    let id = "otlp/s500";
    export(
        id,
        config(&server.endpoint()),
        vec![batch(request_with_spans(2))],
    )
    .await;
    assert_eq!(server.request_count(), 1);
    assert_eq!(failed(id, "permanent"), 2);
    assert_eq!(retries(id), 0);
}

#[tokio::test]
async fn status_429_honours_retry_after_then_delivers() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![Response::status(429).retry_after("1"), Response::ok()]);
    let id = "otlp/s429";
    // Without Retry-After the wait would be ~50 ms.
    export(
        id,
        config(&server.endpoint()),
        vec![batch(request_with_spans(4))],
    )
    .await;
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!((reqs[0].status, reqs[1].status), (429, 200));
    let waited = reqs[1].received_at - reqs[0].received_at;
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
    assert_eq!(
        server.span_names(),
        ["span-0", "span-1", "span-2", "span-3"]
    );
    assert_eq!(retries(id), 1);
    assert_eq!(exported(id), 4);
}

#[tokio::test]
async fn status_503_twice_then_200_delivers_every_span_once() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![
        Response::status(503),
        Response::status(503),
        Response::ok(),
    ]);
    let id = "otlp/s503";
    export(
        id,
        config(&server.endpoint()),
        vec![batch(request_with_spans(5))],
    )
    .await;
    assert_eq!(server.request_count(), 3);
    assert_eq!(server.span_names().len(), 5);
    assert_eq!(retries(id), 2);
    assert_eq!(exported(id), 5);
    assert_eq!(failed(id, "permanent") + failed(id, "retries_exhausted"), 0);
}

#[tokio::test]
async fn status_502_and_504_are_retried() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![
        Response::status(502),
        Response::status(504),
        Response::ok(),
    ]);
    let id = "otlp/s502";
    export(
        id,
        config(&server.endpoint()),
        vec![batch(request_with_spans(1))],
    )
    .await;
    assert_eq!(server.request_count(), 3);
    assert_eq!(server.span_names(), ["span-0"]);
}

#[tokio::test]
async fn a_timed_out_request_is_retried() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![Response::ok().delay(Duration::from_secs(3))]);
    let id = "otlp/timeout";
    let mut c = config(&server.endpoint());
    c.timeout = ConfigDuration::from_millis(300);
    export(id, c, vec![batch(request_with_spans(2))]).await;
    assert_eq!(server.request_count(), 2);
    assert_eq!(retries(id), 1);
    assert_eq!(exported(id), 2);
}

#[tokio::test]
async fn gives_up_when_max_elapsed_time_is_reached() {
    let server = RecordingOtlpServer::start().await;
    server.set_default(Response::status(503));
    let id = "otlp/exhausted";
    let mut c = config(&server.endpoint());
    c.retry_on_failure.max_elapsed_time = ConfigDuration::from_millis(400);
    let started = std::time::Instant::now();
    export(id, c, vec![batch(request_with_spans(3))]).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let n = server.request_count();
    assert!(n >= 2, "retried before giving up ({n} requests)");
    assert_eq!(retries(id), n as u64 - 1);
    assert_eq!(failed(id, "retries_exhausted"), 3);
    assert!(server.spans().is_empty());
}

#[tokio::test]
async fn disabled_retries_send_once() {
    let server = RecordingOtlpServer::start().await;
    server.set_default(Response::status(503));
    let id = "otlp/noretry";
    let mut c = config(&server.endpoint());
    c.retry_on_failure.enabled = false;
    export(id, c, vec![batch(request_with_spans(1))]).await;
    assert_eq!(server.request_count(), 1);
    assert_eq!(failed(id, "retries_exhausted"), 1);
}

#[tokio::test]
async fn partial_success_is_counted() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![Response::partial_success(2, "span name missing")]);
    let id = "otlp/partial";
    for encoding in [Encoding::Json, Encoding::Protobuf] {
        let mut c = config(&server.endpoint());
        c.encoding = encoding;
        export(id, c, vec![batch(request_with_spans(5))]).await;
        server.respond_with(vec![Response::partial_success(2, "span name missing")]);
    }
    assert_eq!(failed(id, "partial_success"), 4);
    assert_eq!(exported(id), 6);
}

#[tokio::test]
async fn many_batches_through_concurrent_consumers_arrive_exactly_once() {
    let server = RecordingOtlpServer::start().await;
    // Every third request fails once: retries interleave with other consumers' sends.
    server.respond_with(
        (0..30)
            .map(|i| {
                if i % 3 == 0 {
                    Response::status(503)
                } else {
                    Response::ok()
                }
            })
            .collect(),
    );
    let id = "otlp/many";
    let mut c = config(&server.endpoint());
    c.encoding = Encoding::Protobuf;
    c.sending_queue.queue_size = 2;
    c.sending_queue.num_consumers = 4;
    let batches = (0..40)
        .map(|i| batch(request_with_named_spans(&format!("b{i}"), 3)))
        .collect();
    export(id, c, batches).await;
    let names = server.span_names();
    assert_eq!(names.len(), 120);
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 120);
    assert_eq!(exported(id), 120);
}

#[tokio::test]
async fn hard_stop_ends_retries_and_counts_what_was_not_delivered() {
    let server = RecordingOtlpServer::start().await;
    server.stall();
    let id = "otlp/hardstop";
    let mut c = config(&server.endpoint());
    c.sending_queue.num_consumers = 1;
    let exporter = build(id, &c);
    let (tx, rx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(exporter).run(rx, stop.clone()));
    for _ in 0..3 {
        tx.send(batch(request_with_spans(2))).await.unwrap();
    }
    for _ in 0..200 {
        if server.held_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.held_count(), 1, "the first batch is in flight");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("run returns promptly after the hard stop")
        .unwrap();
    assert_eq!(failed(id, "shutdown"), 6);
    assert_eq!(exported(id), 0);
    server.release();
}
