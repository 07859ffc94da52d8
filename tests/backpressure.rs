//! A stalled backend fills the exporter's input and then the pipeline's durable queue
//! (bounded by `service.queue.max_size`); the receiver must then answer 429 with
//! `Retry-After` (never a silent drop), and every span it acknowledged must arrive once the
//! backend recovers.

use std::time::Duration;

use prost::Message;
use tracecast::Service;
use tracecast_tests::{fixtures, Exporter, RecordingOtlpServer, TestConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_exporter_fills_the_queue_then_429_and_nothing_acked_is_lost() {
    let backend = RecordingOtlpServer::start().await;
    backend.stall();
    let queue_dir = tempfile::tempdir().unwrap();
    let yaml = TestConfig::new(0)
        .exporter(
            Exporter::otlp("otlp/stalled", backend.endpoint())
                .protobuf()
                .timeout("60s")
                .sending_queue(4, 1),
        )
        .queue_dir(queue_dir.path())
        .queue("max_size", "64KiB")
        .queue("segment_size", "16KiB")
        .yaml();
    let config = tracecast::load_config_str("bp.yaml", &yaml).unwrap();
    let service = Service::start(&config).await.unwrap();
    let url = format!(
        "http://{}/v1/traces",
        service.receiver_addr("otlp").unwrap()
    );
    let client = reqwest::Client::new();

    let mut acked = Vec::new();
    let mut refused = None;
    // Bounded: the queues between receiver and backend hold a few hundred batches.
    for i in 0..5000 {
        let req = fixtures::request_with_named_spans(&format!("bp{i}"), 1);
        let resp = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => acked.push(format!("bp{i}-0")),
            429 | 503 => {
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap();
                refused = Some((status, retry_after, body));
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let (status, retry_after, body) = refused.expect("the receiver pushed back");
    assert_eq!(status, 429);
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "Retry-After in seconds"
    );
    let rpc = tracecast_receiver_otlp::Status::decode(body).expect("google.rpc.Status body");
    assert!(
        rpc.message.contains("full"),
        "message says why: {}",
        rpc.message
    );
    assert!(!acked.is_empty());

    backend.release();
    let spans = backend
        .wait_for_spans(acked.len(), Duration::from_secs(60))
        .await;
    let mut got: Vec<String> = spans.into_iter().map(|s| s.name).collect();
    got.sort();
    acked.sort();
    assert_eq!(got, acked, "every acknowledged span arrives, once");
    assert!(service.shutdown().await);
}
