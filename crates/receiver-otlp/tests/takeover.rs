//! A receiver with both protocols replaced twice by one with new settings on the same
//! endpoints (what a reload does): each takes over both running sockets, the replaced one
//! stops, and both ports keep answering with the newest settings. A second takeover needs
//! the gRPC socket the first replacement registered, which the replaced receiver's stop
//! must leave in place.

mod support;

use std::sync::Arc;

use prost::Message;
use support::{client, request, RecordingSink};
use tracecast_core::{CancellationToken, ComponentId};
use tracecast_receiver_otlp::config::{GrpcProtocol, HttpProtocol, Protocols};
use tracecast_receiver_otlp::{OtlpReceiver, OtlpReceiverConfig, Protocol};

fn config(http: &str, grpc: &str, max_spans: u64) -> OtlpReceiverConfig {
    OtlpReceiverConfig {
        protocols: Some(Protocols {
            http: Some(HttpProtocol {
                endpoint: http.into(),
                ..Default::default()
            }),
            grpc: Some(GrpcProtocol {
                endpoint: grpc.into(),
                ..Default::default()
            }),
        }),
        max_spans_per_request: max_spans,
        ..Default::default()
    }
}

/// (HTTP status, gRPC status) for one request of `spans` spans to each port.
async fn call(
    http: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
    spans: usize,
) -> (u16, String) {
    let body = request(spans).encode_to_vec();
    let h = client()
        .post(format!("http://{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let mut framed = vec![0];
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    let g = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(format!(
            "http://{grpc}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        ))
        .header("content-type", "application/grpc")
        .body(framed)
        .send()
        .await
        .unwrap();
    // Success puts grpc-status in trailers; a refusal in the headers.
    let status = g
        .headers()
        .get("grpc-status")
        .map_or("ok".to_string(), |v| v.to_str().unwrap().to_string());
    (h, status)
}

#[tokio::test]
async fn both_sockets_are_taken_over_twice() {
    let id = ComponentId::parse("otlp/takeover").unwrap();
    let sink: Arc<RecordingSink> = RecordingSink::new();
    // Bind on free ports first, then configure those exact endpoints.
    let probe_stop = CancellationToken::new();
    let probe = OtlpReceiver::new(
        id.clone(),
        config("127.0.0.1:0", "127.0.0.1:0", 100),
        sink.clone(),
    )
    .start(probe_stop.clone())
    .await
    .unwrap();
    let (http, grpc) = (
        probe.addr(Protocol::Http).unwrap(),
        probe.addr(Protocol::Grpc).unwrap(),
    );
    probe_stop.cancel();
    probe.stopped().await;

    let stop1 = CancellationToken::new();
    let first = OtlpReceiver::new(
        id.clone(),
        config(&http.to_string(), &grpc.to_string(), 100),
        sink.clone(),
    )
    .start(stop1.clone())
    .await
    .unwrap();
    assert_eq!(call(http, grpc, 5).await, (200, "ok".to_string()));

    let mut running = first;
    let mut stop = stop1;
    for max_spans in [3, 2] {
        let next = OtlpReceiver::new(
            id.clone(),
            config(&http.to_string(), &grpc.to_string(), max_spans),
            sink.clone(),
        )
        .bind_shared(&running)
        .expect("takes over both sockets");
        let next_stop = CancellationToken::new();
        let next = next.serve(next_stop.clone());
        stop.cancel();
        running.stopped().await;
        // The new limit answers on both ports: over it, 413 / RESOURCE_EXHAUSTED.
        assert_eq!(call(http, grpc, 4).await, (413, "8".to_string()));
        assert_eq!(call(http, grpc, 1).await, (200, "ok".to_string()));
        running = next;
        stop = next_stop;
    }
    stop.cancel();
    running.stopped().await;
}
