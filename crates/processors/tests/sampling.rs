//! The `sampling` processor: the kept share, agreement with the OpenTelemetry
//! consistent-probability rule, the same decisions whatever the batching, whole sessions,
//! where the ratio is recorded, and hostile ids and trace states.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tracecast_core::ack::{AckSink, DeliveryToken};
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecast_core::{metrics, ComponentId, ExportTraceServiceRequest, Processor, TraceBatch};
use tracecast_processors::attrs;
use tracecast_processors::sampling::{tracestate, SampleBy, RATIO_ATTRIBUTE};
use tracecast_processors::{SamplingProcessor, SamplingProcessorConfig};

fn sampler(id: &str, ratio: f64, by: SampleBy) -> SamplingProcessor {
    SamplingProcessor::new(
        ComponentId::parse(id).unwrap(),
        &SamplingProcessorConfig { ratio, by },
    )
}

/// A trace id from a counter, spread like real random ids (SHA-256 of the counter).
fn trace_id(i: u32) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(i.to_be_bytes())[..16].to_vec()
}

fn span(trace: &[u8], n: u8, parent: u8) -> Span {
    Span {
        trace_id: trace.to_vec(),
        span_id: vec![n + 1; 8],
        parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
        name: format!("s{n}"),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn run(p: &mut SamplingProcessor, req: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    p.process(support::batch(req), &mut out);
    out.iter()
        .flat_map(|b| {
            support::spans(b.request())
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn kept_traces(spans: &[Span]) -> BTreeSet<Vec<u8>> {
    spans.iter().map(|s| s.trace_id.clone()).collect()
}

#[test]
fn ten_thousand_traces_at_a_tenth_keep_a_tenth() {
    let mut p = sampler("sampling", 0.1, SampleBy::TraceId);
    let spans: Vec<Span> = (0..10_000).map(|i| span(&trace_id(i), 0, 0)).collect();
    let kept = run(&mut p, request(spans)).len();
    let share = kept as f64 / 10_000.0;
    assert!((0.09..=0.11).contains(&share), "kept share {share}");
}

#[test]
fn decisions_follow_the_consistent_probability_rule() {
    let t = tracestate::threshold(0.25);
    assert_eq!(t, 0xc0_0000_0000_0000);
    let p = sampler("sampling", 0.25, SampleBy::TraceId);
    // Randomness is the trace id's last 7 bytes: kept exactly when >= the threshold.
    let id = |r: u64| {
        let mut v = vec![0xffu8; 9];
        v.extend_from_slice(&r.to_be_bytes()[1..]);
        v
    };
    assert!(p.keeps_trace(&id(t), ""));
    assert!(!p.keeps_trace(&id(t - 1), ""));
    assert!(p.keeps_trace(&id(tracestate::MAX - 1), ""));
    assert!(!p.keeps_trace(&id(0), ""));
    // An explicit `rv` wins over the trace id's bits.
    assert!(p.keeps_trace(&id(0), "ot=rv:c0000000000000"));
    assert!(!p.keeps_trace(&id(t), "ot=rv:bfffffffffffff"));
    // Ratio 1 keeps everything.
    assert!(sampler("sampling", 1.0, SampleBy::TraceId).keeps_trace(&id(0), ""));
}

/// Consistent sampling is nested: what a lower ratio keeps, every higher ratio keeps too, so
/// raising a destination's ratio on reload never loses a trace it was already getting, and a
/// backend sampled at 0.1 holds a subset of one sampled at 0.25.
#[test]
fn a_higher_ratio_keeps_a_superset() {
    let ratios = [0.0001, 0.01, 0.1, 0.25, 0.5, 0.9, 1.0];
    let samplers: Vec<SamplingProcessor> = ratios
        .iter()
        .map(|r| sampler("sampling", *r, SampleBy::TraceId))
        .collect();
    for i in 0..20_000 {
        let t = trace_id(i);
        let kept: Vec<bool> = samplers.iter().map(|p| p.keeps_trace(&t, "")).collect();
        assert!(kept.windows(2).all(|w| !w[0] || w[1]), "{kept:?}");
        let session = format!("session-{i}");
        let kept: Vec<bool> = samplers.iter().map(|p| p.keeps_key(&session)).collect();
        assert!(kept.windows(2).all(|w| !w[0] || w[1]), "{kept:?}");
    }
}

#[test]
fn kept_spans_record_the_ratio_and_the_threshold() {
    let mut p = sampler("sampling", 0.25, SampleBy::TraceId);
    let trace = (0..)
        .map(trace_id)
        .find(|id| p.keeps_trace(id, ""))
        .unwrap();
    let mut s = span(&trace, 0, 0);
    s.trace_state = "vendor=1".into();
    let kept = run(&mut p, request(vec![s]));
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].trace_state, "ot=th:c,vendor=1");
    assert_eq!(
        attrs::get(&kept[0].attributes, RATIO_ATTRIBUTE).and_then(|v| v.value.clone()),
        Some(Value::DoubleValue(0.25))
    );

    // An upstream sampler at 1/8 already recorded a larger threshold: it stays, and so
    // does its smaller ratio.
    let trace = (0..)
        .map(trace_id)
        .find(|id| tracestate::trace_id_randomness(id) >= 0xe0_0000_0000_0000)
        .unwrap();
    let mut s = span(&trace, 0, 0);
    s.trace_state = "ot=th:e".into();
    attrs::set(
        &mut s.attributes,
        RATIO_ATTRIBUTE,
        tracecast_core::proto::common::v1::AnyValue {
            value: Some(Value::DoubleValue(0.125)),
        },
    );
    let kept = run(&mut p, request(vec![s]));
    assert_eq!(kept[0].trace_state, "ot=th:e");
    assert_eq!(
        attrs::get(&kept[0].attributes, RATIO_ATTRIBUTE).and_then(|v| v.value.clone()),
        Some(Value::DoubleValue(0.125))
    );
}

#[test]
fn the_kept_set_does_not_depend_on_batching_or_instance() {
    let traces: Vec<Vec<u8>> = (0..400).map(trace_id).collect();
    let all: Vec<Span> = traces
        .iter()
        .flat_map(|t| [span(t, 0, 0), span(t, 1, 1), span(t, 2, 1)])
        .collect();
    let mut one = sampler("sampling/a", 0.3, SampleBy::TraceId);
    let whole = run(&mut one, request(all.clone()));
    // Every span of a kept trace is kept.
    assert_eq!(whole.len(), kept_traces(&whole).len() * 3);
    // Another instance, spans split over many requests in another order.
    let mut two = sampler("sampling/b", 0.3, SampleBy::TraceId);
    let mut split = Vec::new();
    for chunk in all.iter().rev().cloned().collect::<Vec<_>>().chunks(7) {
        split.extend(run(&mut two, request(chunk.to_vec())));
    }
    assert_eq!(kept_traces(&whole), kept_traces(&split));
    assert_eq!(whole.len(), split.len());
}

#[test]
fn by_session_keeps_or_drops_whole_sessions() {
    let mut p = sampler("sampling", 0.5, SampleBy::SessionId);
    // 200 sessions of 3 traces each; the session is on the root span only (as the gateway
    // sends it, before `metadata`) or on every span (after it).
    let mut spans = Vec::new();
    let mut session_of = std::collections::HashMap::new();
    for i in 0..600u32 {
        let t = trace_id(i);
        let session = format!("session-{}", i % 200);
        let mut root = span(&t, 0, 0);
        let key = if i % 2 == 0 {
            "session_id"
        } else {
            "session.id"
        };
        root.attributes
            .push(attrs::kv(key, attrs::string(session.clone())));
        spans.push(root);
        let mut child = span(&t, 1, 1);
        if i % 3 == 0 {
            child
                .attributes
                .push(attrs::kv("session.id", attrs::string(session.clone())));
        }
        spans.push(child);
        session_of.insert(t, session);
    }
    let kept = run(&mut p, request(spans));
    let kept_sessions: BTreeSet<&String> = kept.iter().map(|s| &session_of[&s.trace_id]).collect();
    assert!(
        (60..140).contains(&kept_sessions.len()),
        "{}",
        kept_sessions.len()
    );
    // Whole sessions: every trace (both spans) of a kept session, nothing of the others.
    assert_eq!(kept.len(), kept_sessions.len() * 3 * 2);
    for s in &kept {
        assert!(p.keeps_key(&session_of[&s.trace_id]));
        // Session decisions write no `th`: it would claim a trace-id decision.
        assert!(s.trace_state.is_empty());
        assert!(attrs::get(&s.attributes, RATIO_ATTRIBUTE).is_some());
    }
}

#[test]
fn a_request_without_the_key_falls_back_to_the_trace_id() {
    let mut by_user = sampler("sampling", 0.5, SampleBy::UserId);
    let by_trace = sampler("sampling", 0.5, SampleBy::TraceId);
    let spans: Vec<Span> = (0..300).map(|i| span(&trace_id(i), 0, 0)).collect();
    let kept = run(&mut by_user, request(spans));
    for i in 0..300 {
        let t = trace_id(i);
        assert_eq!(
            kept_traces(&kept).contains(&t),
            by_trace.keeps_trace(&t, "")
        );
    }
    // Those decisions were made on the trace's randomness, so they carry `th`.
    assert!(kept.iter().all(|s| s.trace_state == "ot=th:8"));
}

/// Records the queue entries acknowledged and failed, as the durable queue would.
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

#[test]
fn drops_are_counted_and_an_emptied_batch_is_settled() {
    let mut p = sampler("sampling/counted", 0.0001, SampleBy::TraceId);
    let spans: Vec<Span> = (0..50)
        .map(trace_id)
        .filter(|t| !p.keeps_trace(t, ""))
        .map(|t| span(&t, 0, 0))
        .collect();
    let n = spans.len() as u64;
    let acks = Arc::new(Acks::default());
    let batch =
        support::batch(request(spans)).with_tokens(vec![DeliveryToken::new(7, acks.clone())]);
    let mut out: Vec<TraceBatch> = Vec::new();
    p.process(batch, &mut out);
    assert!(out.is_empty(), "nothing left: no empty batch goes on");
    // Dropping on purpose is this copy's final place: the entry counts as delivered, it is
    // not replayed.
    assert_eq!(*acks.0.lock().unwrap(), vec![7]);
    assert!(acks.1.lock().unwrap().is_empty());
    let dropped = metrics::PROCESSOR_SPANS_DROPPED
        .get_or_create(&metrics::reason("sampling/counted", "sampled_out"))
        .get();
    assert_eq!(dropped, n);
}

/// Ids of every length, trace states that are garbage or huge: decided without a panic.
#[test]
fn hostile_ids_and_trace_states() {
    let mut p = sampler("sampling", 0.5, SampleBy::TraceId);
    let mut spans = Vec::new();
    for (i, len) in [0usize, 1, 7, 15, 17, 64, 300].into_iter().enumerate() {
        let mut s = span(&vec![i as u8 + 1; len], 0, 0);
        s.trace_state = match i % 4 {
            0 => "ot=rv:;th:;;;,=,ot=".into(),
            1 => "ot=th:zz;rv:ffffffffffffffffff".into(),
            2 => ",".repeat(100_000),
            _ => "ot=th:ffffffffffffff;rv:00000000000000".into(),
        };
        spans.push(s);
    }
    let n = spans.len();
    let kept = run(&mut p, request(spans.clone()));
    assert!(kept.len() <= n);
    // Pure: a second run decides the same.
    assert_eq!(
        kept_traces(&run(&mut p, request(spans))),
        kept_traces(&kept)
    );
}
