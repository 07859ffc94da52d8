//! The test trace: a realistic gateway trace, sent through the running daemon's receiver
//! like a gateway would, and followed to every destination of its pipelines.
//!
//! Design: the sender (the `tracecast send-test-trace` command, or the status page's button
//! inside the daemon) posts the trace to a receiver over OTLP/HTTP, with the receiver's
//! first ingest key when it has any, then watches the status (`/status.json` for the
//! command, the same data in process for the button): each exporter records the object it
//! wrote, the backend's answer or the failed attempt together with the trace id
//! ([`tracecast_core::activity`]). So the answer is what really happened to this trace, not
//! a separate probe; and the command needs nothing but the admin endpoint and the receiver.
//!
//! The trace is one gateway request: a root `POST /api/v1/chat/completions` span carrying
//! `user`, `session_id` and `trace` (metadata, with `trace_id` set to the OTLP trace id so
//! S3 files are named after it) and one LLM generation with model, token counts and cost.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use serde::{Deserialize, Serialize};
use tracecast_core::proto::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span};
use tracecast_core::{ComponentId, ExportTraceServiceRequest};
use tracecast_receiver_otlp::Protocol;

use super::Status;
use crate::ValidatedConfig;

/// Model named by the test trace's generation.
pub const TEST_MODEL: &str = "openai/gpt-4o-mini";

/// A built test trace.
#[derive(Debug, Clone)]
pub struct TestTrace {
    /// The OTLP trace id in lowercase hex, also the `trace_id` of its `trace` metadata.
    pub trace_id: String,
    pub request: ExportTraceServiceRequest,
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.to_string()))
}

fn i(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

fn f(key: &str, value: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(value))
}

