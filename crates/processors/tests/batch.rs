//! The `batch` processor: size trigger, max-size split, timeout (with paused tokio time),
//! per-context buffers, flush, pass-through and metrics.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracecast_core::proto::common::v1::InstrumentationScope;
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecast_core::{
    metrics, BatchContext, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch,
};
use tracecast_processors::attrs;
use tracecast_processors::batch::{BatchProcessor, BatchProcessorConfig};

fn request(n: usize, tag: &str) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attrs::kv("service.name", attrs::string(tag))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "gateway".into(),
                    ..Default::default()
                }),
                spans: (0..n)
                    .map(|i| Span {
                        name: format!("{tag}-{i}"),
                        ..Default::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn ctx(key: Option<&str>) -> BatchContext {
    BatchContext {
        api_key_name: key.map(Arc::from),
        ..BatchContext::new("otlp")
    }
}

fn batch(n: usize, tag: &str, key: Option<&str>) -> TraceBatch {
    let req = request(n, tag);
    let bytes = TraceBatch::new(ctx(key), req.clone(), None).to_protobuf();
    TraceBatch::new(ctx(key), req, Some(bytes))
}

fn processor(id: &str, size: usize, max: usize, timeout_ms: u64) -> BatchProcessor {
    BatchProcessor::new(
        ComponentId::parse(id).unwrap(),
        BatchProcessorConfig {
            send_batch_size: size,
            send_batch_max_size: max,
            timeout: tracecast_config::Duration::from_millis(timeout_ms),
        },
    )
}

fn counts(out: &[TraceBatch]) -> Vec<usize> {
    out.iter().map(|b| b.span_count()).collect()
}

#[tokio::test(start_paused = true)]
async fn sends_when_the_size_trigger_is_reached() {
    let mut p = processor("batch/size", 10, 0, 200);
    let mut out = Vec::new();
    p.process(batch(4, "a", None), &mut out);
    p.process(batch(4, "b", None), &mut out);
    assert!(out.is_empty());
    assert_eq!(p.held_spans(), 8);
    p.process(batch(4, "c", None), &mut out);
    assert_eq!(counts(&out), vec![12], "the trigger is not a cap");
    let names: Vec<String> = out[0]
        .request()
        .resource_spans
        .iter()
        .map(|rs| rs.scope_spans[0].spans[0].name.clone())
        .collect();
    assert_eq!(names, vec!["a-0", "b-0", "c-0"], "order kept");
    assert_eq!(p.held_spans(), 0);
    assert_eq!(p.next_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn splits_at_send_batch_max_size_keeping_resource_and_scope() {
    let mut p = processor("batch/split", 10, 10, 200);
    let mut out = Vec::new();
    p.process(batch(25, "big", None), &mut out);
    assert_eq!(counts(&out), vec![10, 10]);
    assert_eq!(p.held_spans(), 5);
    for b in &out {
        let rs = &b.request().resource_spans[0];
        assert_eq!(rs.resource, request(1, "big").resource_spans[0].resource);
        assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "gateway");
    }
    assert_eq!(
        out[1].request().resource_spans[0].scope_spans[0].spans[0].name,
        "big-10"
    );
    p.flush(&mut out);
    assert_eq!(counts(&out), vec![10, 10, 5]);
    assert_eq!(
        out[2].request().resource_spans[0].scope_spans[0].spans[0].name,
        "big-20"
    );
}

#[tokio::test(start_paused = true)]
async fn sends_after_the_timeout() {
    let mut p = processor("batch/timeout", 100, 0, 200);
    let mut out = Vec::new();
    let start = Instant::now();
    p.process(batch(3, "a", None), &mut out);
    assert_eq!(p.next_deadline(), Some(start + Duration::from_millis(200)));
    tokio::time::advance(Duration::from_millis(50)).await;
    p.process(batch(2, "b", None), &mut out);
    assert_eq!(
        p.next_deadline(),
        Some(start + Duration::from_millis(200)),
        "timer starts at the first span"
    );
    tokio::time::advance(Duration::from_millis(149)).await;
    p.on_deadline(Instant::now(), &mut out);
    assert!(out.is_empty(), "not due yet");
    tokio::time::sleep_until(p.next_deadline().unwrap()).await;
    p.on_deadline(Instant::now(), &mut out);
    assert_eq!(counts(&out), vec![5]);
    assert_eq!(p.next_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn keeps_one_buffer_per_context() {
    let mut p = processor("batch/ctx", 100, 0, 200);
    let mut out = Vec::new();
    p.process(batch(2, "a", Some("team-a")), &mut out);
    p.process(batch(3, "b", Some("team-b")), &mut out);
    p.process(batch(1, "c", Some("team-a")), &mut out);
    p.process(batch(1, "d", None), &mut out);
    tokio::time::advance(Duration::from_millis(200)).await;
    p.on_deadline(Instant::now(), &mut out);
    let got: Vec<(Option<&str>, usize)> = out
        .iter()
        .map(|b| (b.context().api_key_name.as_deref(), b.span_count()))
        .collect();
    assert_eq!(
        got,
        vec![(Some("team-a"), 3), (Some("team-b"), 3), (None, 1)]
    );
}

#[tokio::test(start_paused = true)]
async fn flush_sends_everything_held() {
    let mut p = processor("batch/flush", 100, 0, 200);
    let mut out = Vec::new();
    p.process(batch(2, "a", Some("k1")), &mut out);
    p.process(batch(2, "b", Some("k2")), &mut out);
    p.flush(&mut out);
    assert_eq!(counts(&out), vec![2, 2]);
    assert_eq!(p.held_spans(), 0);
    assert_eq!(p.next_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_into_an_empty_buffer_passes_through_untouched() {
    let mut p = processor("batch/pass", 10, 0, 200);
    let mut out = Vec::new();
    p.process(batch(10, "a", None), &mut out);
    assert_eq!(counts(&out), vec![10]);
    assert!(out[0].received_protobuf().is_some());
}

#[tokio::test(start_paused = true)]
async fn zero_timeout_sends_at_once_split_by_max() {
    let mut p = processor("batch/zero", 5, 5, 0);
    let mut out = Vec::new();
    p.process(batch(2, "a", None), &mut out);
    p.process(batch(12, "b", None), &mut out);
    assert_eq!(counts(&out), vec![2, 5, 5, 2]);
    assert_eq!(p.held_spans(), 0);
}

#[tokio::test(start_paused = true)]
async fn spans_in_and_out_are_counted() {
    let mut p = processor("batch/metrics", 4, 4, 200);
    let mut out = Vec::new();
    p.process(batch(7, "a", None), &mut out);
    p.process(batch(6, "b", None), &mut out);
    p.flush(&mut out);
    let labels = metrics::component("batch/metrics");
    assert_eq!(metrics::PROCESSOR_SPANS_IN.get_or_create(&labels).get(), 13);
    assert_eq!(
        metrics::PROCESSOR_SPANS_OUT.get_or_create(&labels).get(),
        13
    );
    assert_eq!(out.iter().map(|b| b.span_count()).sum::<usize>(), 13);
    assert!(out.iter().all(|b| b.span_count() <= 4));
}

/// Records which queue entries were acknowledged, and which failed (a claim dropped
/// unsettled), as the durable queue would.
#[derive(Default)]
struct Acks(std::sync::Mutex<Vec<u64>>, std::sync::Mutex<Vec<u64>>);

impl tracecast_core::ack::AckSink for Acks {
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
    fn failed(&self) -> Vec<u64> {
        let mut v = self.1.lock().unwrap().clone();
        v.sort_unstable();
        v
    }
}

fn tokened(n: usize, tag: &str, seq: u64, acks: &Arc<Acks>) -> TraceBatch {
    use tracecast_core::ack::DeliveryToken;
    batch(n, tag, None).with_tokens(vec![DeliveryToken::new(seq, acks.clone())])
}

#[tokio::test(start_paused = true)]
async fn a_merged_batch_carries_every_token_and_acks_only_when_confirmed() {
    let acks = Arc::new(Acks::default());
    let mut p = processor("batch/tokens", 10, 0, 200);
    let mut out = Vec::new();
    p.process(tokened(4, "a", 1, &acks), &mut out);
    p.process(tokened(4, "b", 2, &acks), &mut out);
    assert!(out.is_empty());
    assert!(acks.seen().is_empty(), "held spans keep their entries open");
    p.process(tokened(4, "c", 3, &acks), &mut out);
    assert_eq!(counts(&out), vec![12]);
    let seqs: Vec<u64> = out[0].tokens().iter().map(|t| t.seq()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert!(acks.seen().is_empty(), "the merged batch is still alive");
    assert!(
        acks.failed().is_empty(),
        "merging settles nothing by accident"
    );
    // A copy (fan-out to two exporters) keeps the entries open until both are confirmed.
    let copy = out[0].clone();
    out.pop().unwrap().confirm();
    assert!(acks.seen().is_empty());
    copy.confirm();
    assert_eq!(acks.seen(), vec![1, 2, 3]);
    assert!(acks.failed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_copy_dropped_unconfirmed_fails_its_entries() {
    let acks = Arc::new(Acks::default());
    let mut p = processor("batch/tokens-drop", 4, 0, 200);
    let mut out = Vec::new();
    p.process(tokened(4, "a", 1, &acks), &mut out);
    let copy = out[0].clone();
    out.pop().unwrap().confirm();
    drop(copy);
    assert!(acks.seen().is_empty(), "never delivered by a drop");
    assert_eq!(acks.failed(), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn split_parts_all_carry_the_token_and_the_rest_keeps_it() {
    let acks = Arc::new(Acks::default());
    let mut p = processor("batch/token-split", 10, 10, 200);
    let mut out = Vec::new();
    p.process(tokened(25, "big", 7, &acks), &mut out);
    assert_eq!(counts(&out), vec![10, 10]);
    assert!(out
        .iter()
        .all(|b| b.tokens().len() == 1 && b.tokens()[0].seq() == 7));
    out.drain(..).for_each(TraceBatch::confirm);
    assert!(acks.seen().is_empty(), "5 spans still held in the buffer");
    p.flush(&mut out);
    assert_eq!(counts(&out), vec![5]);
    assert_eq!(out[0].tokens()[0].seq(), 7);
    assert!(acks.seen().is_empty());
    out.drain(..).for_each(TraceBatch::confirm);
    assert_eq!(acks.seen(), vec![7]);
    assert!(acks.failed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn timeout_and_zero_timeout_sends_carry_tokens_and_abandon_reaches_the_entry() {
    let acks = Arc::new(Acks::default());
    let mut p = processor("batch/token-timeout", 100, 0, 200);
    let mut out = Vec::new();
    p.process(tokened(3, "a", 1, &acks), &mut out);
    tokio::time::advance(Duration::from_millis(200)).await;
    p.on_deadline(Instant::now(), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].tokens()[0].seq(), 1);
    // An exporter giving up at the hard stop: the entry must stay queued.
    out.pop().unwrap().abandon();
    assert!(acks.seen().is_empty(), "abandoned: not acknowledged");
    assert!(
        acks.failed().is_empty(),
        "abandoned: not retried now either"
    );

    let mut z = processor("batch/token-zero", 5, 5, 0);
    z.process(tokened(12, "z", 2, &acks), &mut out);
    assert_eq!(counts(&out), vec![5, 5, 2]);
    assert!(out.iter().all(|b| b.tokens()[0].seq() == 2));
    let last = out.pop().unwrap();
    out.drain(..).for_each(TraceBatch::confirm);
    assert!(acks.seen().is_empty());
    last.confirm();
    assert_eq!(acks.seen(), vec![2]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_batch_is_delivered_at_once() {
    let acks = Arc::new(Acks::default());
    let mut p = processor("batch/token-empty", 10, 0, 200);
    let mut out = Vec::new();
    p.process(tokened(0, "none", 4, &acks), &mut out);
    assert!(out.is_empty());
    assert_eq!(acks.seen(), vec![4]);
}

/// The merged request's protobuf, decoded: what an exporter would send.
fn sent(batch: &TraceBatch) -> ExportTraceServiceRequest {
    use prost::Message as _;
    ExportTraceServiceRequest::decode(batch.to_protobuf()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_merged_buffer_carries_its_batches_received_bytes_joined() {
    // By size trigger, by timeout and by flush: the bytes sent are the received ones end
    // to end, and they decode to exactly the merged request.
    let mut p = processor("batch/bytes", 10, 0, 200);
    let mut out = Vec::new();
    for tag in ["a", "b", "c"] {
        p.process(batch(4, tag, None), &mut out);
    }
    let joined: Vec<u8> = ["a", "b", "c"]
        .iter()
        .flat_map(|t| batch(4, t, None).to_protobuf().to_vec())
        .collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].received_protobuf().unwrap()[..], joined[..]);
    assert_eq!(&sent(&out[0]), out[0].request());
    assert_eq!(out[0].request().resource_spans.len(), 3);

    let mut out = Vec::new();
    p.process(batch(3, "d", None), &mut out);
    p.process(batch(3, "e", None), &mut out);
    tokio::time::advance(Duration::from_millis(201)).await;
    p.on_deadline(Instant::now(), &mut out);
    assert_eq!(counts(&out), vec![6]);
    assert!(out[0].received_protobuf().is_some());
    assert_eq!(&sent(&out[0]), out[0].request());

    let mut out = Vec::new();
    p.process(batch(2, "f", None), &mut out);
    p.flush(&mut out);
    assert_eq!(counts(&out), vec![2]);
    assert!(out[0].received_protobuf().is_some());
    assert_eq!(&sent(&out[0]), out[0].request());
}

#[tokio::test(start_paused = true)]
async fn joined_bytes_are_dropped_when_a_part_had_none_or_the_buffer_is_split() {
    // One merged batch without received bytes (a processor changed it): encoded afresh.
    let mut p = processor("batch/nobytes", 10, 0, 200);
    let mut out = Vec::new();
    p.process(batch(4, "a", None), &mut out);
    p.process(TraceBatch::new(ctx(None), request(4, "b"), None), &mut out);
    p.process(batch(4, "c", None), &mut out);
    assert_eq!(counts(&out), vec![12]);
    assert!(out[0].received_protobuf().is_none());
    assert_eq!(&sent(&out[0]), out[0].request());

    // A send_batch_max_size split: no part (nor what stays) may carry the whole's bytes.
    let mut p = processor("batch/splitbytes", 10, 5, 200);
    let mut out = Vec::new();
    p.process(batch(4, "a", None), &mut out);
    p.process(batch(4, "b", None), &mut out);
    p.process(batch(4, "c", None), &mut out);
    p.flush(&mut out);
    assert_eq!(counts(&out).iter().sum::<usize>(), 12);
    for b in &out {
        assert!(b.received_protobuf().is_none());
        assert_eq!(&sent(b), b.request());
    }
}
