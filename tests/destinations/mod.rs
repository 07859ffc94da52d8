//! Helpers shared by the per-destination tests (`sampling.rs`, `filter.rs`,
//! `destinations_fanout.rs`): scraping the daemon's `/metrics` to know when every span went
//! through, an independent implementation of the consistent-probability rule to predict
//! what a `sampling` processor keeps, and gateway-like LLM traces.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::trace::v1::Span;
use tracecast_tests::fixtures::{
    attr_f64, attr_int, attr_str, child_span, request_from_spans, span,
};
use tracecast_tests::{post_protobuf, Daemon};

/// The value of the exposition line `series value` (None when the series is absent).
pub fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

pub async fn scrape(admin: SocketAddr) -> String {
    let resp = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("scrape /metrics");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("metrics text")
}

/// Scrapes until every `(series, value)` holds; returns that scrape (fails after 60 s).
pub async fn wait_for(admin: SocketAddr, daemon: &Daemon, want: &[(&str, u64)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(admin).await;
        if want.iter().all(|(s, v)| sample(&text, s) == Some(*v)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "never reached {want:?}:\n{text}\nlog:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `tracecast_processor_incoming_spans_total{component="<id>"}`.
pub fn processor_in(id: &str) -> String {
    format!("tracecast_processor_incoming_spans_total{{component=\"{id}\"}}")
}

/// `tracecast_processor_dropped_spans_total{component="<id>",reason="<reason>"}`.
pub fn processor_dropped(id: &str, reason: &str) -> String {
    format!("tracecast_processor_dropped_spans_total{{component=\"{id}\",reason=\"{reason}\"}}")
}

/// `tracecast_exporter_sent_spans_total{component="<id>"}`.
pub fn exporter_sent(id: &str) -> String {
    format!("tracecast_exporter_sent_spans_total{{component=\"{id}\"}}")
}

/// Whether a sampler at `ratio` keeps this trace, computed here from the OpenTelemetry
/// spec's words (independently of tracecast's code): randomness = the rightmost 56 bits of
/// the trace id, threshold = (1 - ratio) * 2^56, kept when randomness >= threshold.
pub fn consistent_keep(trace_id: &[u8], ratio: f64) -> bool {
    let randomness = trace_id[9..16]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let max = (1u64 << 56) as f64;
    let threshold = (1u64 << 56) - (ratio * max).round() as u64;
    randomness >= threshold
}

/// An LLM request as the gateway sends it: a root span with `user` and `session_id`, a
/// generation with model, usage, cost, finish reason and prompt/completion content, and a
/// tool span. `prompt` is the user's message.
pub fn llm_trace(user: &str, session: &str, model: &str, prompt: &str, cost: f64) -> Vec<Span> {
    let mut root = span("POST /api/v1/chat/completions");
    root.attributes = vec![
        attr_str("user", user),
        attr_str("session_id", session),
        attr_str("trace", r#"{"environment": "production"}"#),
        attr_int("http.response.status_code", 200),
    ];
    let mut generation = child_span(&root, "chat");
    generation.attributes = vec![
        attr_str("gen_ai.operation.name", "chat"),
        attr_str("gen_ai.provider.name", "openai"),
        attr_str("gen_ai.request.model", model),
        attr_int("gen_ai.usage.input_tokens", 40),
        attr_int("gen_ai.usage.output_tokens", 60),
        attr_f64("gen_ai.usage.cost", cost),
        attr_str("gen_ai.response.finish_reasons", "stop"),
        attr_str(
            "gen_ai.prompt",
            &format!(r#"[{{"role":"user","content":"{prompt}"}}]"#),
        ),
        attr_str(
            "gen_ai.completion",
            r#"[{"role":"assistant","content":"Here is what I found."}]"#,
        ),
    ];
    let mut tool = child_span(&root, "tool lookup");
    tool.attributes = vec![attr_str("gen_ai.operation.name", "execute_tool")];
    vec![root, generation, tool]
}

/// Posts `spans` as one protobuf request, optionally with a bearer token; expects 200.
pub async fn post(
    client: &reqwest::Client,
    addr: SocketAddr,
    spans: Vec<Span>,
    token: Option<&str>,
) {
    let req = request_from_spans(spans);
    let resp = match token {
        None => post_protobuf(client, addr, &req).await,
        Some(token) => {
            use prost::Message;
            client
                .post(format!("http://{addr}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .bearer_auth(token)
                .body(req.encode_to_vec())
                .send()
                .await
        }
    };
    let resp = resp.expect("post to tracecast");
    assert_eq!(resp.status(), 200);
}

/// A string attribute of a span.
pub fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}
