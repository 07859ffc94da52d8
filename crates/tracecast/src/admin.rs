//! The admin endpoint: `/metrics` (Prometheus text), `/healthz` (alive), `/readyz`
//! (receivers listening and every destination up; the body names the ones that are not),
//! and the status page for people: `/status` (also `/`) as HTML and `/status.json` with the
//! same data (see [`crate::status`]), with two actions the page's buttons call:
//!
//! - `POST /actions/test-connection` (form field `destination`): the same connection test as
//!   `tracecast check`, for one destination; its result becomes the destination's state.
//! - `POST /actions/send-test-trace` (optional form field `pipeline`): sends a test trace
//!   through the daemon's own receiver and reports where it went, like
//!   `tracecast send-test-trace`.
//!
//! Actions are POST-only and refused from another origin: a browser's `Sec-Fetch-Site` must
//! say `same-origin` (or `none`), an `Origin` must be this endpoint's, and the `Host` must
//! be an IP address or `localhost` (a page on another site that rebinds its DNS name to
//! 127.0.0.1 sends its own name). Clients that are not browsers (curl, scripts) send
//! neither header and are let through: the endpoint listens on loopback by default, and
//! whoever can reach it can read `/metrics` anyway. Nothing served here holds a secret.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracecast_core::{CancellationToken, ComponentId};
use tracing::warn;

use crate::status::{html, test_trace, StatusState};
use crate::{check, pipeline};

pub use tracecast_runtime::health::Readiness;

/// Largest action request body (a form with one short field).
const MAX_ACTION_BODY: usize = 4 * 1024;

/// How long the page's "Send a test trace" follows the trace before answering.
pub const TEST_TRACE_WAIT: Duration = Duration::from_secs(30);

/// What the status page's HTML may load: nothing from anywhere; its own inline style and
/// script, and requests to its own origin.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; img-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The process-wide registry with every tracecast metric family (see
/// [`tracecast_runtime::metrics_registry`]).
pub fn registry() -> Registry {
    tracecast_runtime::metrics_registry()
}

/// Serves the admin endpoint on `addr` until `stop` fires. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<StatusState>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let registry = Arc::new(registry());
    crate::status::rates::Rates::spawn(state.clone(), stop.clone());
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
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (registry, state) = (registry.clone(), state.clone());
                    async move { Ok::<_, std::convert::Infallible>(route(req, &registry, &state).await) }
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
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => text(status, body, "application/json"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding JSON failed: {e}\n"),
            "text/plain",
        ),
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("use {allow}\n"),
        "text/plain",
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

async fn route(
    req: Request<Incoming>,
    registry: &Registry,
    state: &StatusState,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    match path.as_str() {
        "/actions/test-connection" | "/actions/send-test-trace" => {
            if req.method() != Method::POST {
                return method_not_allowed("POST");
            }
            return action(req, &path, state).await;
        }
        "/metrics" | "/healthz" | "/readyz" | "/status" | "/" | "/status.json" if !is_get => {
            return method_not_allowed("GET");
        }
        _ => {}
    }
    match path.as_str() {
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
        "/readyz" => readyz(&state.readiness),
        "/status" | "/" => {
            let page = html::page(&state.collect().await);
            let mut resp = text(StatusCode::OK, page, "text/html; charset=utf-8");
            let h = resp.headers_mut();
            h.insert(
                "content-security-policy",
                HeaderValue::from_static(PAGE_CSP),
            );
            h.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
            resp
        }
        "/status.json" => json(StatusCode::OK, &state.collect().await),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /status, /status.json, /metrics, /healthz or /readyz\n",
            "text/plain",
        ),
    }
}

fn readyz(readiness: &Readiness) -> Response<Full<Bytes>> {
    if readiness.is_ready() {
        return text(StatusCode::OK, "ready\n", "text/plain");
    }
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

/// Refuses a request a browser sent from another origin (see the module docs).
pub fn same_origin(headers: &hyper::HeaderMap) -> Result<(), String> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = header(HOST.as_str());
    if let Some(host) = host {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if name.parse::<IpAddr>().is_err() && !name.eq_ignore_ascii_case("localhost") {
            return Err(format!(
                "refused: the admin endpoint answers actions only when addressed by IP or as localhost, not as {host:?}"
            ));
        }
    }
    if let Some(site) = header("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return Err(format!(
                "refused: a request from another site (Sec-Fetch-Site: {site})"
            ));
        }
    }
    if let Some(origin) = header(ORIGIN.as_str()) {
        let expected = host.map(|h| format!("http://{h}"));
        if expected.as_deref() != Some(origin) {
            return Err(format!("refused: a request from another origin ({origin})"));
        }
    }
    Ok(())
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
pub fn form_value(body: &[u8], name: &str) -> Option<String> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |b| *b == b'=');
        let k = percent_decode(kv.next()?)?;
        (k == name).then(|| percent_decode(kv.next().unwrap_or_default()))?
    })
}

