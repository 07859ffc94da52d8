//! Adaptive upload concurrency against an S3 endpoint with real latency: the in-process S3
//! server behind the delaying proxy of `tracecast-test-util`, which adds milliseconds per
//! request and answers `503 SlowDown` when too many requests are in flight. What is
//! checked is correctness (every trace written once, nothing dead-lettered, the limit
//! shrinks under throttling, connections are reused), never how fast.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;
use tracecast_core::proto::trace::v1::Span;
use tracecast_exporter_s3::upload::INITIAL_CONCURRENCY;
use tracecast_exporter_s3::Delivery;
use tracecast_test_util::s3::S3TestServer;
use tracecast_test_util::DelayProxy;

/// A one-span trace (a root, so it is written once idle) with a 16-byte id made of `n`.
fn root(n: u32) -> Span {
    let mut id = [0x5a; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    let mut s = span(
        0,
        1,
        None,
        "request",
        0,
        vec![s("gen_ai.request.model", "m")],
    );
    s.trace_id = id.to_vec();
    s
}

fn trace_hex_of(n: u32) -> String {
    hex::encode(root(n).trace_id)
}

struct Setup {
    _dir: tempfile::TempDir,
    server: S3TestServer,
    proxy: DelayProxy,
    config: tracecast_exporter_s3::S3ExporterConfig,
}

async fn setup(delay: Duration) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    server.create_bucket(BUCKET);
    let proxy = DelayProxy::start(server.addr(), delay).await.unwrap();
    let mut config = s3_config(&server, &dir.path().join("dl"));
    config.endpoint = Some(proxy.endpoint());
    config.trace_idle_timeout = tracecast_config::Duration::from_millis(50);
    Setup {
        _dir: dir,
        server,
        proxy,
        config,
    }
}

/// Sends traces `0..n` in batches of 50 and waits for the exporter to drain.
async fn send_all(run: Running, n: u32) -> Vec<Delivery> {
    let mut next = 0;
    while next < n {
        let end = (next + 50).min(n);
        run.send(batch((next..end).map(root).collect(), None)).await;
        next = end;
    }
    run.wait_for(n as usize).await;
    run.finish().await
}

fn assert_every_trace_written_once(setup: &Setup, deliveries: &[Delivery], n: u32) {
    let odd: Vec<&Delivery> = deliveries
        .iter()
        .filter(|d| !matches!(d, Delivery::Written { .. }))
        .collect();
    assert!(odd.is_empty(), "not all written: {odd:?}");
    assert_eq!(deliveries.len(), n as usize);
    let keys = setup.server.list_keys(BUCKET);
    assert_eq!(keys.len(), n as usize, "one object per trace");
    let ids: BTreeSet<String> = keys
        .iter()
        .map(|k| {
            let name = k.rsplit('/').next().unwrap();
            name.split('-').next().unwrap().to_string()
        })
        .collect();
    let want: BTreeSet<String> = (0..n).map(trace_hex_of).collect();
    assert_eq!(ids, want, "every trace id has its file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_slowdown_the_limit_shrinks_and_every_trace_is_still_written() {
    let setup = setup(Duration::from_millis(20)).await;
    // A prefix that takes at most 4 requests at once: more is `503 SlowDown`.
    setup.proxy.throttle_above(Some(4));
    let exporter = build("s3/adaptive", &setup.config);
    let concurrency = exporter.upload_concurrency();
    let run = Running::start_with(exporter);
    const N: u32 = 300;
    let deliveries = send_all(run, N).await;
    assert_every_trace_written_once(&setup, &deliveries, N);
    let stats = concurrency.stats();
    let proxy = setup.proxy.stats();
    eprintln!("concurrency {stats:?}; proxy {proxy:?}");
    assert!(proxy.throttled > 0, "{proxy:?}");
    assert!(stats.throttled > 0, "{stats:?}");
    assert!(stats.decreases > 0, "{stats:?}");
    assert!(
        INITIAL_CONCURRENCY > 4 && stats.lowest <= 4,
        "shrank to what the endpoint takes: {stats:?}"
    );
    // Each throttled attempt was retried until written.
    assert_eq!(proxy.requests, u64::from(N) + proxy.throttled, "{proxy:?}");
    // Connection reuse: a pooled keep-alive connection per upload slot, not one per PUT.
    assert!(
        proxy.connections * 4 <= proxy.requests,
        "connections reused: {proxy:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_latency_and_no_throttling_every_trace_is_written_over_reused_connections() {
    let setup = setup(Duration::from_millis(30)).await;
    let exporter = build("s3/adaptive", &setup.config);
    let concurrency = exporter.upload_concurrency();
    let run = Running::start_with(exporter);
    const N: u32 = 600;
    let deliveries = send_all(run, N).await;
    assert_every_trace_written_once(&setup, &deliveries, N);
    let stats = concurrency.stats();
    let proxy = setup.proxy.stats();
    // How far the limit grew depends on how loaded the machine is; printed, not asserted.
    eprintln!("concurrency {stats:?}; proxy {proxy:?}");
    assert_eq!(stats.throttled, 0);
    assert_eq!(proxy.requests, u64::from(N), "{proxy:?}");
    assert!(
        proxy.peak_in_flight <= stats.highest as u64,
        "never more in flight than the limit allowed: {proxy:?} {stats:?}"
    );
    // Reused: a request starting just as another ends may still open a connection of its
    // own (the pool gets the finished one back a moment later), so not exactly one per slot.
    assert!(
        proxy.connections * 2 <= proxy.requests,
        "connections reused: {proxy:?} {stats:?}"
    );
}
