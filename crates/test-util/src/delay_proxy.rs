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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
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

/// A running delaying proxy on 127.0.0.1; stops when dropped.
pub struct DelayProxy {
    addr: SocketAddr,
    control: Arc<Control>,
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
                        conns.spawn(serve_connection(socket, upstream, ctl.clone()));
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

/// One client connection: requests one after another, each over this connection's own
/// upstream connection (opened on the first forwarded request, reopened after a failure).
async fn serve_connection(socket: TcpStream, upstream: SocketAddr, control: Arc<Control>) {
    let sender: Arc<Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>> =
        Arc::default();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let control = control.clone();
        let sender = sender.clone();
        async move { Ok::<_, Infallible>(handle(req, upstream, &control, &sender).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(socket), service)
        .await;
}

async fn handle(
    req: Request<Incoming>,
    upstream: SocketAddr,
    control: &Arc<Control>,
    sender: &Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>,
) -> Response<ProxyBody> {
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
            let micros = |since: std::time::Instant| {
                u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
            };
            control.forwarded.fetch_add(1, Ordering::Relaxed);
            control
                .total_us
                .fetch_add(micros(arrived), Ordering::Relaxed);
            control
                .upstream_us
                .fetch_add(micros(forwarded), Ordering::Relaxed);
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

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ))
    }
}