fn percent_decode(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[derive(serde::Serialize)]
struct ActionError {
    ok: bool,
    text: String,
}

fn action_error(status: StatusCode, why: impl Into<String>) -> Response<Full<Bytes>> {
    json(
        status,
        &ActionError {
            ok: false,
            text: why.into(),
        },
    )
}

async fn action(req: Request<Incoming>, path: &str, state: &StatusState) -> Response<Full<Bytes>> {
    if let Err(why) = same_origin(req.headers()) {
        return action_error(StatusCode::FORBIDDEN, why);
    }
    let body = match Limited::new(req.into_body(), MAX_ACTION_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return action_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the form is larger than {MAX_ACTION_BODY} bytes"),
            )
        }
    };
    match path {
        "/actions/test-connection" => test_connection(&body, state).await,
        _ => send_test_trace(&body, state).await,
    }
}

#[derive(serde::Serialize)]
struct Tested {
    ok: bool,
    destination: String,
    reason: Option<String>,
    text: String,
}

async fn test_connection(body: &[u8], state: &StatusState) -> Response<Full<Bytes>> {
    let Some(name) = form_value(body, "destination") else {
        return action_error(StatusCode::BAD_REQUEST, "name a destination");
    };
    let config = state.config();
    let used = pipeline::used_exporters(&config);
    let Some(id) = ComponentId::parse(&name)
        .ok()
        .filter(|id| used.contains(id))
    else {
        return action_error(
            StatusCode::NOT_FOUND,
            format!("no pipeline uses a destination called {name:?}"),
        );
    };
    let results = check::test_some_destinations(&config, Some(std::slice::from_ref(&id))).await;
    state.readiness.reconcile(&used, &results);
    let outcome = results
        .into_iter()
        .next()
        .map_or_else(|| Err("not tested".to_string()), |r| r.outcome);
    tracecast_core::metrics::DESTINATION_UP
        .get_or_create(&tracecast_core::metrics::component(id.as_str()))
        .set(i64::from(outcome.is_ok()));
    let text = match &outcome {
        Ok(()) => format!("{id}: connection test passed"),
        Err(why) => format!("{id}: connection test FAILED: {why}"),
    };
    json(
        StatusCode::OK,
        &Tested {
            ok: outcome.is_ok(),
            destination: id.to_string(),
            reason: outcome.err(),
            text,
        },
    )
}

#[derive(serde::Serialize)]
struct Sent {
    ok: bool,
    text: String,
    report: test_trace::Report,
}

async fn send_test_trace(body: &[u8], state: &StatusState) -> Response<Full<Bytes>> {
    let pipeline = form_value(body, "pipeline").filter(|p| !p.is_empty());
    let config = state.config();
    let target =
        match test_trace::target(&config, pipeline.as_deref(), |id| state.receiver_addr(id)) {
            Ok(t) => t,
            Err(why) => return action_error(StatusCode::BAD_REQUEST, why),
        };
    let client = reqwest::Client::new();
    let trace = test_trace::build();
    let report = test_trace::send_and_follow(&client, &target, &trace, TEST_TRACE_WAIT, || async {
        Ok(state.collect().await)
    })
    .await;
    json(
        StatusCode::OK,
        &Sent {
            ok: report.ok(),
            text: report.text(),
            report,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn same_origin_requests_pass_and_others_are_refused() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:13133")])).is_ok());
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:13133"),
            ("origin", "http://127.0.0.1:13133"),
            ("sec-fetch-site", "same-origin"),
        ]))
        .is_ok());
        assert!(same_origin(&headers(&[("host", "[::1]:13133")])).is_ok());
        assert!(same_origin(&headers(&[("host", "localhost:13133")])).is_ok());
        // Cross-site, another origin, a rebound DNS name.
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:13133"),
            ("sec-fetch-site", "cross-site"),
        ]))
        .is_err());
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:13133"),
            ("origin", "http://evil.example"),
        ]))
        .is_err());
        assert!(same_origin(&headers(&[
            ("host", "evil.example:13133"),
            ("origin", "http://evil.example:13133"),
        ]))
        .is_err());
        assert!(same_origin(&headers(&[("host", "127.0.0.1:13133"), ("origin", "null")])).is_err());
    }

    #[test]
    fn form_values_are_decoded_and_bad_encodings_ignored() {
        assert_eq!(
            form_value(b"a=1&destination=otlp%2Faxiom", "destination").as_deref(),
            Some("otlp/axiom")
        );
        assert_eq!(
            form_value(b"pipeline=a+b", "pipeline").as_deref(),
            Some("a b")
        );
        assert_eq!(form_value(b"pipeline", "pipeline").as_deref(), Some(""));
        assert_eq!(form_value(b"pipeline=%zz", "pipeline"), None);
        assert_eq!(form_value(b"pipeline=%ff", "pipeline"), None, "not UTF-8");
        assert_eq!(form_value(b"other=1", "pipeline"), None);
    }
}
