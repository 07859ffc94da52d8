//! A recording OTLP/HTTP server for exporter and end-to-end tests.
//!
//! [`RecordingOtlpServer`] is a real hyper 1 server on `127.0.0.1:<random port>`. It records
//! every request it answers (path, headers, raw body, decoded `ExportTraceServiceRequest`)
//! and answers from a script: queued [`Response`]s are used one per request, in order, then
//! the default (200 with an empty `ExportTraceServiceResponse` in the request's encoding).
//! A body that does not decode gets a 400 with the reason, unless a scripted response is
//! queued (the script always wins). [`RecordingOtlpServer::stall`] holds requests until
//! [`RecordingOtlpServer::release`], for back-pressure tests.
//!
//! Spans count as delivered ([`RecordingOtlpServer::spans`]) only when their request was
//! answered 2xx, so a retried request that finally succeeds shows its spans once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracecast_core::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use tracecast_core::proto::trace::v1::Span;
use tracecast_core::{CancellationToken, ExportTraceServiceRequest};

use crate::fixtures::flatten_spans;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query, e.g. `/v1/traces`.
    pub path: String,
    pub headers: HeaderMap,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// The body exactly as received (still compressed if it was).
    pub body: Bytes,
    /// The decoded request, or why the body could not be decoded.
    pub decoded: Result<ExportTraceServiceRequest, String>,
    /// The status the server answered with.
    pub status: u16,
    /// When the request was answered (tokio clock, so paused-time tests see it too).
    pub received_at: Instant,
}

impl RecordedRequest {
    /// A header's value as text (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The spans of the decoded request (empty if it did not decode).
    pub fn spans(&self) -> Vec<Span> {
        self.decoded.as_ref().map(flatten_spans).unwrap_or_default()
    }

    /// Whether the server answered 2xx (the spans count as delivered).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone)]
enum Body {
    /// An `ExportTraceServiceResponse` in the request's encoding.
    Export(ExportTraceServiceResponse),
    /// Fixed bytes with a content type.
    Raw { content_type: String, bytes: Bytes },
}

/// A scripted answer. Build with [`Response::ok`], [`Response::status`] or
/// [`Response::partial_success`], then refine with the builder methods.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    delay: Option<Duration>,
}

impl Response {
    /// 200 with an empty `ExportTraceServiceResponse` (the default answer).
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// `code` with an empty `ExportTraceServiceResponse` body (for 2xx) or an empty body.
    pub fn status(code: u16) -> Self {
        let body = if (200..300).contains(&code) {
            Body::Export(ExportTraceServiceResponse::default())
        } else {
            Body::Raw {
                content_type: "text/plain".into(),
                bytes: Bytes::new(),
            }
        };
        Self {
            status: code,
            headers: Vec::new(),
            body,
            delay: None,
        }
    }

    /// 200 whose response reports `rejected` spans with `message` (OTLP partial success).
    pub fn partial_success(rejected: i64, message: &str) -> Self {
        Self {
            body: Body::Export(ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message.to_string(),
                }),
            }),
            ..Self::ok()
        }
    }

    /// Adds a `Retry-After` header (seconds like `"1"` or an HTTP-date).
    pub fn retry_after(self, value: &str) -> Self {
        self.header("retry-after", value)
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A plain-text body (what a backend's error message looks like).
    pub fn body(self, text: &str) -> Self {
        self.raw_body("text/plain; charset=utf-8", Bytes::from(text.to_string()))
    }

    /// A body with an explicit content type.
    pub fn raw_body(mut self, content_type: &str, bytes: impl Into<Bytes>) -> Self {
        self.body = Body::Raw {
            content_type: content_type.to_string(),
            bytes: bytes.into(),
        };
        self
    }

    /// Waits this long before answering (request timeouts).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

struct State {
    requests: Mutex<Vec<RecordedRequest>>,
    script: Mutex<VecDeque<Response>>,
    default: Mutex<Response>,
    /// Woken after every recorded request.
    recorded: Notify,
    stalled: watch::Sender<bool>,
    held: AtomicUsize,
}

/// Locks, recovering from poisoning: a panicking test thread must not hide the recording.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running recording OTLP/HTTP server. Stops when dropped or on [`Self::shutdown`].
pub struct RecordingOtlpServer {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RecordingOtlpServer {
    /// Binds `127.0.0.1:0` and starts serving. Panics if no port can be bound (test-only).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the recording OTLP server");
        let addr = listener
            .local_addr()
            .expect("local address of a bound socket");
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(Response::ok()),
            recorded: Notify::new(),
            stalled: watch::Sender::new(false),
            held: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, state.clone(), stop.clone()));
        Self {
            addr,
            state,
            stop,
            task: Some(task),
        }
    }

    /// The traces URL: `http://127.0.0.1:PORT/v1/traces`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues answers for the next requests, in order, after any already queued.
    pub fn respond_with(&self, responses: Vec<Response>) {
        lock(&self.state.script).extend(responses);
    }

    /// Sets the answer used once the queue is empty.
    pub fn set_default(&self, response: Response) {
        *lock(&self.state.default) = response;
    }

    /// Holds every request (including ones in flight) until [`Self::release`].
    pub fn stall(&self) {
        self.state.stalled.send_replace(true);
    }

    /// Lets held and new requests through.
    pub fn release(&self) {
        self.state.stalled.send_replace(false);
    }

    /// Requests currently held by [`Self::stall`].
    pub fn held_count(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Every answered request, in the order answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Number of answered requests.
    pub fn request_count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// Spans of every request answered 2xx, flattened, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.accepted())
            .flat_map(|r| r.spans())
            .collect()
    }

    /// Names of [`Self::spans`].
    pub fn span_names(&self) -> Vec<String> {
        self.spans().into_iter().map(|s| s.name).collect()
    }

    /// Waits until at least `n` spans were accepted or `timeout` passed; returns the accepted
    /// spans either way (the caller asserts).
    pub async fn wait_for_spans(&self, n: usize, timeout: Duration) -> Vec<Span> {
        self.wait_until(timeout, |reqs| {
            reqs.iter()
                .filter(|r| r.accepted())
                .map(|r| r.spans().len())
                .sum::<usize>()
                >= n
        })
        .await;
        self.spans()
    }

    /// Waits until at least `n` requests were answered or `timeout` passed; returns the count.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |reqs| reqs.len() >= n).await;
        self.request_count()
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&[RecordedRequest]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            // Register for the wake-up before checking, so no recording is missed.
            let notified = self.state.recorded.notified();
            if done(&lock(&self.state.requests)) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Stops accepting and closes open connections; the port is free afterwards.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RecordingOtlpServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    // Connection tasks live in the set, so ending this task ends them all.
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = conn => {}
            }
        });
    }
    drop(listener);
    conns.shutdown().await;
}

