//! A small HTTP/1.1 proxy that adds latency to every request and answers S3's
//! `503 SlowDown` on demand, in front of another local server (the in-process
//! [`crate::S3TestServer`]). It models what an in-process S3 server does not: the tens of
//! milliseconds a real PutObject takes, and an endpoint that throttles when a client sends
//! too much at once.
//!
//! Each client connection gets its own upstream connection, used for the client
//! connection's requests one after another, so requests and headers (the `Host` a SigV4
//! signature covers included) pass through unchanged, and the counters tell how many
//! connections a client opened for how many requests (connection reuse).
//!
//! Controls (all may change while running): [`DelayProxy::set_delay`] (added before each
//! request is forwarded), [`DelayProxy::throttle_next`] (the next N requests get
//! `503 SlowDown`), [`DelayProxy::throttle_above`] (a request arriving while more than N
//! are in flight gets `503 SlowDown`, like a prefix over its request-rate limit).
//!
//! **Sink mode** ([`DelayProxy::start_sink`]): no upstream; after the same delay and
//! throttling the proxy itself answers as a minimal in-memory S3 endpoint (PutObject with
//! `If-None-Match: *`, GetObject, HeadObject on path-style `/<bucket>/<key>` URLs) and
//! serves its counters as JSON at `GET /_tracecast/stats`. It exists for benchmarks: the
//! s3s + s3s-fs server costs tens of milliseconds per PUT under thousands of PUTs a second
//! on a small machine, so the endpoint, not the writer under test, set the pace. See
//! [`DelayProxy::start_sink`] for what it checks and what it does not.

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

/// The body S3 sends with `503 SlowDown`.
pub const SLOW_DOWN_BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>tracecast-delay-proxy</RequestId></Error>";

/// What the proxy counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests received.
    pub requests: u64,
    /// Requests answered `503 SlowDown` by the proxy (not forwarded).
    pub throttled: u64,
    /// Requests forwarded whose upstream exchange failed (answered `502`).
    pub upstream_errors: u64,
    /// Client connections accepted.
    pub connections: u64,
    /// Most requests in flight at once (received, not yet answered).
    pub peak_in_flight: u64,
    /// Requests forwarded and answered by the upstream server.
    pub forwarded: u64,
    /// Summed over the forwarded requests: microseconds from the request's arrival to the
    /// upstream's response head (the added delay included), and the upstream part alone.
    /// With the client's own timing they tell whose time a slow request spent.
    pub total_us: u64,
    pub upstream_us: u64,
}

#[derive(Default)]
struct Control {
    delay_us: AtomicU64,
    throttle_next: AtomicU64,
    /// 0: off.
    throttle_above: AtomicUsize,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    throttled: AtomicU64,
    upstream_errors: AtomicU64,
    connections: AtomicU64,
    peak_in_flight: AtomicU64,
    forwarded: AtomicU64,
    total_us: AtomicU64,
    upstream_us: AtomicU64,
}

