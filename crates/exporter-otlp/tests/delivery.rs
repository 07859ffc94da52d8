//! Delivery tokens and dead letters: a batch's queue entry is acknowledged only when its
//! export is final (delivered, or kept in the dead-letter folder), and abandoned at the hard
//! stop; permanently rejected and out-of-retries batches land in the dead-letter folder as
//! OTLP protobuf with the reason beside them.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use support::{batch, build, config, dead_letter_dir, export, failed};
use tokio::sync::mpsc;
use tracecast_config::Duration as ConfigDuration;
use tracecast_core::ack::{AckSink, DeliveryToken};
use tracecast_core::{CancellationToken, ExportTraceServiceRequest, Exporter};
use tracecast_test_util::fixtures::{flatten_spans, request_with_named_spans};
use tracecast_test_util::otlp_server::{RecordingOtlpServer, Response};

/// The durable queue's side of tokens: which entries were acknowledged, which failed.
#[derive(Default)]
struct Acks(Mutex<Vec<u64>>, Mutex<Vec<u64>>);

impl AckSink for Acks {
    fn delivered(&self, seq: u64) {
        self.0.lock().unwrap().push(seq);
    }
    fn failed(&self, seq: u64) {
        self.1.lock().unwrap().push(seq);
    }
}

impl Acks {
    fn seen(&self) -> Vec<u64> {
        let mut v = self.0.lock().unwrap().clone();
        v.sort_unstable();
        v
    }
}

/// A batch of `n` spans named `{tag}-i` carrying the token of queue entry `seq`; the token
/// clone returned lets the test see whether it was abandoned (the test settles it: it is
/// one more claim on the entry).
fn queued(
    tag: &str,
    n: usize,
    seq: u64,
    acks: &Arc<Acks>,
) -> (tracecast_core::TraceBatch, DeliveryToken) {
    let token = DeliveryToken::new(seq, acks.clone());
    let b = batch(request_with_named_spans(tag, n)).with_tokens(vec![token.clone()]);
    (b, token)
}

/// Dead-letter files (`.pb`, sorted) and their reasons.
fn dead_letters(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "pb"));
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let reason = std::fs::read_to_string(format!("{}.reason.txt", p.display())).unwrap();
            (p, reason)
        })
        .collect()
}

#[tokio::test]
async fn a_delivered_batch_is_acknowledged_only_after_the_backend_answered() {
    let server = RecordingOtlpServer::start().await;
    server.stall();
    let acks = Arc::new(Acks::default());
    let exporter = build("otlp/ack", &config(&server.endpoint()));
    let (tx, rx) = mpsc::channel(4);
    let task = tokio::spawn(Box::new(exporter).run(rx, CancellationToken::new()));
    let (b, token) = queued("ack", 2, 1, &acks);
    tx.send(b).await.unwrap();
    // The test's own claim is settled; the exporter's copy decides.
    token.confirm();
    for _ in 0..200 {
        if server.held_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.held_count(), 1, "the request is at the backend");
    assert!(acks.seen().is_empty(), "not acknowledged while in flight");
    server.release();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acks.seen(), vec![1]);
}

#[tokio::test]
async fn a_permanent_rejection_goes_to_the_dead_letter_folder_with_its_reason() {
    let server = RecordingOtlpServer::start().await;
    server.respond_with(vec![
        Response::status(400).body("span 3 has an invalid trace id")
    ]);
    let acks = Arc::new(Acks::default());
    let id = "otlp/deadletter";
    let dir = dead_letter_dir("permanent");
    let mut c = config(&server.endpoint());
    c.dead_letter_dir = Some(dir.clone());
    let (b, token) = queued("dl", 3, 5, &acks);
    let sent: ExportTraceServiceRequest = b.request().clone();
    export(id, c, vec![b]).await;

    let kept = dead_letters(&dir);
    assert_eq!(kept.len(), 1, "one file per rejected batch");
    let (file, reason) = &kept[0];
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let (nanos, n) = name.trim_end_matches(".pb").split_once('-').unwrap();
    assert!(nanos.parse::<u128>().unwrap() > 1_600_000_000_000_000_000);
    assert_eq!(n, "1");
    let decoded = ExportTraceServiceRequest::decode(&std::fs::read(file).unwrap()[..]).unwrap();
    assert_eq!(
        decoded, sent,
        "the batch is kept as OTLP protobuf, unchanged"
    );
    assert_eq!(flatten_spans(&decoded).len(), 3);
    assert!(reason.contains("rejected (permanent error)"), "{reason}");
    assert!(reason.contains("HTTP 400 Bad Request"), "{reason}");
    assert!(
        reason.contains("span 3 has an invalid trace id"),
        "{reason}"
    );
    assert!(reason.contains(&server.endpoint()), "{reason}");
    assert!(reason.contains("spans: 3"), "{reason}");
    assert_eq!(failed(id, "permanent"), 3);
    assert_eq!(failed(id, "dead_letter_write_failed"), 0);
    // Final: the entry is acknowledged, not replayed forever.
    assert!(!token.is_abandoned());
    assert!(!token.is_failed());
    token.confirm();
    assert_eq!(acks.seen(), vec![5]);
}

