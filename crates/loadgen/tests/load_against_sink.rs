//! The generator against the real sink over 127.0.0.1: everything accepted is counted once.

use std::sync::Arc;
use std::time::Duration;

use tracecast_loadgen::generate::{fetch_sink_stats, run, LoadConfig};
use tracecast_loadgen::report::{Report, RunInfo, SinkDelta};
use tracecast_loadgen::sink::{serve, SinkCounters};
use tracecast_loadgen::{BodySource, Encoding, PayloadSpec};

async fn load(encoding: Encoding, gzip: Option<u32>, rate: Option<f64>) -> (Report, u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(SinkCounters::default());
    let server = tokio::spawn(serve(listener, counters.clone()));
    let spec = PayloadSpec {
        spans_per_request: 5,
        content_bytes: 512,
        ..PayloadSpec::default()
    };
    let bodies = Arc::new(BodySource::prepare(&spec, encoding, gzip, 4));
    let config = LoadConfig {
        addr,
        host: addr.to_string(),
        path: "/v1/traces".into(),
        encoding,
        gzip: gzip.is_some(),
        spans_per_request: 5,
        connections: 3,
        rate,
        duration: Duration::from_millis(400),
        total_spans: Some(500),
        headers: Vec::new(),
    };
    let result = run(config, bodies.clone()).await;
    let stats = fetch_sink_stats(addr).await.unwrap();
    server.abort();
    let sink = SinkDelta::between(Default::default(), stats, result.accepted_spans);
    let info = RunInfo {
        target: addr.to_string(),
        encoding: format!("{encoding:?}"),
        gzip: gzip.is_some(),
        spans_per_request: 5,
        body_bytes: bodies.wire_size(),
        connections: 3,
        rate,
    };
    (Report::new(info, &result, Some(sink)), result.bytes_sent)
}

#[tokio::test]
async fn protobuf_load_is_fully_counted() {
    let (report, sent) = load(Encoding::Protobuf, None, None).await;
    assert!(report.accepted_spans > 0);
    assert!(report.accepted_spans <= 500);
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    let sink = report.sink.clone().unwrap();
    assert_eq!(sink.spans, report.accepted_spans);
    assert_eq!(sink.lost_spans, 0);
    assert_eq!(sink.bytes, sent);
    assert!(report.latency_ms.p99.unwrap() >= report.latency_ms.p50.unwrap());
    assert!(report.table().contains("sink received"));
}

#[tokio::test]
async fn gzip_json_load_is_fully_counted() {
    let (report, _) = load(Encoding::Json, Some(1), None).await;
    let sink = report.sink.clone().unwrap();
    assert!(sink.spans > 0);
    assert_eq!(sink.lost_spans, 0);
    assert!(sink.decoded_bytes > sink.bytes);
}

#[tokio::test]
async fn fixed_rate_is_respected() {
    // 1000 spans/s for 400 ms: about 400 spans, never the 500 cap.
    let (report, _) = load(Encoding::Protobuf, None, Some(1000.0)).await;
    assert!(
        (300..=450).contains(&report.accepted_spans),
        "{}",
        report.accepted_spans
    );
}
