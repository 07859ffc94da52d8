//! The listeners: binds one socket per protocol (or takes over a running receiver's
//! sockets on reload), accepts connections, serves each with hyper (HTTP/1.1 and HTTP/2,
//! which gRPC needs), and stops gracefully (stop accepting, let in-flight requests finish,
//! then resolve [`RunningReceiver::stopped`]). Implements [`tracecast_core::Receiver`] and
//! its bound and running states, through which the runtime drives it.
//!
//! The runtime hands a replacing receiver one socket of the running one (the first
//! listener's, [`tracecast_core::RunningReceiver::socket`]); the others (gRPC beside HTTP)
//! are found in [`SHARED`], keyed by the first listener's bound address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracecast_core::{BatchSink, BindError, CancellationToken, ComponentId};

use crate::config::{Listen, OtlpReceiverConfig, Protocol};
use crate::error::ReceiverError;
use crate::handler::{Handler, Service};
use crate::tls::TlsServer;

/// Second descriptors of the listening sockets other than a running receiver's first,
/// keyed by that first socket's bound address (unique in the process while it is bound),
/// each with the running receiver that put it there: a receiver that took over the same
/// sockets registers its own, and the replaced one removes only its own when it stops.
static SHARED: Mutex<Vec<Shared>> = Mutex::new(Vec::new());

struct Shared {
    first: SocketAddr,
    endpoint: String,
    owner: u64,
    socket: std::net::TcpListener,
}

/// Tells running receivers apart in [`SHARED`].
static NEXT_OWNER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The OTLP traces receiver, built from its config and not yet listening.
pub struct OtlpReceiver {
    id: ComponentId,
    config: OtlpReceiverConfig,
    sink: Arc<dyn BatchSink>,
    listen: Vec<Listen>,
    /// Every listener's endpoint, as one string: a reload takes over the running sockets
    /// only when all of them are unchanged.
    endpoint: String,
}

/// One bound listening socket.
struct Bound {
    listen: Listen,
    listener: TcpListener,
    local_addr: SocketAddr,
    /// Its TLS, loaded when it was bound (so bad files fail the start or the reload).
    tls: Option<Arc<TlsServer>>,
}

/// A receiver whose listeners are bound but not yet accepting: a reload binds every new
/// listener before it changes anything, so a port in use refuses the whole reload and the
/// running listeners stay as they were. Connections that arrive before [`Self::serve`] wait
/// in the kernel's backlog.
pub struct BoundReceiver {
    receiver: OtlpReceiver,
    bound: Vec<Bound>,
}

/// A started receiver.
#[derive(Debug)]
pub struct RunningReceiver {
    /// The address actually bound by the first listener (OTLP/HTTP when it is on); useful
    /// with port 0.
    pub local_addr: SocketAddr,
    /// Every listener's protocol and bound address.
    addrs: Vec<(Protocol, SocketAddr)>,
    /// The endpoints as configured (what a new config is compared with to reuse the sockets).
    endpoint: String,
    /// A second descriptor of the first listening socket, so that a receiver with new
    /// settings on the same endpoints takes over this socket ([`OtlpReceiver::bind_shared`])
    /// instead of closing and re-binding it (a moment with nothing listening, or a bind
    /// that fails). Dropped first on stop, so the socket closes as soon as the server stops
    /// accepting.
    socket: Option<std::net::TcpListener>,
    /// Its entries in [`SHARED`].
    owner: u64,
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    /// `config` is expected to have passed [`tracecast_config::Validate`].
    pub fn new(id: ComponentId, config: OtlpReceiverConfig, sink: Arc<dyn BatchSink>) -> Self {
        let listen = config.listeners();
        let endpoint = listen
            .iter()
            .map(|l| match l.protocol {
                Protocol::Http => l.endpoint.clone(),
                Protocol::Grpc => format!("grpc {}", l.endpoint),
            })
            .collect::<Vec<_>>()
            .join(" + ");
        Self {
            id,
            config,
            sink,
            listen,
            endpoint,
        }
    }

