//! Requests the receiver accepts (200), on a real socket with a real HTTP client, and the
//! graceful stop.

mod support;

use std::time::Duration;

use prost::Message;
use support::{client, gzip, request, spans, start, zlib, Mode};
use tracecast_core::metrics;
use tracecast_core::proto::collector::trace::v1::ExportTraceServiceResponse;
use tracecast_core::proto::common::v1::any_value;
use tracecast_receiver_otlp::ApiKey;

#[tokio::test]
async fn protobuf_request_reaches_the_sink_with_its_bytes_and_attributes() {
    let s = start("otlp/proto", |_| {}).await;
    let body = request(3).encode_to_vec();
    let resp = client()
        .post(&s.url)
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let answer = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success, None);

    let batches = s.sink.batches();
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch.span_count(), 3);
    assert_eq!(batch.request(), &request(3));
    let first = spans(batch.request())[0];
    assert_eq!(first.attributes[1].key, "gen_ai.request.model");
    assert_eq!(
        first.attributes[2].value.as_ref().unwrap().value,
        Some(any_value::Value::IntValue(100))
    );
    assert_eq!(batch.received_protobuf().map(|b| &b[..]), Some(&body[..]));
    assert_eq!(&*batch.context().receiver, "otlp/proto");
    assert_eq!(batch.context().api_key_name, None);
    let accepted = metrics::SPANS_RECEIVED
        .get_or_create(&metrics::component("otlp/proto"))
        .get();
    assert_eq!(accepted, 3);
}

#[tokio::test]
async fn gzip_and_deflate_bodies_are_decompressed_and_kept_decompressed() {
    let s = start("otlp/gzip", |_| {}).await;
    let body = request(2).encode_to_vec();
    for (encoding, compressed) in [("gzip", gzip(&body)), ("deflate", zlib(&body))] {
        let resp = client()
            .post(&s.url)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", encoding)
            .body(compressed)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{encoding}");
    }
    let batches = s.sink.batches();
    assert_eq!(batches.len(), 2);
    for batch in &batches {
        assert_eq!(batch.request(), &request(2));
        assert_eq!(batch.received_protobuf().map(|b| &b[..]), Some(&body[..]));
    }
}

/// OTLP/JSON as the OpenTelemetry JS exporter writes it: hex ids, int64 as strings, enum
/// numbers, camelCase.
const JSON_REQUEST: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"llm-gateway"}}],"droppedAttributesCount":0},"scopeSpans":[{"scope":{"name":"gateway","version":"1.0.0"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"chat gpt-4o","kind":3,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","attributes":[{"key":"gen_ai.system","value":{"stringValue":"openai"}},{"key":"gen_ai.usage.input_tokens","value":{"intValue":"42"}}],"droppedAttributesCount":0,"events":[],"droppedEventsCount":0,"status":{"code":1},"links":[],"droppedLinksCount":0}]}]}]}"#;

#[tokio::test]
async fn json_request_is_answered_in_json() {
    let s = start("otlp/json", |_| {}).await;
    let resp = client()
        .post(&s.url)
        .header("content-type", "application/json; charset=utf-8")
        .body(JSON_REQUEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let answer: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(answer, serde_json::json!({}));

    let batches = s.sink.batches();
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch.received_protobuf(), None);
    let span = spans(batch.request())[0];
    assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(span.kind, 3);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(
        span.attributes[1].value.as_ref().unwrap().value,
        Some(any_value::Value::IntValue(42))
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn spans_with_invalid_ids_are_dropped_and_reported_as_partial_success() {
    let s = start("otlp/partial", |_| {}).await;
    let mut req = request(3);
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![1; 5];
    let resp = client()
        .post(&s.url)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial.error_message.contains("spans[1]")
            && partial.error_message.contains("5-byte traceId"),
        "{}",
        partial.error_message
    );
    let batches = s.sink.batches();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].span_count(), 2);
    // The received bytes no longer describe the forwarded request.
    assert_eq!(batches[0].received_protobuf(), None);

    // Every span invalid: still 200 with partial_success (OTLP spec), nothing submitted.
    let mut req = request(2);
    for span in &mut req.resource_spans[0].scope_spans[0].spans {
        span.span_id = vec![];
    }
    let resp = client()
        .post(&s.url)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success.unwrap().rejected_spans, 2);
    assert_eq!(s.sink.batches().len(), 1);
}

#[tokio::test]
async fn empty_request_is_accepted_without_submitting() {
    let s = start("otlp/empty", |_| {}).await;
    let resp = client()
        .post(&s.url)
        .header("content-type", "application/x-protobuf")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(answer.partial_success, None);
    assert!(s.sink.batches().is_empty());
}

#[tokio::test]
async fn the_key_name_travels_with_the_batch() {
    let s = start("otlp/keyname", |c| {
        c.api_keys = vec![
            ApiKey {
                name: "staging".into(),
                token: "s3cret-staging".into(),
            },
            ApiKey {
                name: "prod-gateway".into(),
                token: "s3cret-prod".into(),
            },
        ];
    })
    .await;
    let resp = client()
        .post(&s.url)
        .header("content-type", "application/x-protobuf")
        .bearer_auth("s3cret-prod")
        .body(request(1).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let batches = s.sink.batches();
    assert_eq!(
        batches[0].context().api_key_name.as_deref(),
        Some("prod-gateway")
    );
}

#[tokio::test]
async fn graceful_stop_answers_the_request_in_flight() {
    let s = start("otlp/stop", |_| {}).await;
    s.sink.set_mode(Mode::Hold);
    let url = s.url.clone();
    let in_flight = tokio::spawn(async move {
        client()
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request(2).encode_to_vec())
            .send()
            .await
    });
    s.sink.entered().await;
    s.shutdown.cancel();
    let stopped = tokio::spawn(s.running.stopped());

    // The listener is closed: new connections are refused while the old request waits.
    let mut refused = false;
    for _ in 0..50 {
        let attempt = client()
            .post(&s.url)
            .header("content-type", "application/x-protobuf")
            .send()
            .await;
        if attempt.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener still accepts after shutdown");
    assert!(
        !stopped.is_finished(),
        "stopped() resolved before the request was answered"
    );

    s.sink.release();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("stopped() did not resolve after the last request")
        .unwrap();
    assert_eq!(s.sink.batches().len(), 1);
}
