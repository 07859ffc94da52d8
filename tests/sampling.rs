//! The `sampling` processor through the real binary: 10,000 traces at ratio 0.1 keep a
//! tenth, exactly the traces the OpenTelemetry consistent-probability rule keeps; the same
//! set after a restart, on a second instance with the same config, and when each trace's
//! spans arrive split over several requests; kept spans carry `sampling.ratio` and
//! `ot=th`; `by: session_id` keeps or drops whole sessions; a reload to a higher ratio keeps
//! a superset; trace ids made by the Python SDK are sampled by the same rule.

mod destinations;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use destinations::{
    attr, consistent_keep, exporter_sent, llm_trace, post, processor_dropped, processor_in,
    wait_for,
};
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::trace::v1::Span;
use tracecast_tests::fixtures::{child_span, span};
use tracecast_tests::{free_port, local, Daemon, Exporter, RecordingOtlpServer, TestConfig};

const TRACES: usize = 10_000;
const RATIO: f64 = 0.1;

/// A tracecast with `processors` (`(id, body)`) in one pipeline to `backend`; returns the
/// daemon, its receiver and its admin address.
fn start(
    dir: &Path,
    name: &str,
    processors: &[(&str, &str)],
    backend: &RecordingOtlpServer,
) -> (Daemon, SocketAddr, SocketAddr) {
    let (port, admin) = (free_port(), free_port());
    let mut cfg = TestConfig::new(port)
        .exporter(Exporter::otlp("otlp/backend", backend.endpoint()).protobuf())
        .queue_dir(dir.join(format!("queue-{name}")))
        .admin_port(admin);
    for (id, body) in processors {
        cfg = cfg.processor_with(id, *body);
    }
    let daemon = Daemon::run_config(dir, name, &cfg.yaml(), &[], local(port));
    (daemon, local(port), local(admin))
}

/// (trace id, span id) of every span.
fn ids(spans: &[Span]) -> BTreeSet<(Vec<u8>, Vec<u8>)> {
    spans
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect()
}

/// Sends `spans` in requests of `per_request` spans.
async fn send(addr: SocketAddr, spans: &[Span], per_request: usize) {
    let client = reqwest::Client::new();
    for chunk in spans.chunks(per_request) {
        post(&client, addr, chunk.to_vec(), None).await;
    }
}