    /// The configured endpoints (`host:port`, `grpc host:port` for OTLP/gRPC).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Binds the listeners (errors name the address and the cause, e.g. address in use)
    /// and spawns the server, which runs until `shutdown` is cancelled.
    pub async fn start(
        self,
        shutdown: CancellationToken,
    ) -> Result<RunningReceiver, ReceiverError> {
        Ok(self.bind().await?.serve(shutdown))
    }

    /// Binds the listeners without accepting yet.
    pub async fn bind(self) -> Result<BoundReceiver, ReceiverError> {
        let mut bound = Vec::new();
        for listen in &self.listen {
            let bind_error =
                |e| ReceiverError::bind(self.id.to_string(), listen.endpoint.clone(), e);
            let listener = TcpListener::bind(&listen.endpoint)
                .await
                .map_err(bind_error)?;
            let local_addr = listener.local_addr().map_err(bind_error)?;
            bound.push(Bound {
                listen: listen.clone(),
                listener,
                local_addr,
                tls: self.load_tls(listen)?,
            });
        }
        Ok(BoundReceiver {
            receiver: self,
            bound,
        })
    }

    /// The TLS of `listen`, its files read now.
    fn load_tls(&self, listen: &Listen) -> Result<Option<Arc<TlsServer>>, ReceiverError> {
        let Some(config) = &listen.tls else {
            return Ok(None);
        };
        TlsServer::load(config, self.id.as_str())
            .map(|t| Some(Arc::new(t)))
            .map_err(|message| ReceiverError::Tls {
                receiver: self.id.to_string(),
                endpoint: listen.endpoint.clone(),
                message,
            })
    }

    /// Takes over the sockets `running` listens on (same endpoints, new settings). Both
    /// servers accept from them until the caller stops the old one; nothing is refused in
    /// between.
    pub fn bind_shared(self, running: &RunningReceiver) -> Result<BoundReceiver, ReceiverError> {
        self.share(running.socket.as_ref(), running.local_addr)
    }

    /// [`Self::bind_shared`] given the running receiver's first socket and its address.
    fn share(
        self,
        socket: Option<&std::net::TcpListener>,
        local_addr: SocketAddr,
    ) -> Result<BoundReceiver, ReceiverError> {
        let mut bound = Vec::new();
        let shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        for (i, listen) in self.listen.iter().enumerate() {
            let bind_error =
                |e| ReceiverError::bind(self.id.to_string(), listen.endpoint.clone(), e);
            let found = if i == 0 {
                socket.map(|s| (s, local_addr))
            } else {
                shared
                    .iter()
                    .find(|e| e.first == local_addr && e.endpoint == listen.endpoint)
                    .and_then(|e| Some((&e.socket, e.socket.local_addr().ok()?)))
            };
            let (socket, addr) = found.ok_or_else(|| {
                bind_error(std::io::Error::other(
                    "the running receiver's socket is already closing",
                ))
            })?;
            let listener = socket
                .try_clone()
                .and_then(TcpListener::from_std)
                .map_err(bind_error)?;
            bound.push(Bound {
                listen: listen.clone(),
                listener,
                local_addr: addr,
                tls: self.load_tls(listen)?,
            });
        }
        Ok(BoundReceiver {
            receiver: self,
            bound,
        })
    }
}

impl BoundReceiver {
    /// The address bound by the first listener (OTLP/HTTP when it is on).
    pub fn local_addr(&self) -> SocketAddr {
        first_addr(&self.bound)
    }