#[tokio::test]
async fn exhausted_retries_are_dead_lettered_too() {
    let server = RecordingOtlpServer::start().await;
    server.set_default(Response::status(503).body("overloaded"));
    let id = "otlp/dl-exhausted";
    let dir = dead_letter_dir("exhausted");
    let mut c = config(&server.endpoint());
    c.dead_letter_dir = Some(dir.clone());
    c.retry_on_failure.max_elapsed_time = ConfigDuration::from_millis(300);
    export(id, c, vec![batch(request_with_named_spans("ex", 2))]).await;
    let kept = dead_letters(&dir);
    assert_eq!(kept.len(), 1);
    assert!(
        kept[0].1.contains("retries exhausted after"),
        "{}",
        kept[0].1
    );
    assert!(kept[0].1.contains("HTTP 503"), "{}", kept[0].1);
    assert!(kept[0].1.contains("overloaded"), "{}", kept[0].1);
    assert_eq!(failed(id, "retries_exhausted"), 2);
}

#[tokio::test]
async fn an_unwritable_dead_letter_folder_sends_the_entry_back_to_be_retried() {
    let server = RecordingOtlpServer::start().await;
    server.set_default(Response::status(400));
    let acks = Arc::new(Acks::default());
    let id = "otlp/dl-unwritable";
    // A file where the folder should be: create_dir_all fails.
    let blocker = dead_letter_dir("blocker");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a folder").unwrap();
    let mut c = config(&server.endpoint());
    c.dead_letter_dir = Some(blocker.join("sub"));
    let (b, token) = queued("lost", 2, 9, &acks);
    export(id, c, vec![b]).await;
    assert!(!token.is_abandoned(), "not parked until the next start");
    assert!(
        token.is_failed(),
        "failed: the pipeline retries, then quarantines it"
    );
    token.confirm();
    assert!(acks.seen().is_empty());
    assert_eq!(*acks.1.lock().unwrap(), vec![9]);
    assert_eq!(failed(id, "dead_letter_write_failed"), 2);
    assert_eq!(failed(id, "permanent"), 0);
}

#[tokio::test]
async fn the_hard_stop_abandons_every_batch_not_delivered() {
    let server = RecordingOtlpServer::start().await;
    server.stall();
    let acks = Arc::new(Acks::default());
    let id = "otlp/ack-hardstop";
    let dir = dead_letter_dir("hardstop");
    let mut c = config(&server.endpoint());
    c.sending_queue.num_consumers = 1;
    c.sending_queue.queue_size = 1;
    c.dead_letter_dir = Some(dir.clone());
    let exporter = build(id, &c);
    let (tx, rx) = mpsc::channel(8);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(exporter).run(rx, stop.clone()));
    let mut tokens = Vec::new();
    // One in flight, one in the sending queue, one waiting on the full queue, two in the
    // input channel.
    for seq in 1..=5 {
        let (b, t) = queued(&format!("hs{seq}"), 2, seq, &acks);
        tx.send(b).await.unwrap();
        tokens.push(t);
    }
    for _ in 0..200 {
        if server.held_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.held_count(), 1, "the first batch is in flight");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("run returns promptly after the hard stop")
        .unwrap();
    assert!(
        tokens.iter().all(DeliveryToken::is_abandoned),
        "every undelivered batch is abandoned"
    );
    tokens.into_iter().for_each(DeliveryToken::confirm);
    assert!(acks.seen().is_empty(), "nothing acknowledged: all replayed");
    assert!(acks.1.lock().unwrap().is_empty(), "abandoned, not failed");
    assert_eq!(failed(id, "shutdown"), 10);
    assert!(
        dead_letters(&dir).is_empty(),
        "a hard stop is not a dead letter"
    );
    server.release();
    drop(tx);
}

#[tokio::test]
async fn a_slow_backend_holds_at_most_max_spans_in_memory_then_everything_is_delivered() {
    // The bad day the bound is for: the backend stops answering while the pipeline keeps
    // sending. With 4 consumers and a queue of 32 batches the exporter would take 36
    // batches; `max_spans: 25` lets it hold 2 batches of 10 (a third would pass 25), so the
    // rest stays in the pipeline's channel, i.e. in the durable queue, not in memory.
    let server = RecordingOtlpServer::start().await;
    server.stall();
    let acks = Arc::new(Acks::default());
    let mut c = config(&server.endpoint());
    c.sending_queue.max_spans = 25;
    let exporter = build("otlp/max-spans", &c);
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(Box::new(exporter).run(rx, CancellationToken::new()));
    let mut sent = 0u64;
    // Offer batches until the exporter stops taking them: 2 held + 1 waiting for its share
    // of `max_spans` + 1 in the channel.
    for seq in 1..=10u64 {
        let (b, t) = queued(&format!("ms{seq}"), 10, seq, &acks);
        t.confirm();
        match tokio::time::timeout(Duration::from_millis(300), tx.send(b)).await {
            Ok(r) => {
                r.unwrap();
                sent += 1;
            }
            Err(_) => break,
        }
    }
    assert_eq!(
        sent, 4,
        "taken in: 2 held, 1 waiting for span room, 1 in the channel"
    );
    assert_eq!(server.held_count(), 2, "only max_spans worth is being sent");

    // A batch larger than max_spans still goes, alone, once the others are done.
    server.release();
    let (big, t) = queued("big", 40, 11, &acks);
    t.confirm();
    tx.send(big).await.unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acks.seen(), vec![1, 2, 3, 4, 11]);
    assert_eq!(server.spans().len(), 80);
}
