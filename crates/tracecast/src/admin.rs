//! The admin endpoint: `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz`
//! (receivers listening and every destination up; the body names the ones that are not).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracecast_core::{CancellationToken, ComponentId};
use tracing::warn;

use crate::check::DestinationResult;

/// What `/readyz` reports, updated by the service.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Receivers are listening.
    pub listening: AtomicBool,
    /// Destinations known to be down, with why. Per destination (not one flag) so that a
    /// daemon started on a taken config during an outage says which backend it waits for.
    down: Mutex<BTreeMap<ComponentId, String>>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.listening.load(Ordering::Relaxed) && self.down_destinations().is_empty()
    }

    /// Replaces what is known about every destination with `results`.
    pub fn set_destinations(&self, results: &[DestinationResult]) {
        let down = results
            .iter()
            .filter_map(|r| r.outcome.clone().err().map(|why| (r.id.clone(), why)))
            .collect();
        *self.down.lock().unwrap_or_else(|p| p.into_inner()) = down;
    }

    /// After a reload: forgets destinations not in `running`, and takes `tested` (the new or
    /// changed ones, which just passed their test) as they are.
    pub fn reconcile(&self, running: &[ComponentId], tested: &[DestinationResult]) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        down.retain(|id, _| running.contains(id));
        for r in tested {
            match &r.outcome {
                Ok(()) => down.remove(&r.id),
                Err(why) => down.insert(r.id.clone(), why.clone()),
            };
        }
    }

    /// The destinations that are down, with why.
    pub fn down_destinations(&self) -> Vec<(ComponentId, String)> {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, why)| (id.clone(), why.clone()))
            .collect()
    }
}

/// The process-wide registry with every tracecast metric family, with
/// `tracecast_build_info{version}` set to 1 for this build.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    tracecast_core::metrics::register(&mut registry);
    tracecast_core::metrics::set_build_info(env!("CARGO_PKG_VERSION"));
    registry
}

/// Serves the admin endpoint on `addr` until `stop` fires. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let registry = Arc::new(registry());
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => { warn!("admin endpoint accept failed: {e}"); continue; }
                },
            };
            let registry = registry.clone();
            let readiness = readiness.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let resp = route(&req, &registry, &readiness);
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn route(
    req: &Request<Incoming>,
    registry: &Registry,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n", "text/plain");
    }
    match req.uri().path() {
        "/metrics" => {
            let mut body = String::new();
            match encode(&mut body, registry) {
                Ok(()) => text(
                    StatusCode::OK,
                    body,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding metrics failed: {e}\n"),
                    "text/plain",
                ),
            }
        }
        "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
        "/readyz" => {
            if readiness.is_ready() {
                text(StatusCode::OK, "ready\n", "text/plain")
            } else {
                let why = if !readiness.listening.load(Ordering::Relaxed) {
                    "receivers are not listening".to_string()
                } else {
                    readiness
                        .down_destinations()
                        .iter()
                        .map(|(id, why)| format!("destination {id} is down ({why})"))
                        .collect::<Vec<_>>()
                        .join("; ")
                        + "; its spans wait in the durable queue"
                };
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                    "text/plain",
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /healthz or /readyz\n",
            "text/plain",
        ),
    }
}