    /// Starts accepting; the server runs until `shutdown` is cancelled.
    pub fn serve(self, shutdown: CancellationToken) -> RunningReceiver {
        let Self { receiver, bound } = self;
        let local_addr = first_addr(&bound);
        let owner = NEXT_OWNER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut socket = None;
        let mut addrs = Vec::new();
        let mut listeners = Vec::new();
        let handler = Handler::new(receiver.id.clone(), &receiver.config, receiver.sink.clone());
        for (i, b) in bound.into_iter().enumerate() {
            // A failed dup only means a later same-endpoint reload re-binds instead.
            let dup = dup_listener(&b.listener)
                .map_err(|e| tracing::debug!(receiver = %receiver.id, error = %e, "cannot duplicate the listening socket"))
                .ok();
            if i == 0 {
                socket = dup;
            } else if let Some(dup) = dup {
                SHARED
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Shared {
                        first: local_addr,
                        endpoint: b.listen.endpoint.clone(),
                        owner,
                        socket: dup,
                    });
            }
            addrs.push((b.listen.protocol, b.local_addr));
            let service = Service::new(&handler, &b.listen);
            let builder = connection_builder(&receiver.config, &b.listen);
            let tls = b.tls.is_some();
            match b.listen.protocol {
                Protocol::Http => {
                    tracing::info!(receiver = %receiver.id, address = %b.local_addr, path = %b.listen.path, tls, "OTLP/HTTP receiver listening")
                }
                Protocol::Grpc => {
                    tracing::info!(receiver = %receiver.id, address = %b.local_addr, tls, "OTLP/gRPC receiver listening")
                }
            }
            let handshake_timeout = receiver.config.header_read_timeout.get();
            listeners.push(Listening {
                listener: b.listener,
                builder,
                service,
                tls: b.tls.map(|t| (t, handshake_timeout)),
            });
        }
        let task = tokio::spawn(serve(listeners, receiver.id, shutdown));
        RunningReceiver {
            local_addr,
            addrs,
            endpoint: receiver.endpoint,
            socket,
            owner,
            task,
        }
    }
}

fn first_addr(bound: &[Bound]) -> SocketAddr {
    bound
        .first()
        .map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |b| b.local_addr)
}

/// HTTP/1.1 and HTTP/2 (prior knowledge, as gRPC clients speak it in clear) on one socket.
fn connection_builder(
    config: &OtlpReceiverConfig,
    listen: &Listen,
) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout.get())
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(listen.max_concurrent_streams)
        // Pings keep idle gRPC connections through NATs and find dead peers.
        .keep_alive_interval(Some(Duration::from_secs(60)));
    builder
}

/// A second, non-blocking descriptor of `listener`'s socket.
fn dup_listener(listener: &TcpListener) -> std::io::Result<std::net::TcpListener> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = listener.as_fd().try_clone_to_owned()?;
        Ok(std::net::TcpListener::from(fd))
    }
    #[cfg(not(unix))]
    {
        let _ = listener;
        Err(std::io::Error::other("not supported on this platform"))
    }
}

impl RunningReceiver {
    /// The endpoints as configured.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The address the listener of `protocol` is bound to, if that protocol is on.
    pub fn addr(&self, protocol: Protocol) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(p, _)| *p == protocol)
            .map(|(_, a)| *a)
    }

    fn release_shared(&mut self) {
        drop(self.socket.take());
        let owner = self.owner;
        SHARED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|e| e.owner != owner);
    }

    /// Resolves when the server stopped accepting and every in-flight request was answered.
    pub async fn stopped(mut self) {
        self.release_shared();
        if let Err(e) = (&mut self.task).await {
            tracing::error!(address = %self.local_addr, error = %e, "OTLP receiver task failed");
        }
    }
}

impl Drop for RunningReceiver {
    fn drop(&mut self) {
        self.release_shared();
    }
}

/// A listener ready to accept, with how it serves its connections.
struct Listening {
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    service: Service,
    /// TLS and the time a client has to finish its handshake.
    tls: Option<(Arc<TlsServer>, Duration)>,
}