async fn handle(
    state: Arc<State>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, format!("reading body: {e}"))),
    };

    if *state.stalled.borrow() {
        state.held.fetch_add(1, Ordering::SeqCst);
        let mut rx = state.stalled.subscribe();
        let _ = rx.wait_for(|stalled| !*stalled).await;
        state.held.fetch_sub(1, Ordering::SeqCst);
    }

    let header = |name: http::header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(http::header::CONTENT_TYPE);
    let content_encoding = header(http::header::CONTENT_ENCODING);
    let json = content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("application/json"));
    let decoded = decode(&body, content_type.as_deref(), content_encoding.as_deref());

    let scripted = lock(&state.script).pop_front();
    let response = match (scripted, &decoded) {
        (Some(r), _) => r,
        (None, Err(why)) => Response::status(400).body(why),
        (None, Ok(_)) => lock(&state.default).clone(),
    };

    lock(&state.requests).push(RecordedRequest {
        method: parts.method,
        path: parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        ),
        headers: parts.headers,
        content_type,
        content_encoding,
        body,
        decoded,
        status: response.status,
        received_at: Instant::now(),
    });
    state.recorded.notify_waiters();

    if let Some(delay) = response.delay {
        tokio::time::sleep(delay).await;
    }
    Ok(render(response, json))
}

/// `zstd -d` of `body` (the CLI that scripts/setup-test-deps.sh installs).
fn zstd_cli_decompress(body: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the zstd CLI ({e}); run scripts/setup-test-deps.sh"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = body.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!(
            "zstd body does not decompress: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// Decompresses and decodes a body per its content type and encoding.
fn decode(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<ExportTraceServiceRequest, String> {
    let plain: Vec<u8> = match content_encoding.map(str::trim) {
        None | Some("") | Some("identity") => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| format!("gzip body does not decompress: {e}"))?;
            out
        }
        Some("deflate") => {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| format!("deflate body does not decompress: {e}"))?;
            out
        }
        // The reference zstd CLI, an implementation independent of tracecast's encoder.
        Some("zstd") => zstd_cli_decompress(body)?,
        Some(other) => return Err(format!("unsupported Content-Encoding {other:?}")),
    };
    let ct = content_type.unwrap_or("");
    if ct.starts_with("application/json") {
        // The JSON codec must not take the server down if it panics; report it instead.
        std::panic::catch_unwind(|| tracecast_core::otlp_json::decode_request(&plain))
            .map_err(|_| "the OTLP/JSON decoder panicked".to_string())?
            .map_err(|e| format!("bad OTLP/JSON: {e}"))
    } else if ct.starts_with("application/x-protobuf") || ct.starts_with("application/protobuf") {
        ExportTraceServiceRequest::decode(plain.as_slice())
            .map_err(|e| format!("bad protobuf: {e}"))
    } else {
        Err(format!("unsupported Content-Type {ct:?}"))
    }
}

fn render(response: Response, json: bool) -> hyper::Response<Full<Bytes>> {
    let (content_type, bytes) = match response.body {
        Body::Raw {
            content_type,
            bytes,
        } => (content_type, bytes),
        Body::Export(export) if json => ("application/json".to_string(), export_json(&export)),
        Body::Export(export) => (
            "application/x-protobuf".to_string(),
            Bytes::from(export.encode_to_vec()),
        ),
    };
    let mut out = hyper::Response::new(Full::new(bytes));
    *out.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        out.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    for (name, value) in response.headers {
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(n, v);
        }
    }
    out
}

/// The proto3-JSON form of a response (int64 as a string, as Go's protojson writes it).
fn export_json(export: &ExportTraceServiceResponse) -> Bytes {
    let value = match &export.partial_success {
        None => serde_json::json!({}),
        Some(p) => serde_json::json!({
            "partialSuccess": {
                "rejectedSpans": p.rejected_spans.to_string(),
                "errorMessage": p.error_message,
            }
        }),
    };
    Bytes::from(value.to_string())
}

fn plain(status: StatusCode, text: String) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(text)));
    *out.status_mut() = status;
    out
}