/// Waits until the daemon took `total` spans and exported `kept`; returns the spans the
/// backend got since `from`.
async fn settle(
    daemon: &Daemon,
    admin: SocketAddr,
    backend: &RecordingOtlpServer,
    from: usize,
    total: usize,
    kept: usize,
) -> Vec<Span> {
    wait_for(
        admin,
        daemon,
        &[
            (&processor_in("sampling"), total as u64),
            (
                &processor_dropped("sampling", "sampled_out"),
                (total - kept) as u64,
            ),
            (&exporter_sent("otlp/backend"), kept as u64),
        ],
    )
    .await;
    let spans = backend.spans();
    assert_eq!(spans.len() - from, kept, "backend got more than exported");
    spans[from..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenth_kept_and_the_same_tenth_after_restart_on_another_instance_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let sampling = [("sampling", "{ratio: 0.1}")];

    // 10,000 traces of a root and a child.
    let roots: Vec<Span> = (0..TRACES).map(|i| span(&format!("root-{i}"))).collect();
    let children: Vec<Span> = roots.iter().map(|r| child_span(r, "child")).collect();
    let whole: Vec<Span> = roots
        .iter()
        .zip(&children)
        .flat_map(|(r, c)| [r.clone(), c.clone()])
        .collect();
    let expected: BTreeSet<Vec<u8>> = roots
        .iter()
        .map(|r| r.trace_id.clone())
        .filter(|t| consistent_keep(t, RATIO))
        .collect();
    let kept_spans = expected.len() * 2;

    // 1. Whole traces, 500 per request.
    let (daemon, addr, admin) = start(dir.path(), "first", &sampling, &backend);
    send(addr, &whole, 1000).await;
    let first = settle(&daemon, admin, &backend, 0, whole.len(), kept_spans).await;
    let kept_traces: BTreeSet<Vec<u8>> = first.iter().map(|s| s.trace_id.clone()).collect();
    let share = kept_traces.len() as f64 / TRACES as f64;
    assert!((0.09..=0.11).contains(&share), "kept share {share}");
    assert_eq!(
        kept_traces, expected,
        "the consistent-probability rule's set"
    );
    for s in &first {
        assert_eq!(attr(s, "sampling.ratio"), Some(&Value::DoubleValue(RATIO)));
        assert_eq!(s.trace_state, "ot=th:e6666666666666");
    }

    // 2. After a restart, each trace split over two requests (roots first, then children,
    //    in other chunk sizes).
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    let (daemon, addr, admin) = start(dir.path(), "first", &sampling, &backend);
    send(addr, &roots, 700).await;
    send(addr, &children, 300).await;
    let restarted = settle(
        &daemon,
        admin,
        &backend,
        first.len(),
        whole.len(),
        kept_spans,
    )
    .await;
    assert_eq!(ids(&restarted), ids(&first));
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    // 3. A second instance with the same config, traffic in reverse order.
    let other_backend = RecordingOtlpServer::start().await;
    let (other, addr, admin) = start(dir.path(), "second", &sampling, &other_backend);
    let reversed: Vec<Span> = whole.iter().rev().cloned().collect();
    send(addr, &reversed, 333).await;
    let second = settle(&other, admin, &other_backend, 0, whole.len(), kept_spans).await;
    assert_eq!(ids(&second), ids(&first));
    let (code, log) = other.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_session_keeps_or_drops_whole_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (daemon, addr, admin) = start(
        dir.path(),
        "sessions",
        &[
            ("metadata", "{}"),
            ("sampling", "{ratio: 0.5, by: session_id}"),
        ],
        &backend,
    );
    // 100 sessions of 4 requests (traces) each, interleaved so that every request carries
    // traces of several sessions; the gateway puts `session_id` on the root span only.
    let mut spans = Vec::new();
    let mut session_of = BTreeMap::new();
    for turn in 0..4 {
        for s in 0..100 {
            let session = format!("session-{s}");
            let trace = llm_trace(
                &format!("user-{s}"),
                &session,
                "openai/gpt-4o",
                &format!("turn {turn}"),
                0.01,
            );
            session_of.insert(trace[0].trace_id.clone(), session);
            spans.extend(trace);
        }
    }
    let client = reqwest::Client::new();
    for chunk in spans.chunks(3 * 7) {
        post(&client, addr, chunk.to_vec(), None).await;
    }
    // Everything in, then everything the sampler let out exported.
    wait_for(
        admin,
        &daemon,
        &[(&processor_in("sampling"), spans.len() as u64)],
    )
    .await;
    let text = destinations::scrape(admin).await;
    let out_series = "tracecast_processor_outgoing_spans_total{component=\"sampling\"}";
    let kept = destinations::sample(&text, out_series).expect("outgoing spans");
    wait_for(admin, &daemon, &[(&exporter_sent("otlp/backend"), kept)]).await;
    let received = backend.spans();
    assert_eq!(received.len() as u64, kept);

    let mut per_session: BTreeMap<&String, usize> = BTreeMap::new();
    for s in &received {
        *per_session.entry(&session_of[&s.trace_id]).or_default() += 1;
        assert_eq!(attr(s, "sampling.ratio"), Some(&Value::DoubleValue(0.5)));
        assert!(
            matches!(attr(s, "session.id"), Some(Value::StringValue(v)) if *v == session_of[&s.trace_id])
        );
        assert!(s.trace_state.is_empty(), "a session decision writes no th");
    }
    assert!(
        per_session.values().all(|n| *n == 12),
        "whole sessions (4 traces x 3 spans): {per_session:?}"
    );
    assert!(
        (25..=75).contains(&per_session.len()),
        "about half of 100 sessions kept: {}",
        per_session.len()
    );
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

/// A reload that raises the ratio keeps every trace the lower one kept (consistent
/// sampling is nested), and each ratio keeps exactly the rule's set before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_a_higher_ratio_keeps_a_superset() {
    let dir = tempfile::tempdir().unwrap();
    let backend = RecordingOtlpServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = |ratio: f64| {
        TestConfig::new(port)
            .processor_with("sampling", format!("{{ratio: {ratio}}}"))
            .exporter(Exporter::otlp("otlp/backend", backend.endpoint()).protobuf())
            .queue_dir(dir.path().join("queue"))
            .admin_port(admin)
            .yaml()
    };
    let daemon = Daemon::run_config(dir.path(), "reload", &yaml(0.1), &[], local(port));
    let traces: Vec<Span> = (0..2000).map(|i| span(&format!("t{i}"))).collect();
    let expected = |ratio: f64| -> BTreeSet<Vec<u8>> {
        traces
            .iter()
            .map(|s| s.trace_id.clone())
            .filter(|t| consistent_keep(t, ratio))
            .collect()
    };
    let (low, high) = (expected(0.1), expected(0.25));
    assert!(low.is_subset(&high) && low.len() < high.len());

    send(local(port), &traces, 250).await;
    let first = settle(&daemon, local(admin), &backend, 0, 2000, low.len()).await;
    assert_eq!(
        first
            .iter()
            .map(|s| s.trace_id.clone())
            .collect::<BTreeSet<_>>(),
        low
    );

    std::fs::write(dir.path().join("reload.yaml"), yaml(0.25)).unwrap();
    daemon.signal("HUP");
    let reloaded = "tracecast_config_reloads_total{component=\"service\",reason=\"ok\"}";
    wait_for(local(admin), &daemon, &[(reloaded, 1)]).await;

    send(local(port), &traces, 250).await;
    // Counters are the process's: cumulative over both rounds.
    wait_for(
        local(admin),
        &daemon,
        &[
            (&processor_in("sampling"), 4000),
            (
                &exporter_sent("otlp/backend"),
                (low.len() + high.len()) as u64,
            ),
        ],
    )
    .await;
    let second = backend.spans()[first.len()..].to_vec();
    assert_eq!(second.len(), high.len());
    assert_eq!(
        second
            .iter()
            .map(|s| s.trace_id.clone())
            .collect::<BTreeSet<_>>(),
        high
    );
    assert!(second.iter().all(
        |s| attr(s, "sampling.ratio") == Some(&Value::DoubleValue(0.25))
            && s.trace_state == "ot=th:c"
    ));
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

/// Traces made by a real client (the OpenTelemetry Python SDK's own trace ids), sampled at
/// 0.5 in one pipeline and passed whole in another: the sampled destination gets exactly the
/// traces of the other whose ids the consistent-probability rule keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_trace_ids_are_sampled_by_the_consistent_rule() {
    let dir = tempfile::tempdir().unwrap();
    let sampled = RecordingOtlpServer::start().await;
    let everything = RecordingOtlpServer::start().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = TestConfig::new(port)
        .processor_with("sampling", "{ratio: 0.5}")
        .exporter(Exporter::otlp("otlp/sampled", sampled.endpoint()).protobuf())
        .exporter(Exporter::otlp("otlp/everything", everything.endpoint()).protobuf())
        .pipeline("traces/sampled", &["sampling"], &["otlp/sampled"])
        .pipeline("traces/everything", &[], &["otlp/everything"])
        .queue_dir(dir.path().join("queue"))
        .admin_port(admin)
        .yaml();
    let daemon = Daemon::run_config(dir.path(), "python", &yaml, &[], local(port));
    let url = format!("http://127.0.0.1:{port}/v1/traces");
    let out =
        tracecast_tests::run_python_script("send_spans.py", vec![url, "400".into(), "py".into()])
            .await;
    assert!(
        out.status.success(),
        "python sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        local(admin),
        &daemon,
        &[
            (&processor_in("sampling"), 400),
            (&exporter_sent("otlp/everything"), 400),
        ],
    )
    .await;
    let all: BTreeSet<Vec<u8>> = everything.spans().into_iter().map(|s| s.trace_id).collect();
    assert_eq!(all.len(), 400, "one trace per span");
    let expected: BTreeSet<Vec<u8>> = all
        .iter()
        .filter(|t| consistent_keep(t, 0.5))
        .cloned()
        .collect();
    wait_for(
        local(admin),
        &daemon,
        &[(&exporter_sent("otlp/sampled"), expected.len() as u64)],
    )
    .await;
    let kept: BTreeSet<Vec<u8>> = sampled.spans().into_iter().map(|s| s.trace_id).collect();
    assert_eq!(kept, expected);
    let (code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}