fn random_bytes(n: usize) -> Vec<u8> {
    loop {
        let id: Vec<u8> = (0..n).map(|_| fastrand::u8(..)).collect();
        // An all-zero id is invalid in OTLP.
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

/// Builds a new test trace (fresh ids) that ended just now.
pub fn build() -> TestTrace {
    let trace_id = random_bytes(16);
    let hex_id = hex::encode(&trace_id);
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let start = end.saturating_sub(850_000_000);
    let root_id = random_bytes(8);
    let session = format!("tracecast-test-session-{}", &hex_id[..8]);
    let metadata = serde_json::json!({
        "trace_id": hex_id,
        "trace_name": "tracecast test trace",
        "generation_name": "test generation",
        "environment": "tracecast-test",
        "source": "tracecast send-test-trace",
    })
    .to_string();
    let ok = Some(tracecast_core::proto::trace::v1::Status {
        code: status::StatusCode::Ok as i32,
        message: String::new(),
    });
    let root = Span {
        trace_id: trace_id.clone(),
        span_id: root_id.clone(),
        name: "POST /api/v1/chat/completions".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: vec![
            s("http.request.method", "POST"),
            i("http.response.status_code", 200),
            s("user", "tracecast-test-user"),
            s("session_id", &session),
            s("trace", &metadata),
        ],
        status: ok.clone(),
        ..Default::default()
    };
    let generation = Span {
        trace_id: trace_id.clone(),
        span_id: random_bytes(8),
        parent_span_id: root_id,
        name: format!("chat {TEST_MODEL}"),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start + 50_000_000,
        end_time_unix_nano: end.saturating_sub(20_000_000),
        attributes: vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.system", "openai"),
            s("gen_ai.request.model", TEST_MODEL),
            s("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
            i("gen_ai.usage.input_tokens", 14),
            i("gen_ai.usage.output_tokens", 9),
            i("gen_ai.usage.total_tokens", 23),
            f("gen_ai.usage.input_cost", 0.000_002_1),
            f("gen_ai.usage.output_cost", 0.000_005_4),
            f("gen_ai.usage.cost", 0.000_007_5),
            s("gen_ai.response.finish_reasons", "stop"),
        ],
        status: ok,
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![s("service.name", "tracecast-send-test-trace")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tracecast".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans: vec![root, generation],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    TestTrace {
        trace_id: hex_id,
        request,
    }
}

/// Where the test trace goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub receiver: ComponentId,
    /// `http://ip:port/path`, or `https://` when the listener has `tls`.
    pub url: String,
    /// The listener speaks TLS: see [`send`] for how its certificate is taken.
    pub tls: bool,
    /// The receiver's first ingest key's token, if it has keys (never printed).
    pub token: Option<String>,
    /// Destinations expected to get it: every exporter of the chosen pipeline, or of every
    /// pipeline the receiver feeds.
    pub destinations: Vec<String>,
}

/// Picks the receiver of `pipeline` (default: the first pipeline with an OTLP receiver)
/// and the destinations to follow. `address` says where a receiver listens (`None`: the
/// configured endpoint).
pub fn target(
    config: &ValidatedConfig,
    pipeline: Option<&str>,
    address: impl Fn(&ComponentId) -> Option<SocketAddr>,
) -> Result<Target, String> {
    let pipelines = &config.raw.service.pipelines;
    // A receiver with an OTLP/HTTP listener: its id, listener and ingest keys.
    let otlp_receiver = |p: &tracecast_config::PipelineConfig| {
        p.receivers.iter().find_map(|id| {
            let r = config
                .receivers
                .get(id)?
                .get::<tracecast_receiver_otlp::OtlpReceiverConfig>()?;
            let http = r
                .listeners()
                .into_iter()
                .find(|l| l.protocol == Protocol::Http)?;
            Some((id.clone(), (http, r.api_keys.clone())))
        })
    };
    let (name, (id, (listener, keys))) = match pipeline {
        Some(name) => {
            let p = pipelines.get(name).ok_or_else(|| {
                format!(
                    "there is no pipeline {name:?}; the config has: {}",
                    pipelines.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            let r = otlp_receiver(p).ok_or_else(|| {
                format!("pipeline {name} has no OTLP/HTTP receiver to send the test trace to")
            })?;
            (name.to_string(), r)
        }
        None => pipelines
            .iter()
            .find_map(|(n, p)| otlp_receiver(p).map(|r| (n.clone(), r)))
            .ok_or("no pipeline has an OTLP/HTTP receiver to send the test trace to")?,
    };
    let mut destinations: Vec<String> = pipelines
        .iter()
        .filter(|(n, p)| {
            if pipeline.is_some() {
                **n == name
            } else {
                p.receivers.contains(&id)
            }
        })
        .flat_map(|(_, p)| p.exporters.iter().map(|e| e.to_string()))
        .collect();
    destinations.sort();
    destinations.dedup();
    let tls = listener.tls.as_ref();
    if tls.is_some_and(|t| t.client_ca_file.is_some()) {
        return Err(format!(
            "receiver {id} requires a client certificate (tls.client_ca_file): the test trace cannot present one; pick a pipeline whose receiver does not (--pipeline)"
        ));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = address(&id).map_or_else(|| listener.endpoint.clone(), |a| a.to_string());
    Ok(Target {
        url: format!("{scheme}://{endpoint}{}", listener.path),
        tls: tls.is_some(),
        token: keys.first().map(|k| k.token.clone()),
        receiver: id,
        destinations,
    })
}

/// Posts the trace to the receiver; `Ok` with the HTTP status when accepted, else why not
/// in plain words.
///
/// A TLS listener's certificate is not verified: the trace goes to the address of the
/// daemon's own listener (from its config, or as the running daemon reports it), whose
/// certificate names the host gateways use, not `127.0.0.1`, and is often issued by a
/// private CA the sender does not have. Encryption still holds; what is skipped is proving
/// to ourselves who we are.
pub async fn send(
    client: &reqwest::Client,
    target: &Target,
    trace: &TestTrace,
) -> Result<u16, String> {
    let tls_client;
    let client = if target.tls {
        tls_client = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| format!("cannot set up a TLS client: {e}"))?;
        &tls_client
    } else {
        client
    };
    let mut request = client
        .post(&target.url)
        .header("content-type", "application/x-protobuf")
        .timeout(Duration::from_secs(10))
        .body(trace.request.encode_to_vec());
    if let Some(token) = &target.token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.map_err(|e| {
        format!(
            "receiver {} at {} did not answer ({}): is the daemon running?",
            target.receiver,
            target.url,
            plain_transport_error(&e)
        )
    })?;
    let code = answer.status();
    if code.is_success() {
        return Ok(code.as_u16());
    }
    let body = answer.text().await.unwrap_or_default();
    let why = match code.as_u16() {
        401 | 403 => "the ingest key was refused (check the receiver's api_keys)".to_string(),
        429 | 503 => "the daemon is overloaded or its queue is full; try again shortly".into(),
        _ => "the request was refused".into(),
    };
    Err(format!(
        "receiver {} at {} answered HTTP {code}: {why} ({})",
        target.receiver,
        target.url,
        super::shorten(body.trim(), 200)
    ))
}

fn plain_transport_error(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    if text.contains("Connection refused") || text.contains("connection refused") {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        text
    }
}

/// What became of the test trace at one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Arrival {
    /// S3: the object it was written to.
    Written {
        key: String,
        bytes: u64,
        spans: usize,
    },
    /// OTLP: the backend's answer.
    Exported { status: u16, latency_ms: f64 },
    /// Not delivered: the latest failed attempt's reason; `gave_up` when the exporter kept
    /// it in its dead-letter folder rather than retrying.
    Failed { reason: String, gave_up: bool },
    /// Nothing seen yet.
    Pending,
}

impl Arrival {
    fn done(&self) -> bool {
        matches!(
            self,
            Arrival::Written { .. }
                | Arrival::Exported { .. }
                | Arrival::Failed { gave_up: true, .. }
        )
    }

    fn delivered(&self) -> bool {
        matches!(self, Arrival::Written { .. } | Arrival::Exported { .. })
    }
}

/// Where the trace is at every destination according to `status`.
pub fn judge(status: &Status, trace_id: &str, destinations: &[String]) -> Vec<(String, Arrival)> {
    let concerns = |ids: &[String], key: Option<&str>| {
        ids.iter().any(|t| t.eq_ignore_ascii_case(trace_id))
            || key.is_some_and(|k| k.contains(trace_id))
    };
    destinations
        .iter()
        .map(|d| {
            let file = status.recent_files.iter().find(|r| {
                r.exporter == *d && concerns(std::slice::from_ref(&r.trace_id), Some(&r.key))
            });
            let export = status
                .recent_exports
                .iter()
                .find(|r| r.exporter == *d && concerns(&r.trace_ids, None));
            let failure = status
                .recent_failures
                .iter()
                .find(|r| r.exporter == *d && concerns(&r.trace_ids, r.key.as_deref()));
            let arrival = if let Some(f) = file {
                Arrival::Written {
                    key: f.key.clone(),
                    bytes: f.bytes,
                    spans: f.spans,
                }
            } else if let Some(e) = export {
                Arrival::Exported {
                    status: e.status,
                    latency_ms: e.latency_ms,
                }
            } else if let Some(f) = failure {
                Arrival::Failed {
                    reason: f.reason.clone(),
                    gave_up: f.gave_up,
                }
            } else {
                Arrival::Pending
            };
            (d.clone(), arrival)
        })
        .collect()
}

/// The outcome of sending a test trace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub trace_id: String,
    pub receiver: String,
    /// The receiver's HTTP status, or why it refused or did not answer.
    pub sent: Result<u16, String>,
    pub destinations: Vec<DestinationReport>,
    pub waited_seconds: f64,
    /// Accepted, but the status could not be read to follow it: why.
    pub unfollowed: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationReport {
    pub destination: String,
    pub arrival: Arrival,
    /// For a destination not reached: what the status says about it (down and why).
    pub note: Option<String>,
}

impl Report {
    /// Whether every destination got the trace.
    pub fn ok(&self) -> bool {
        self.sent.is_ok()
            && self.unfollowed.is_none()
            && self.destinations.iter().all(|d| d.arrival.delivered())
    }

    /// The report in plain words, one line per destination.
    pub fn text(&self) -> String {
        let mut out = String::new();
        match &self.sent {
            Ok(code) => out.push_str(&format!(
                "sent test trace {} to receiver {} (HTTP {code})\n",
                self.trace_id, self.receiver
            )),
            Err(why) => {
                out.push_str(&format!("test trace {} NOT sent: {why}\n", self.trace_id));
                return out;
            }
        }
        if let Some(why) = &self.unfollowed {
            out.push_str(&format!(
                "where it went cannot be told: the status could not be read: {why}\n"
            ));
        }
        for d in &self.destinations {
            let line = match &d.arrival {
                Arrival::Written { key, bytes, spans } => {
                    format!("{}: written as {key} ({bytes} bytes, {spans} spans)", d.destination)
                }
                Arrival::Exported { status, latency_ms } => format!(
                    "{}: delivered, the backend answered HTTP {status} ({latency_ms:.0} ms)",
                    d.destination
                ),
                Arrival::Failed {
                    reason,
                    gave_up: true,
                } => format!(
                    "{}: NOT delivered (given up, kept in its dead-letter folder): {reason}",
                    d.destination
                ),
                Arrival::Failed { reason, .. } => format!(
                    "{}: NOT delivered yet (tracecast keeps retrying; the trace waits in the durable queue): {reason}",
                    d.destination
                ),
                Arrival::Pending => format!(
                    "{}: did not arrive within {:.0}s{}",
                    d.destination,
                    self.waited_seconds,
                    d.note.as_deref().map_or_else(
                        || "; a sampling or filter processor may have dropped it, or an S3 exporter may still hold it (trace_idle_timeout)".to_string(),
                        |n| format!("; {n}")
                    )
                ),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// How long a test trace is followed once every destination either has it or is failing
/// it: time for one retry (the default first retry comes after 5 s) to succeed.
const FAILING_GRACE: Duration = Duration::from_secs(10);

/// Sends `trace` to `target` and watches `fetch` (the status) until every destination got
/// it or gave up on it, or `wait` passed.
pub async fn send_and_follow<F, Fut>(
    client: &reqwest::Client,
    target: &Target,
    trace: &TestTrace,
    wait: Duration,
    mut fetch: F,
) -> Report
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Status, String>>,
{
    let started = tokio::time::Instant::now();
    let mut report = Report {
        trace_id: trace.trace_id.clone(),
        receiver: target.receiver.to_string(),
        sent: send(client, target, trace).await,
        destinations: Vec::new(),
        waited_seconds: 0.0,
        unfollowed: None,
    };
    if report.sent.is_err() {
        return report;
    }
    let (last_status, arrivals) = loop {
        let status = match fetch().await {
            Ok(status) => status,
            Err(why) => {
                report.unfollowed = Some(why);
                return report;
            }
        };
        let arrivals = judge(&status, &trace.trace_id, &target.destinations);
        // Done when every destination got it or gave up; or, once each one that did not is
        // failing, after a grace for a retry to succeed; or when `wait` passed.
        let settled = arrivals
            .iter()
            .all(|(_, a)| a.done() || matches!(a, Arrival::Failed { .. }));
        let elapsed = started.elapsed();
        if arrivals.iter().all(|(_, a)| a.done())
            || (settled && elapsed >= FAILING_GRACE.min(wait))
            || elapsed >= wait
        {
            break (status, arrivals);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    report.waited_seconds = started.elapsed().as_secs_f64();
    report.destinations = arrivals
        .into_iter()
        .map(|(destination, arrival)| {
            let note = {
                let d = last_status
                    .destinations
                    .iter()
                    .find(|d| d.id == destination);
                d.filter(|d| d.state == "down").map(|d| {
                    format!(
                        "{destination} is down: {}",
                        d.reason.as_deref().unwrap_or("no reason recorded")
                    )
                })
            };
            DestinationReport {
                destination,
                arrival,
                note,
            }
        })
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> Status {
        let mut base = serde_json::json!({
            "version": "t", "now_unix_ms": 0, "uptime_seconds": 0, "ready": true,
            "receivers": [], "pipelines": [], "destinations": [], "queues": [],
            "recent_files": [], "recent_exports": [], "recent_failures": [],
        });
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn judging_finds_the_trace_by_id_or_key_and_prefers_delivery() {
        let id = "ab12";
        let s = status(serde_json::json!({
            "recent_files": [
                {"exporter": "s3", "key": "p/other-1.json", "bytes": 1, "spans": 1,
                 "trace_id": "other", "unix_ms": 1},
                {"exporter": "s3", "key": "p/AB12-2.json", "bytes": 9, "spans": 2,
                 "trace_id": "AB12", "unix_ms": 2},
            ],
            "recent_exports": [
                {"exporter": "otlp/a", "status": 202, "spans": 2, "all_trace_ids_listed": true,
                 "trace_ids": ["ab12"], "latency_ms": 3.0, "unix_ms": 3},
            ],
            "recent_failures": [
                {"exporter": "otlp/a", "reason": "HTTP 503", "gave_up": false, "key": null,
                 "spans": 2, "trace_ids": ["ab12"], "unix_ms": 1},
                {"exporter": "otlp/b", "reason": "HTTP 401", "gave_up": true, "key": null,
                 "spans": 2, "trace_ids": ["ab12"], "unix_ms": 1},
                {"exporter": "s3/x", "reason": "access denied", "gave_up": false,
                 "key": "p/ab12-3.json", "spans": 0, "trace_ids": [], "unix_ms": 1},
            ],
        }));
        let dests: Vec<String> = ["s3", "otlp/a", "otlp/b", "s3/x", "otlp/c"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        let got: Vec<Arrival> = judge(&s, id, &dests).into_iter().map(|(_, a)| a).collect();
        assert_eq!(
            got[0],
            Arrival::Written {
                key: "p/AB12-2.json".into(),
                bytes: 9,
                spans: 2
            }
        );
        assert_eq!(
            got[1],
            Arrival::Exported {
                status: 202,
                latency_ms: 3.0
            },
            "retried, then delivered"
        );
        assert_eq!(
            got[2],
            Arrival::Failed {
                reason: "HTTP 401".into(),
                gave_up: true
            }
        );
        assert_eq!(
            got[3],
            Arrival::Failed {
                reason: "access denied".into(),
                gave_up: false
            },
            "by key"
        );
        assert_eq!(got[4], Arrival::Pending);
        assert!(got[2].done() && !got[3].done() && !got[4].done());
    }

    #[test]
    fn the_test_trace_is_one_gateway_request() {
        let t = build();
        let spans = &t.request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert_eq!(hex::encode(&spans[0].trace_id), t.trace_id);
        assert_eq!(spans[1].parent_span_id, spans[0].span_id);
        let names: Vec<_> = spans[0].attributes.iter().map(|a| a.key.as_str()).collect();
        for k in ["user", "session_id", "trace"] {
            assert!(names.contains(&k), "{names:?}");
        }
        let trace = spans[0]
            .attributes
            .iter()
            .find(|a| a.key == "trace")
            .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        let meta: serde_json::Value = serde_json::from_str(&trace).unwrap();
        assert_eq!(meta["trace_id"], t.trace_id);
        assert_ne!(build().trace_id, t.trace_id, "fresh ids each time");
    }
}
