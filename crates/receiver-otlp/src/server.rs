//! The listener: binds (or takes over a running receiver's socket), accepts connections,
//! serves each with hyper's HTTP/1 server, and stops gracefully (stop accepting, let
//! in-flight requests finish, then resolve [`RunningReceiver::stopped`]). Implements
//! [`tracecast_core::Receiver`] and its bound and running states, through which the runtime
//! drives it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracecast_core::{BatchSink, BindError, CancellationToken, ComponentId};

use crate::config::OtlpReceiverConfig;
use crate::error::ReceiverError;
use crate::handler::Handler;

/// The OTLP/HTTP traces receiver, built from its config and not yet listening.
pub struct OtlpReceiver {
    id: ComponentId,
    config: OtlpReceiverConfig,
    sink: Arc<dyn BatchSink>,
}

/// A receiver whose listener is bound but not yet accepting: a reload binds every new
/// listener before it changes anything, so a port in use refuses the whole reload and the
/// running listeners stay as they were. Connections that arrive before [`Self::serve`] wait
/// in the kernel's backlog.
pub struct BoundReceiver {
    receiver: OtlpReceiver,
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// A started receiver.
#[derive(Debug)]
pub struct RunningReceiver {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The endpoint as configured (what a new config is compared with to reuse the socket).
    endpoint: String,
    /// A second descriptor of the listening socket, so that a receiver with new settings on
    /// the same endpoint takes over this socket ([`OtlpReceiver::bind_shared`]) instead of
    /// closing and re-binding it (a moment with nothing listening, or a bind that fails).
    /// Dropped first on stop, so the socket closes as soon as the server stops accepting.
    socket: Option<std::net::TcpListener>,
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    /// `config` is expected to have passed [`tracecast_config::Validate`].
    pub fn new(id: ComponentId, config: OtlpReceiverConfig, sink: Arc<dyn BatchSink>) -> Self {
        Self { id, config, sink }
    }

    /// The configured `endpoint` (`host:port`).
    pub fn endpoint(&self) -> &str {
        &self.config.endpoint
    }

    /// Binds the listener (errors name the address and the cause, e.g. address in use) and
    /// spawns the server, which runs until `shutdown` is cancelled.
    pub async fn start(
        self,
        shutdown: CancellationToken,
    ) -> Result<RunningReceiver, ReceiverError> {
        Ok(self.bind().await?.serve(shutdown))
    }

    /// Binds the listener without accepting yet.
    pub async fn bind(self) -> Result<BoundReceiver, ReceiverError> {
        let endpoint = self.config.endpoint.clone();
        let bind_error = |e| ReceiverError::bind(self.id.to_string(), endpoint.clone(), e);
        let listener = TcpListener::bind(&endpoint).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(BoundReceiver {
            receiver: self,
            listener,
            local_addr,
        })
    }

    /// Takes over the socket `running` listens on (same endpoint, new settings). Both
    /// servers accept from it until the caller stops the old one; nothing is refused in
    /// between.
    pub fn bind_shared(self, running: &RunningReceiver) -> Result<BoundReceiver, ReceiverError> {
        self.share(running.socket.as_ref(), running.local_addr)
    }

    /// [`Self::bind_shared`] given the running receiver's socket and address.
    fn share(
        self,
        socket: Option<&std::net::TcpListener>,
        local_addr: SocketAddr,
    ) -> Result<BoundReceiver, ReceiverError> {
        let endpoint = self.config.endpoint.clone();
        let bind_error = |e| ReceiverError::bind(self.id.to_string(), endpoint.clone(), e);
        let socket = socket.ok_or_else(|| {
            bind_error(std::io::Error::other(
                "the running receiver's socket is already closing",
            ))
        })?;
        let listener = socket
            .try_clone()
            .and_then(TcpListener::from_std)
            .map_err(bind_error)?;
        Ok(BoundReceiver {
            receiver: self,
            listener,
            local_addr,
        })
    }
}

impl BoundReceiver {
    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts accepting; the server runs until `shutdown` is cancelled.
    pub fn serve(self, shutdown: CancellationToken) -> RunningReceiver {
        let Self {
            receiver,
            listener,
            local_addr,
        } = self;
        // A failed dup only means a later same-endpoint reload re-binds instead.
        let socket = dup_listener(&listener)
            .map_err(|e| tracing::debug!(receiver = %receiver.id, error = %e, "cannot duplicate the listening socket"))
            .ok();
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(receiver.config.header_read_timeout.get())
            .keep_alive(true);
        let handler = Arc::new(Handler::new(
            receiver.id.clone(),
            &receiver.config,
            receiver.sink,
        ));
        tracing::info!(receiver = %receiver.id, address = %local_addr, path = %receiver.config.path, "OTLP/HTTP receiver listening");
        let task = tokio::spawn(serve(listener, http, handler, receiver.id, shutdown));
        RunningReceiver {
            local_addr,
            endpoint: receiver.config.endpoint,
            socket,
            task,
        }
    }
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
    /// The endpoint as configured.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Resolves when the server stopped accepting and every in-flight request was answered.
    pub async fn stopped(mut self) {
        drop(self.socket.take());
        if let Err(e) = (&mut self.task).await {
            tracing::error!(address = %self.local_addr, error = %e, "OTLP receiver task failed");
        }
    }
}

async fn serve(
    listener: TcpListener,
    http: http1::Builder,
    handler: Arc<Handler>,
    id: ComponentId,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(
                        stream,
                        peer,
                        http.clone(),
                        handler.clone(),
                        id.clone(),
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(receiver = %id, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    tracing::info!(receiver = %id, in_flight_connections = connections.len(), "OTLP receiver stopped accepting; finishing in-flight requests");
    connections.close();
    connections.wait().await;
    tracing::info!(receiver = %id, "OTLP receiver stopped");
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    http: http1::Builder,
    handler: Arc<Handler>,
    id: ComponentId,
    shutdown: CancellationToken,
) {
    // Responses are small and written once; waiting for more data to coalesce only adds
    // latency.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handler.clone().handle(request));
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            // Finishes the request in progress (if any), then closes the connection.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(receiver = %id, peer = %peer, error = %e, "connection ended with an error");
    }
}

/// The runtime starts receivers through these traits (boxed); the inherent methods above
/// are the same steps for callers that hold the concrete type (the crate's tests).
#[async_trait::async_trait]
impl tracecast_core::Receiver for OtlpReceiver {
    fn endpoint(&self) -> &str {
        &self.config.endpoint
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
        self.local_addr
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
