//! Delivery tokens through trace assembly: a queue entry is acknowledged only once every
//! trace it contributed spans to is written (or dead-lettered), and abandoned when the hard
//! stop comes first. Against the in-process S3 server (SigV4 checked) on 127.0.0.1.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::sync::mpsc;
use tracecast_core::ack::{AckSink, DeliveryToken};
use tracecast_core::{CancellationToken, TraceBatch};
use tracecast_exporter_s3::Delivery;
use tracecast_test_util::s3::S3TestServer;

/// The durable queue's side: which entries were acknowledged.
#[derive(Default)]
struct Acks(Mutex<Vec<u64>>);

impl AckSink for Acks {
    fn delivered(&self, seq: u64) {
        self.0.lock().unwrap().push(seq);
    }
}

impl Acks {
    fn seen(&self) -> Vec<u64> {
        let mut v = self.0.lock().unwrap().clone();
        v.sort_unstable();
        v
    }
}

/// The batch with a claim on entry `seq`, and the test's own claim (settled by the test:
/// the exporter's copy decides whether the entry is delivered).
fn with_token(b: TraceBatch, seq: u64, acks: &Arc<Acks>) -> (TraceBatch, DeliveryToken) {
    let t = DeliveryToken::new(seq, acks.clone());
    (b.with_tokens(vec![t.clone()]), t)
}

async fn server() -> (tempfile::TempDir, S3TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = S3TestServer::start(dir.path().join("s3"), AK, SK).await;
    server.create_bucket(BUCKET);
    (dir, server)
}

/// An exporter run with a hard-stop token the test controls.
struct Run {
    tx: mpsc::Sender<TraceBatch>,
    stop: CancellationToken,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Run {
    fn start(config: &tracecast_exporter_s3::S3ExporterConfig) -> Self {
        let exporter = build("s3/tokens", config);
        let (tx, rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let sink = deliveries.clone();
        let hard = stop.clone();
        let task = tokio::spawn(async move {
            exporter
                .run_observed(rx, hard, move |d| sink.lock().unwrap().push(d))
                .await
        });
        Self {
            tx,
            stop,
            deliveries,
            task,
        }
    }

    fn delivered(&self) -> usize {
        self.deliveries.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize) {
        for _ in 0..300 {
            if self.delivered() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} deliveries after 15s");
    }

    async fn finish(self) -> Vec<Delivery> {
        drop(self.tx);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the exporter returns")
            .unwrap();
        std::mem::take(&mut *self.deliveries.lock().unwrap())
    }
}

#[tokio::test]
async fn an_entry_is_acknowledged_once_every_trace_it_fed_is_written() {
    let (dir, server) = server().await;
    let config = s3_config(&server, &dir.path().join("dl"));
    let acks = Arc::new(Acks::default());
    let run = Run::start(&config);
    // Entry 1: the root of trace 30 and a child of trace 31 (whose root comes later).
    let (b1, t1) = with_token(
        batch(
            vec![
                span(30, 1, None, "root-30", 0, vec![]),
                span(31, 2, Some(1), "child-31", 10, vec![]),
            ],
            None,
        ),
        1,
        &acks,
    );
    run.tx.send(b1).await.unwrap();
    t1.confirm();
    assert!(acks.seen().is_empty(), "held for assembly");
    run.wait_for(1).await;
    assert!(
        acks.seen().is_empty(),
        "trace 30 is written but trace 31 still holds spans of entry 1"
    );
    // Entry 2: the root of trace 31.
    let (b2, t2) = with_token(
        batch(vec![span(31, 1, None, "root-31", 0, vec![])], None),
        2,
        &acks,
    );
    run.tx.send(b2).await.unwrap();
    t2.confirm();
    run.wait_for(2).await;
    assert_eq!(acks.seen(), vec![1, 2]);

    // A late fragment (entry 3) is acknowledged after its own, second file.
    let (b3, t3) = with_token(
        batch(vec![span(30, 3, Some(1), "late-30", 300, vec![])], None),
        3,
        &acks,
    );
    run.tx.send(b3).await.unwrap();
    t3.confirm();
    run.wait_for(3).await;
    let d = run.finish().await;
    assert!(
        d.iter().all(|d| matches!(d, Delivery::Written { .. })),
        "{d:?}"
    );
    assert_eq!(acks.seen(), vec![1, 2, 3]);
    let files = read_all(&server);
    assert_eq!(files.len(), 3);
    assert!(files.iter().any(|(_, doc)| doc["lateFragment"] == true));
}

#[tokio::test]
async fn a_dead_lettered_trace_is_final_and_acknowledged() {
    let (dir, server) = server().await;
    let mut config = s3_config(&server, &dir.path().join("dl"));
    config.bucket = Some("no-such-bucket".into());
    let acks = Arc::new(Acks::default());
    let run = Run::start(&config);
    let (b, t) = with_token(
        batch(vec![span(40, 1, None, "root", 0, vec![])], None),
        4,
        &acks,
    );
    run.tx.send(b).await.unwrap();
    let d = run.finish().await;
    assert!(
        matches!(&d[0], Delivery::DeadLettered { file: Some(_), .. }),
        "{d:?}"
    );
    assert!(!t.is_abandoned());
    t.confirm();
    assert_eq!(acks.seen(), vec![4]);
}

#[tokio::test]
async fn the_hard_stop_abandons_traces_not_written() {
    let (dir, mut server) = server().await;
    let dl = dir.path().join("dl");
    let config = s3_config(&server, &dl);
    let acks = Arc::new(Acks::default());
    server.stop().await;
    let run = Run::start(&config);
    // Trace 50: released on idle, its upload retried against the stopped server.
    let (b1, t1) = with_token(
        batch(vec![span(50, 1, None, "root", 0, vec![])], None),
        1,
        &acks,
    );
    // Trace 51: no root, still held by assembly at the hard stop.
    let (b2, t2) = with_token(
        batch(vec![span(51, 2, Some(1), "orphan", 0, vec![])], None),
        2,
        &acks,
    );
    run.tx.send(b1).await.unwrap();
    run.tx.send(b2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        run.delivered(),
        0,
        "the upload of trace 50 is being retried"
    );
    run.stop.cancel();
    let d = run.finish().await;
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(
        d.iter().all(|d| matches!(d, Delivery::Abandoned { .. })),
        "{d:?}"
    );
    assert!(t1.is_abandoned() && t2.is_abandoned());
    t1.confirm();
    t2.confirm();
    assert!(acks.seen().is_empty(), "both entries stay queued");
    assert!(
        std::fs::read_dir(&dl).map_or(true, |mut r| r.next().is_none()),
        "queued traces are replayed, not dead-lettered"
    );
}

#[tokio::test]
async fn without_a_queue_the_hard_stop_still_dead_letters() {
    let (dir, mut server) = server().await;
    let dl = dir.path().join("dl");
    let config = s3_config(&server, &dl);
    server.stop().await;
    let run = Run::start(&config);
    run.tx
        .send(batch(vec![span(60, 1, None, "root", 0, vec![])], None))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    run.stop.cancel();
    let d = run.finish().await;
    assert!(
        matches!(&d[0], Delivery::DeadLettered { file: Some(_), .. }),
        "{d:?}"
    );
}