/// A running delaying proxy (or, from [`DelayProxy::start_sink`], in-memory S3 sink) on
/// 127.0.0.1; stops when dropped.
pub struct DelayProxy {
    addr: SocketAddr,
    control: Arc<Control>,
    /// Sink mode: the objects it holds. `None`: a proxy to an upstream server.
    sink: Option<Arc<Sink>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

fn full(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    resp
}

/// Decrements the in-flight count when the request is answered (or its task dropped).
struct InFlight(Arc<Control>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl DelayProxy {
    /// Starts a proxy to `upstream` (an `http://` server on this machine) adding `delay` to
    /// every request. Listens on 127.0.0.1 with a free port.
    pub async fn start(upstream: SocketAddr, delay: Duration) -> std::io::Result<Self> {
        Self::start_on(
            "127.0.0.1:0".parse().expect("literal address"),
            upstream,
            delay,
        )
        .await
    }

    /// As [`DelayProxy::start`], listening on `listen` (a loopback address; port 0 for a
    /// free one).
    pub async fn start_on(
        listen: SocketAddr,
        upstream: SocketAddr,
        delay: Duration,
    ) -> std::io::Result<Self> {
        Self::start_with(listen, Backend::Upstream(upstream), delay).await
    }

    /// Starts with no upstream: after `delay` (and the throttling knobs) the proxy answers
    /// itself as a minimal in-memory S3 bucket store, listening on `listen` (a loopback
    /// address; port 0 for a free one). Any bucket name is accepted, none needs creating.
    ///
    /// Path-style URLs `/<bucket>/<key...>` (the key percent-decoded):
    /// - `PUT` (PutObject) stores the body and answers `200` with an `ETag`; with
    ///   `If-None-Match: *` (object_store's `PutMode::Create`) an existing key is
    ///   `412 PreconditionFailed` and is left as it was;
    /// - `GET` (GetObject) answers the stored bytes, `HEAD` (HeadObject) their length and
    ///   `ETag`; an unknown key is `404 NoSuchKey`;
    /// - anything else (listing, multipart uploads, bucket operations, other methods,
    ///   query strings, `aws-chunked` bodies) is `501 NotImplemented` with what was asked.
    ///
    /// Every object request must carry an `Authorization: AWS4-HMAC-SHA256 ...` header,
    /// else `403 AccessDenied`; **the signature itself is not verified**: the sink is for
    /// benchmarks, which measure the writer, not the endpoint's crypto, and the tests'
    /// s3s server ([`crate::S3TestServer`]) already checks every signature the writer
    /// makes. The header check still catches a client that forgot to sign at all.
    ///
    /// `GET /_tracecast/stats` (outside any bucket, never delayed, throttled or counted)
    /// answers the counters as JSON: `objects`, `bytes` and the [`SinkStats`] and
    /// [`ProxyStats`] fields, so a benchmark can count objects while the sink runs. In
    /// sink mode [`ProxyStats::forwarded`] counts the object requests the sink answered
    /// and [`ProxyStats::upstream_us`] their in-memory part (reading the body included).
    ///
    /// Objects stay in memory until the sink is dropped: a benchmark writing 2,000 small
    /// objects a second for a minute holds a few hundred MB at most.
    pub async fn start_sink(listen: SocketAddr, delay: Duration) -> std::io::Result<Self> {
        Self::start_with(listen, Backend::Sink(Arc::default()), delay).await
    }

    async fn start_with(
        listen: SocketAddr,
        backend: Backend,
        delay: Duration,
    ) -> std::io::Result<Self> {
        let sink = match &backend {
            Backend::Sink(sink) => Some(sink.clone()),
            Backend::Upstream(_) => None,
        };
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(Control::default());
        control
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
        let (stop, mut stop_rx) = watch::channel(false);
        let ctl = control.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        let _ = socket.set_nodelay(true);
                        ctl.connections.fetch_add(1, Ordering::Relaxed);
                        conns.spawn(serve_connection(socket, backend.clone(), ctl.clone()));
                    }
                    // Reap finished connections so the set does not grow without bound.
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        });
        Ok(Self {
            addr,
            control,
            sink,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Latency added before each request is forwarded (or throttled).
    pub fn set_delay(&self, delay: Duration) {
        self.control
            .delay_us
            .store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// The next `n` requests are answered `503 SlowDown` instead of being forwarded.
    pub fn throttle_next(&self, n: u64) {
        self.control.throttle_next.store(n, Ordering::Relaxed);
    }

    /// A request arriving while more than `n` requests are in flight (itself included) is
    /// answered `503 SlowDown`; `None` turns it off.
    pub fn throttle_above(&self, n: Option<usize>) {
        self.control
            .throttle_above
            .store(n.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn stats(&self) -> ProxyStats {
        let c = &self.control;
        ProxyStats {
            requests: c.requests.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            upstream_errors: c.upstream_errors.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            peak_in_flight: c.peak_in_flight.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            total_us: c.total_us.load(Ordering::Relaxed),
            upstream_us: c.upstream_us.load(Ordering::Relaxed),
        }
    }

    /// Sink mode: what the sink answered and holds (`None` for a proxy).
    pub fn sink_stats(&self) -> Option<SinkStats> {
        self.sink.as_ref().map(|s| s.stats())
    }

    /// Sink mode: how many objects the sink holds (0 for a proxy).
    pub fn object_count(&self) -> usize {
        self.sink.as_ref().map_or(0, |s| s.lock().len())
    }

    /// Sink mode: the stored keys as `<bucket>/<key>`, sorted (empty for a proxy).
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .sink
            .as_ref()
            .map(|s| s.lock().keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Sink mode: the bytes stored under `bucket`/`key` (the key as the client named it,
    /// not percent-encoded).
    pub fn object(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.sink
            .as_ref()
            .and_then(|s| s.lock().get(&format!("{bucket}/{key}")).cloned())
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Where a request that passed the delay and throttling goes.
#[derive(Clone)]
enum Backend {
    /// Forwarded to this server.
    Upstream(SocketAddr),
    /// Answered by the in-memory S3 sink.
    Sink(Arc<Sink>),
}

type Upstream = Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>;

/// One client connection: requests one after another, each over this connection's own
/// upstream connection (opened on the first forwarded request, reopened after a failure).
async fn serve_connection(socket: TcpStream, backend: Backend, control: Arc<Control>) {
    let sender: Arc<Upstream> = Arc::default();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let control = control.clone();
        let sender = sender.clone();
        let backend = backend.clone();
        async move { Ok::<_, Infallible>(handle(req, &backend, &control, &sender).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(socket), service)
        .await;
}

fn micros(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl Control {
    /// One request answered by the upstream (or the sink): its time since `arrived`, and
    /// the upstream's part since `upstream_started`.
    fn answered(&self, arrived: std::time::Instant, upstream_started: std::time::Instant) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(micros(arrived), Ordering::Relaxed);
        self.upstream_us
            .fetch_add(micros(upstream_started), Ordering::Relaxed);
    }
}

async fn handle(
    req: Request<Incoming>,
    backend: &Backend,
    control: &Arc<Control>,
    sender: &Upstream,
) -> Response<ProxyBody> {
    if let Backend::Sink(sink) = backend {
        if req.uri().path() == STATS_PATH && req.method() == hyper::Method::GET {
            return stats_response(control, sink);
        }
    }
    control.requests.fetch_add(1, Ordering::Relaxed);
    let arrived = std::time::Instant::now();
    let now = control.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
    let _guard = InFlight(control.clone());
    control
        .peak_in_flight
        .fetch_max(now as u64, Ordering::Relaxed);
    let delay = control.delay_us.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_micros(delay)).await;
    }
    let above = control.throttle_above.load(Ordering::Relaxed);
    let throttle_once = control
        .throttle_next
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok();
    if throttle_once || (above > 0 && now > above) {
        control.throttled.fetch_add(1, Ordering::Relaxed);
        // The request body is dropped unread; the client's connection stays usable.
        return full(StatusCode::SERVICE_UNAVAILABLE, SLOW_DOWN_BODY);
    }
    let upstream = match backend {
        Backend::Upstream(upstream) => *upstream,
        Backend::Sink(sink) => {
            let started = std::time::Instant::now();
            let resp = sink.answer(req).await;
            control.answered(arrived, started);
            return resp;
        }
    };
    let mut slot = sender.lock().await;
    if slot.as_ref().is_none_or(|s| s.is_closed()) {
        *slot = connect(upstream).await;
    }
    let Some(s) = slot.as_mut() else {
        control.upstream_errors.fetch_add(1, Ordering::Relaxed);
        return full(StatusCode::BAD_GATEWAY, "upstream unreachable");
    };
    if s.ready().await.is_err() {
        *slot = None;
        control.upstream_errors.fetch_add(1, Ordering::Relaxed);
        return full(StatusCode::BAD_GATEWAY, "upstream connection closed");
    }
    let forwarded = std::time::Instant::now();
    match s.send_request(req).await {
        Ok(resp) => {
            control.answered(arrived, forwarded);
            resp.map(|b| b.boxed())
        }
        Err(_) => {
            *slot = None;
            control.upstream_errors.fetch_add(1, Ordering::Relaxed);
            full(StatusCode::BAD_GATEWAY, "upstream exchange failed")
        }
    }
}

async fn connect(
    upstream: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<Incoming>> {
    let stream = TcpStream::connect(upstream).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

/// Where sink mode serves its counters (outside any bucket: `_` is not a valid first
/// character of an S3 bucket name).
pub const STATS_PATH: &str = "/_tracecast/stats";

/// The largest body sink mode stores: the benchmark's objects are a few KiB; anything far
/// larger is a client bug, answered `400 EntityTooLarge` rather than held in memory.
pub const SINK_MAX_OBJECT_BYTES: usize = 64 << 20;

/// What sink mode answered, by kind, and what it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Objects held.
    pub objects: u64,
    /// Bytes held (the bodies).
    pub bytes: u64,
    /// PutObject requests that stored their body (`200`).
    pub created: u64,
    /// Create-only PutObject requests refused because the key exists (`412`).
    pub precondition_failed: u64,
    /// GetObject / HeadObject requests answered `200`.
    pub reads: u64,
    /// GetObject / HeadObject requests of an unknown key (`404`).
    pub not_found: u64,
    /// Object requests without a SigV4 `Authorization` header (`403`).
    pub denied: u64,
    /// Requests the sink does not implement or cannot read (`501`, `400`).
    pub rejected: u64,
}

/// Sink mode's objects (`<bucket>/<key>` to body) and counters.
#[derive(Default)]
struct Sink {
    objects: std::sync::Mutex<HashMap<String, Bytes>>,
    bytes: AtomicU64,
    created: AtomicU64,
    precondition_failed: AtomicU64,
    reads: AtomicU64,
    not_found: AtomicU64,
    denied: AtomicU64,
    rejected: AtomicU64,
}

impl Sink {
    /// The map; a panic elsewhere while it was held cannot leave it half-changed (each
    /// change is one insert), so a poisoned lock is used as it is.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bytes>> {
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stats(&self) -> SinkStats {
        SinkStats {
            objects: self.lock().len() as u64,
            bytes: self.bytes.load(Ordering::Relaxed),
            created: self.created.load(Ordering::Relaxed),
            precondition_failed: self.precondition_failed.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            not_found: self.not_found.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    fn reject(&self, status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        s3_error(status, code, message)
    }

    /// One object request, after the delay: see [`DelayProxy::start_sink`].
    async fn answer(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let method = req.method().clone();
        if !matches!(
            method,
            hyper::Method::PUT | hyper::Method::GET | hyper::Method::HEAD
        ) {
            return self.reject(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                &format!(
                    "{method} is not implemented by the in-memory S3 sink (PutObject, GetObject and HeadObject only)"
                ),
            );
        }
        let signed = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes().starts_with(b"AWS4-HMAC-SHA256"));
        if !signed {
            self.denied.fetch_add(1, Ordering::Relaxed);
            return s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "no AWS4-HMAC-SHA256 Authorization header (the sink requires one, but does not verify the signature)",
            );
        }
        if let Some(query) = req.uri().query() {
            return self.reject(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                &format!("query `{query}` (listing, multipart upload, ...) is not implemented by the in-memory S3 sink"),
            );
        }
        let path = req.uri().path().trim_start_matches('/');
        let (bucket, raw_key) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() || raw_key.is_empty() {
            return self.reject(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "bucket operations are not implemented by the in-memory S3 sink: address objects as /<bucket>/<key> (any bucket name is accepted)",
            );
        }
        let Some(key) = percent_decode(raw_key) else {
            return self.reject(
                StatusCode::BAD_REQUEST,
                "InvalidURI",
                "the object key is not valid percent-encoded UTF-8",
            );
        };
        let name = format!("{bucket}/{key}");
        if method == hyper::Method::PUT {
            self.put(req, name).await
        } else {
            self.read(&name, method == hyper::Method::HEAD)
        }
    }

    async fn put(&self, req: Request<Incoming>, name: String) -> Response<ProxyBody> {
        let headers = req.headers();
        if headers
            .get("x-amz-content-sha256")
            .is_some_and(|v| v.as_bytes().starts_with(b"STREAMING-"))
        {
            return self.reject(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "aws-chunked (STREAMING-*) uploads are not implemented by the in-memory S3 sink",
            );
        }
        let create_only = match headers.get(hyper::header::IF_NONE_MATCH) {
            None => false,
            Some(v) if v.as_bytes() == b"*" => true,
            Some(_) => {
                return self.reject(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    "If-None-Match other than `*` is not implemented by the in-memory S3 sink",
                )
            }
        };
        if headers.contains_key(hyper::header::IF_MATCH) {
            return self.reject(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "If-Match is not implemented by the in-memory S3 sink",
            );
        }
        let body = match Limited::new(req.into_body(), SINK_MAX_OBJECT_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return self.reject(
                    StatusCode::BAD_REQUEST,
                    "EntityTooLarge",
                    &format!(
                    "the in-memory S3 sink stores at most {SINK_MAX_OBJECT_BYTES} bytes per object"
                ),
                )
            }
            Err(e) => {
                return self.reject(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    &format!("cannot read the request body: {e}"),
                )
            }
        };
        let etag = etag(&body);
        let len = body.len() as u64;
        {
            let mut objects = self.lock();
            if create_only && objects.contains_key(&name) {
                drop(objects);
                self.precondition_failed.fetch_add(1, Ordering::Relaxed);
                return s3_error(
                    StatusCode::PRECONDITION_FAILED,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                );
            }
            if let Some(old) = objects.insert(name, body) {
                self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
            }
            self.bytes.fetch_add(len, Ordering::Relaxed);
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        let mut resp = empty(StatusCode::OK);
        insert_header(&mut resp, hyper::header::ETAG, &etag);
        resp
    }

    fn read(&self, name: &str, head: bool) -> Response<ProxyBody> {
        let Some(body) = self.lock().get(name).cloned() else {
            self.not_found.fetch_add(1, Ordering::Relaxed);
            if head {
                return empty(StatusCode::NOT_FOUND);
            }
            return s3_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            );
        };
        self.reads.fetch_add(1, Ordering::Relaxed);
        let etag = etag(&body);
        let len = body.len().to_string();
        let mut resp = if head {
            empty(StatusCode::OK)
        } else {
            let mut resp = Response::new(
                Full::new(body)
                    .map_err(|never: Infallible| match never {})
                    .boxed(),
            );
            *resp.status_mut() = StatusCode::OK;
            resp
        };
        insert_header(&mut resp, hyper::header::ETAG, &etag);
        insert_header(&mut resp, hyper::header::CONTENT_LENGTH, &len);
        insert_header(
            &mut resp,
            hyper::header::CONTENT_TYPE,
            "application/octet-stream",
        );
        resp
    }
}

/// A quoted hex ETag of the body: a cheap hash, not S3's MD5 (no client of the sink
/// compares it with its own digest; object_store only needs one to be there).
fn etag(body: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

fn insert_header(resp: &mut Response<ProxyBody>, name: hyper::header::HeaderName, value: &str) {
    if let Ok(v) = hyper::header::HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn empty(status: StatusCode) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Empty::new()
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp
}

/// S3's XML error document.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let message = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>tracecast-s3-sink</RequestId></Error>"
    );
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    insert_header(&mut resp, hyper::header::CONTENT_TYPE, "application/xml");
    resp
}

fn stats_response(control: &Control, sink: &Sink) -> Response<ProxyBody> {
    let c = control;
    let s = sink.stats();
    let forwarded = c.forwarded.load(Ordering::Relaxed);
    let total_us = c.total_us.load(Ordering::Relaxed);
    let upstream_us = c.upstream_us.load(Ordering::Relaxed);
    let mean_ms = |us: u64| us as f64 / forwarded.max(1) as f64 / 1000.0;
    let body = serde_json::json!({
        "objects": s.objects,
        "bytes": s.bytes,
        "created": s.created,
        "precondition_failed": s.precondition_failed,
        "reads": s.reads,
        "not_found": s.not_found,
        "denied": s.denied,
        "rejected": s.rejected,
        "requests": c.requests.load(Ordering::Relaxed),
        "throttled": c.throttled.load(Ordering::Relaxed),
        "connections": c.connections.load(Ordering::Relaxed),
        "peak_in_flight": c.peak_in_flight.load(Ordering::Relaxed),
        "forwarded": forwarded,
        "total_us": total_us,
        "upstream_us": upstream_us,
        "mean_ms": mean_ms(total_us),
        "mean_upstream_ms": mean_ms(upstream_us),
    });
    let mut resp = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    insert_header(&mut resp, hyper::header::CONTENT_TYPE, "application/json");
    resp
}

/// `%XX` escapes to bytes, as UTF-8; `None` for a broken escape or invalid UTF-8. (`+` is
/// kept: S3 paths are not form-encoded.)
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
        let resp = client.get(url).send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn forwards_delays_and_throttles_on_demand() {
        let dir = tempfile_dir("delay-proxy");
        let s3 = crate::S3TestServer::start(&dir, "AK", "SK").await;
        let mut proxy = DelayProxy::start(s3.addr(), Duration::from_millis(20))
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let url = format!("{}/", proxy.endpoint());
        let started = std::time::Instant::now();
        let (status, body) = get(&client, &url).await;
        // Unsigned: the S3 server itself answers (forwarded), not the proxy.
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("AccessDenied"), "{body}");
        assert!(started.elapsed() >= Duration::from_millis(20));

        proxy.throttle_next(2);
        for _ in 0..2 {
            let (status, body) = get(&client, &url).await;
            assert_eq!(status, 503);
            assert!(body.contains("<Code>SlowDown</Code>"), "{body}");
        }
        assert_eq!(get(&client, &url).await.0, 403);
        let stats = proxy.stats();
        assert_eq!(stats.requests, 4);
        assert_eq!(stats.throttled, 2);
        assert_eq!(stats.upstream_errors, 0);
        assert_eq!(stats.connections, 1, "one kept-alive connection: {stats:?}");
        proxy.stop().await;
        assert!(TcpStream::connect(proxy.addr()).await.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn throttles_requests_above_a_concurrency() {
        let dir = tempfile_dir("delay-proxy-above");
        let s3 = crate::S3TestServer::start(&dir, "AK", "SK").await;
        // Long enough that the six requests overlap however loaded the machine is; only
        // the counts are checked, not how long anything took.
        let proxy = DelayProxy::start(s3.addr(), Duration::from_millis(1000))
            .await
            .unwrap();
        proxy.throttle_above(Some(2));
        let client = reqwest::Client::new();
        let url = format!("{}/", proxy.endpoint());
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (client, url) = (client.clone(), url.clone());
            set.spawn(async move { get(&client, &url).await.0 });
        }
        let mut codes = Vec::new();
        while let Some(code) = set.join_next().await {
            codes.push(code.unwrap());
        }
        // The first two to arrive are always forwarded (the S3 server answers 403 to an
        // unsigned request); a request arriving while more than two are in flight is not.
        let throttled = codes.iter().filter(|&&c| c == 503).count();
        let forwarded = codes.iter().filter(|&&c| c == 403).count();
        assert_eq!(throttled + forwarded, 6, "{codes:?}");
        assert!(forwarded >= 2 && throttled >= 1, "{codes:?}");
        let stats = proxy.stats();
        assert_eq!(stats.throttled as usize, throttled);
        assert!(stats.peak_in_flight > 2, "{stats:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_502_not_a_hang() {
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = free.local_addr().unwrap();
        drop(free);
        let proxy = DelayProxy::start(upstream, Duration::ZERO).await.unwrap();
        let client = reqwest::Client::new();
        let (status, _) = get(&client, &format!("{}/", proxy.endpoint())).await;
        assert_eq!(status, 502);
        assert_eq!(proxy.stats().upstream_errors, 1);
    }

    /// object_store's S3 client as tracecast's writer builds it for an `endpoint` with
    /// `force_path_style: true`: path-style, plain http, SigV4, no retries of its own.
    fn s3_client(endpoint: &str, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("AK")
            .with_secret_access_key("SK")
            .with_virtual_hosted_style_request(false)
            .with_allow_http(true)
            .with_retry(object_store::RetryConfig {
                max_retries: 0,
                ..Default::default()
            })
            .build()
            .unwrap()
    }

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn sink_stores_create_only_puts_and_reads_them_back() {
        use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
        let proxy = DelayProxy::start_sink(local(), Duration::from_millis(5))
            .await
            .unwrap();
        let store = s3_client(&proxy.endpoint(), "bench");
        // A key with characters object_store percent-encodes.
        let path = object_store::path::Path::from("2026/11/30/svc=a b/trace-01.json.gz");
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let put = store
            .put_opts(&path, PutPayload::from_static(b"first"), create())
            .await
            .unwrap();
        assert!(put.e_tag.is_some());
        // Create-only again: AlreadyExists (412), and the first bytes stay.
        let again = store
            .put_opts(&path, PutPayload::from_static(b"second"), create())
            .await
            .unwrap_err();
        assert!(
            matches!(again, object_store::Error::AlreadyExists { .. }),
            "{again:?}"
        );
        let got = store.get(&path).await.unwrap();
        assert_eq!(got.meta.size, 5);
        assert_eq!(got.bytes().await.unwrap().as_ref(), b"first");
        let head = store.head(&path).await.unwrap();
        assert_eq!(head.size, 5);
        assert_eq!(head.e_tag, put.e_tag);
        // A plain put overwrites (PutMode::Overwrite sends no If-None-Match).
        store
            .put(&path, PutPayload::from_static(b"third!"))
            .await
            .unwrap();
        assert_eq!(
            proxy
                .object("bench", "2026/11/30/svc=a b/trace-01.json.gz")
                .as_deref(),
            Some(&b"third!"[..])
        );
        assert_eq!(
            proxy.keys(),
            vec!["bench/2026/11/30/svc=a b/trace-01.json.gz".to_string()]
        );
        assert_eq!(proxy.object_count(), 1);

        // The stats endpoint, read while the sink runs (not itself counted or delayed).
        let stats: serde_json::Value = reqwest::get(format!("{}{STATS_PATH}", proxy.endpoint()))
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        assert_eq!(stats["objects"], 1, "{stats}");
        assert_eq!(stats["bytes"], 6, "{stats}");
        assert_eq!(stats["created"], 2, "{stats}");
        assert_eq!(stats["precondition_failed"], 1, "{stats}");
        assert_eq!(stats["reads"], 2, "{stats}");
        assert_eq!(stats["requests"], 5, "{stats}");
        assert_eq!(stats["forwarded"], 5, "{stats}");
        assert!(stats["mean_ms"].as_f64().unwrap() >= 5.0, "{stats}");
        let p = proxy.stats();
        assert_eq!((p.requests, p.forwarded, p.throttled), (5, 5, 0));
        assert!(p.total_us >= p.upstream_us + 5 * 5_000, "{p:?}");
        let s = proxy.sink_stats().unwrap();
        assert_eq!((s.objects, s.created, s.denied, s.rejected), (1, 2, 0, 0));
    }

    #[tokio::test]
    async fn sink_refuses_unsigned_unknown_and_unsupported_requests() {
        use object_store::{ObjectStoreExt, PutPayload};
        let proxy = DelayProxy::start_sink(local(), Duration::ZERO)
            .await
            .unwrap();
        let store = s3_client(&proxy.endpoint(), "bench");
        let missing = store
            .get(&object_store::path::Path::from("nope"))
            .await
            .unwrap_err();
        assert!(
            matches!(missing, object_store::Error::NotFound { .. }),
            "{missing:?}"
        );
        let missing = store
            .head(&object_store::path::Path::from("nope"))
            .await
            .unwrap_err();
        assert!(
            matches!(missing, object_store::Error::NotFound { .. }),
            "{missing:?}"
        );

        let client = reqwest::Client::new();
        let base = proxy.endpoint();
        let send = |req: reqwest::RequestBuilder| async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        };
        let signed = |req: reqwest::RequestBuilder| {
            req.header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AK/x, Signature=00",
            )
        };
        // Unsigned PUT: 403, nothing stored.
        let (status, body) = send(client.put(format!("{base}/bench/k")).body("x")).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
        // Another scheme than SigV4: also 403.
        let (status, _) = send(
            client
                .put(format!("{base}/bench/k"))
                .header("authorization", "AWS AK:sig")
                .body("x"),
        )
        .await;
        assert_eq!(status, 403);
        // GET of a missing key: S3's NoSuchKey document.
        let (status, body) = send(signed(client.get(format!("{base}/bench/missing")))).await;
        assert_eq!(status, 404);
        assert!(body.contains("<Code>NoSuchKey</Code>"), "{body}");
        // PUT without a key (CreateBucket), listing, multipart, DELETE, ListBuckets: 501.
        for req in [
            client.put(format!("{base}/bench")),
            client.put(format!("{base}/bench/")),
            client.get(format!("{base}/bench?list-type=2")),
            client.post(format!("{base}/bench/k?uploads")),
            client.delete(format!("{base}/bench/k")),
            client.get(format!("{base}/")),
        ] {
            let (status, body) = send(signed(req)).await;
            assert_eq!(status, 501, "{body}");
            assert!(body.contains("<Code>NotImplemented</Code>"), "{body}");
        }
        // A broken percent escape and a non-UTF-8 key: 400, no panic.
        for key in ["a%zz", "a%", "a%ff%fe", "a%+f"] {
            let (status, body) =
                send(signed(client.put(format!("{base}/bench/{key}")).body("x"))).await;
            assert_eq!(status, 400, "{key}: {body}");
            assert!(body.contains("<Code>InvalidURI</Code>"), "{body}");
        }
        // A conditional put the sink does not implement.
        let (status, _) = send(signed(
            client
                .put(format!("{base}/bench/k"))
                .header("if-none-match", "\"abc\"")
                .body("x"),
        ))
        .await;
        assert_eq!(status, 501);
        // Too large a body: refused, not held.
        let (status, body) = send(signed(
            client
                .put(format!("{base}/bench/big"))
                .body(vec![0u8; SINK_MAX_OBJECT_BYTES + 1]),
        ))
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("EntityTooLarge"), "{body}");
        assert_eq!(proxy.object_count(), 0);
        // Still serving after all that.
        store
            .put(
                &object_store::path::Path::from("k"),
                PutPayload::from_static(b"ok"),
            )
            .await
            .unwrap();
        let s = proxy.sink_stats().unwrap();
        assert_eq!(s.objects, 1);
        assert_eq!(s.denied, 2);
        assert_eq!(s.not_found, 3);
        assert_eq!(s.rejected, 6 + 4 + 1 + 1);
    }

    #[tokio::test]
    async fn sink_throttles_like_the_proxy() {
        use object_store::{ObjectStoreExt, PutPayload};
        let proxy = DelayProxy::start_sink(local(), Duration::ZERO)
            .await
            .unwrap();
        let store = s3_client(&proxy.endpoint(), "bench");
        proxy.throttle_next(1);
        let err = store
            .put(
                &object_store::path::Path::from("t"),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("SlowDown"), "{err}");
        store
            .put(
                &object_store::path::Path::from("t"),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
        let p = proxy.stats();
        assert_eq!((p.requests, p.throttled, p.forwarded), (2, 1, 1));
        assert_eq!(proxy.object_count(), 1);
        // The proxy mode has no sink.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = DelayProxy::start(upstream.local_addr().unwrap(), Duration::ZERO)
            .await
            .unwrap();
        assert!(plain.sink_stats().is_none());
        assert_eq!(plain.object_count(), 0);
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ))
    }
}
