//! The load run: `connections` keep-alive HTTP/1.1 connections, each sending one request at
//! a time, either as fast as the target answers or on a fixed schedule.
//!
//! With a fixed rate, request `i` is due at `start + i * interval` (one schedule shared by
//! all connections) and its latency is measured from when it was due, not from when it was
//! sent, so a stalled target shows up in the percentiles instead of silently slowing the
//! generator down (coordinated omission, as wrk2 corrects it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::{BodySource, Encoding};

/// What to send, where, and how fast.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request path, e.g. `/v1/traces`.
    pub path: String,
    pub encoding: Encoding,
    /// Whether bodies are gzip (sets `Content-Encoding`).
    pub gzip: bool,
    pub spans_per_request: usize,
    /// Concurrent connections.
    pub connections: usize,
    /// Spans per second; `None` sends as fast as the target answers.
    pub rate: Option<f64>,
    /// Stop after this long.
    pub duration: Duration,
    /// Stop after this many spans (rounded up to whole requests).
    pub total_spans: Option<u64>,
    /// Extra headers (e.g. `authorization`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// What happened during a run.
#[derive(Debug, Default)]
pub struct RunResult {
    pub elapsed: Duration,
    pub requests: u64,
    /// Requests answered 2xx, and their spans.
    pub accepted_requests: u64,
    pub accepted_spans: u64,
    /// Body bytes sent (all requests).
    pub bytes_sent: u64,
    /// Every answered status (2xx included), by code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer, by kind of failure.
    pub transport_errors: BTreeMap<String, u64>,
    /// Latency of each answered request in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl RunResult {
    /// The `q` quantile (0..=1) of latency in milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let last = self.latencies_us.len() - 1;
        let i = ((last as f64) * q).round() as usize;
        Some(f64::from(self.latencies_us[i.min(last)]) / 1000.0)
    }

    fn merge(&mut self, other: RunResult) {
        self.requests += other.requests;
        self.accepted_requests += other.accepted_requests;
        self.accepted_spans += other.accepted_spans;
        self.bytes_sent += other.bytes_sent;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.transport_errors {
            *self.transport_errors.entry(k).or_default() += v;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Runs the load and returns the merged results of all connections.
pub async fn run(config: LoadConfig, bodies: Arc<BodySource>) -> RunResult {
    let config = Arc::new(config);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..config.connections.max(1) {
        tasks.push(tokio::spawn(worker(
            config.clone(),
            bodies.clone(),
            next.clone(),
            start,
        )));
    }
    let mut total = RunResult::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.merge(r);
        }
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    total
}

async fn connect(config: &LoadConfig) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(config.addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn worker(
    config: Arc<LoadConfig>,
    bodies: Arc<BodySource>,
    next: Arc<AtomicU64>,
    start: Instant,
) -> RunResult {
    let mut out = RunResult::default();
    let deadline = start + config.duration;
    let spans = config.spans_per_request as u64;
    let max_requests = config.total_spans.map(|t| t.div_ceil(spans.max(1)));
    let interval = config
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(spans as f64 / r));
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if max_requests.is_some_and(|m| seq >= m) {
            break;
        }
        let due = match interval {
            Some(iv) => {
                let due = start + iv.mul_f64(seq as f64);
                if due >= deadline {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                now
            }
        };
        let body = bodies.body(seq);
        let len = body.len();
        let send = match conn.as_mut() {
            Some(c) if !c.is_closed() => c,
            _ => match connect(&config).await {
                Ok(c) => conn.insert(c),
                Err(kind) => {
                    out.requests += 1;
                    *out.transport_errors.entry(kind).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        if send.ready().await.is_err() {
            conn = None;
            out.requests += 1;
            *out.transport_errors
                .entry("connection closed".into())
                .or_default() += 1;
            continue;
        }
        let mut req = Request::post(config.path.as_str())
            .header(header::HOST, config.host.as_str())
            .header(header::CONTENT_TYPE, config.encoding.content_type())
            .header(header::CONTENT_LENGTH, len);
        if config.gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        for (k, v) in &config.headers {
            req = req.header(k, v);
        }
        let Ok(req) = req.body(Full::new(body)) else {
            break;
        };
        out.requests += 1;
        out.bytes_sent += len as u64;
        let answered = async {
            let resp = send.send_request(req).await?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        }
        .await;
        match answered {
            Ok(status) => {
                let us = due.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                out.latencies_us.push(us);
                *out.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    out.accepted_requests += 1;
                    out.accepted_spans += spans;
                }
            }
            Err(e) => {
                conn = None;
                let kind = if e.is_closed() || e.is_incomplete_message() {
                    "connection closed".to_string()
                } else {
                    format!("http: {e}")
                };
                *out.transport_errors.entry(kind).or_default() += 1;
            }
        }
    }
    out
}

/// `GET`s a sink's `/stats` (see [`crate::sink`]).
pub async fn fetch_sink_stats(addr: SocketAddr) -> Result<crate::sink::SinkStats, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot reach the sink at {addr}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get("/stats")
        .header(header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("sink stats are not JSON: {e}"))
}
