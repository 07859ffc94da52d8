//! The listener: binds, accepts connections, serves each with hyper's HTTP/1 server, and
//! stops gracefully (stop accepting, let in-flight requests finish, then resolve
//! [`RunningReceiver::stopped`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracecast_core::{BatchSink, CancellationToken, ComponentId};

use crate::config::OtlpReceiverConfig;
use crate::error::ReceiverError;
use crate::handler::Handler;

/// The OTLP/HTTP traces receiver, built from its config and not yet listening.
pub struct OtlpReceiver {
    id: ComponentId,
    config: OtlpReceiverConfig,
    sink: Arc<dyn BatchSink>,
}

/// A started receiver.
#[derive(Debug)]
pub struct RunningReceiver {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl OtlpReceiver {
    /// `config` is expected to have passed [`tracecast_config::Validate`].
    pub fn new(id: ComponentId, config: OtlpReceiverConfig, sink: Arc<dyn BatchSink>) -> Self {
        Self { id, config, sink }
    }

    /// Binds the listener (errors name the address and the cause, e.g. address in use) and
    /// spawns the server, which runs until `shutdown` is cancelled.
    pub async fn start(
        self,
        shutdown: CancellationToken,
    ) -> Result<RunningReceiver, ReceiverError> {
        let endpoint = self.config.endpoint.clone();
        let bind_error = |e| ReceiverError::bind(self.id.to_string(), endpoint.clone(), e);
        let listener = TcpListener::bind(&endpoint).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;

        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout.get())
            .keep_alive(true);
        let handler = Arc::new(Handler::new(self.id.clone(), &self.config, self.sink));
        tracing::info!(receiver = %self.id, address = %local_addr, path = %self.config.path, "OTLP/HTTP receiver listening");
        let task = tokio::spawn(serve(listener, http, handler, self.id, shutdown));
        Ok(RunningReceiver { local_addr, task })
    }
}

impl RunningReceiver {
    /// Resolves when the server stopped accepting and every in-flight request was answered.
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
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