async fn serve(listeners: Vec<Listening>, id: ComponentId, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    let accepting = TaskTracker::new();
    for listening in listeners {
        accepting.spawn(accept(
            listening,
            id.clone(),
            shutdown.clone(),
            connections.clone(),
        ));
    }
    accepting.close();
    accepting.wait().await;
    tracing::info!(receiver = %id, in_flight_connections = connections.len(), "OTLP receiver stopped accepting; finishing in-flight requests");
    connections.close();
    connections.wait().await;
    tracing::info!(receiver = %id, "OTLP receiver stopped");
}

async fn accept(
    listening: Listening,
    id: ComponentId,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    let Listening {
        listener,
        builder,
        service,
        tls,
    } = listening;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Responses are small and written once; waiting for more data to
                    // coalesce only adds latency.
                    let _ = stream.set_nodelay(true);
                    let connection = Connection {
                        peer,
                        builder: builder.clone(),
                        service: service.clone(),
                        id: id.clone(),
                        shutdown: shutdown.clone(),
                    };
                    match &tls {
                        None => {
                            connections.spawn(connection.serve(stream));
                        }
                        Some((tls, timeout)) => {
                            // Taken per connection: picks up renewed certificate files.
                            let acceptor = tls.acceptor();
                            connections.spawn(connection.handshake(acceptor, stream, *timeout));
                        }
                    }
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(receiver = %id, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// One accepted connection and what serves it.
struct Connection {
    peer: SocketAddr,
    builder: auto::Builder<TokioExecutor>,
    service: Service,
    id: ComponentId,
    shutdown: CancellationToken,
}

impl Connection {
    /// The TLS handshake (bounded in time, abandoned on shutdown), then [`Self::serve`].
    async fn handshake(self, acceptor: TlsAcceptor, stream: TcpStream, timeout: Duration) {
        let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
        let stream = tokio::select! {
            result = handshake => match result {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(receiver = %self.id, peer = %self.peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(receiver = %self.id, peer = %self.peer, "TLS handshake timed out");
                    return;
                }
            },
            () = self.shutdown.cancelled() => return,
        };
        self.serve(stream).await;
    }

    async fn serve<I>(self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            builder,
            service,
            id,
            shutdown,
        } = self;
        let service = service_fn(move |request| service.clone().call(request));
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = shutdown.cancelled() => {
                // Finishes the requests in progress (if any), then closes the connection.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(receiver = %id, peer = %peer, error = %e, "connection ended with an error");
        }
    }
}

/// The runtime starts receivers through these traits (boxed); the inherent methods above
/// are the same steps for callers that hold the concrete type (the crate's tests).
#[async_trait::async_trait]
impl tracecast_core::Receiver for OtlpReceiver {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn bind(self: Box<Self>) -> Result<Box<dyn tracecast_core::BoundReceiver>, BindError> {
        match OtlpReceiver::bind(*self).await {
            Ok(bound) => Ok(Box::new(bound)),
            Err(e) => Err(BindError(Box::new(e))),
        }
    }

    fn take_over(
        self: Box<Self>,
        running: &dyn tracecast_core::RunningReceiver,
    ) -> Result<Box<dyn tracecast_core::BoundReceiver>, BindError> {
        let bound = self.share(running.socket(), running.local_addr());
        match bound {
            Ok(bound) => Ok(Box::new(bound)),
            Err(e) => Err(BindError(Box::new(e))),
        }
    }
}

impl tracecast_core::BoundReceiver for BoundReceiver {
    fn local_addr(&self) -> SocketAddr {
        BoundReceiver::local_addr(self)
    }

    fn serve(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> Box<dyn tracecast_core::RunningReceiver> {
        Box::new(BoundReceiver::serve(*self, shutdown))
    }
}

#[async_trait::async_trait]
impl tracecast_core::RunningReceiver for RunningReceiver {
    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn socket(&self) -> Option<&std::net::TcpListener> {
        self.socket.as_ref()
    }

    async fn stopped(self: Box<Self>) {
        RunningReceiver::stopped(*self).await
    }
}
