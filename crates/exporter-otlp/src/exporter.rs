//! [`OtlpExporter`]: the sending queue, its consumers, one export per batch through the
//! shared retry loop, and the connection test.
//!
//! Flow: `run` moves batches from the pipeline's channel into a bounded queue
//! (`sending_queue.queue_size`); `num_consumers` tasks take batches from it, encode and
//! compress each once, and post the same bytes on every attempt. When the queue is full the
//! pipeline's channel fills and back-pressure reaches the receiver.
//!
//! A batch is held (with its delivery tokens) until its export is final: delivered, or
//! kept in the dead-letter folder after a permanent rejection or exhausted retries. At the
//! hard stop every batch not delivered is abandoned, never silently acknowledged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry::KeyValue;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracecast_core::ack::Claims;
use tracecast_core::metrics::{self, component, reason};
use tracecast_core::retry::{retry, RetryError, RetryPolicy};
use tracecast_core::{
    CancellationToken, ComponentId, ExportError, ExportTraceServiceRequest, Exporter, TraceBatch,
};

use crate::classify::{self, PartialSuccess};
use crate::config::{Compression, Encoding, ValidOtlpExporterConfig};
use crate::dead_letter::{self, DeadLetter, Reason};
use crate::encode;
use crate::error::OtlpExporterError;

/// Most of an answer's body that is read; enough for any error message or
/// `partial_success`, and a misbehaving backend cannot make us buffer a page.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// The OTLP/HTTP forwarder. Build with [`OtlpExporter::new`]; the pipeline runtime then
/// calls [`Exporter::run`].
pub struct OtlpExporter {
    sender: Arc<Sender>,
    queue_size: usize,
    max_spans: usize,
    num_consumers: usize,
}

/// Everything one export attempt needs; shared by the consumers.
struct Sender {
    id: ComponentId,
    client: reqwest::Client,
    url: reqwest::Url,
    /// `host:port`, for messages.
    target: String,
    /// `scheme://host:port/path`: the endpoint without user info or query (may hold tokens).
    shown: String,
    /// Configured headers plus `Content-Type` and `Content-Encoding`.
    headers: HeaderMap,
    encoding: Encoding,
    compression: Compression,
    compression_level: u32,
    policy: RetryPolicy,
    timeout: Duration,
    dead_letter: DeadLetter,
}

/// An HTTP answer with at most [`MAX_RESPONSE_BODY`] of its body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl OtlpExporter {
    /// Builds the exporter from its validated config: sets up the HTTP client (system roots
    /// plus the configured CA, the client certificate if any). Reads and parses nothing;
    /// fails only when the TLS stack cannot be set up. No network I/O; see
    /// `test_connection` for that.
    pub fn new(
        id: ComponentId,
        valid: &ValidOtlpExporterConfig,
    ) -> Result<Self, OtlpExporterError> {
        let config = &valid.config;
        let url = valid.url.clone();
        let mut headers = valid.headers.clone();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(encode::content_type(config.encoding)),
        );
        if let Some(ce) = encode::content_encoding(config.compression) {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static(ce));
        }

        let timeout = config.timeout.get();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tracecast/", env!("CARGO_PKG_VERSION")))
            .tls_certs_merge(valid.tls.ca_certs.iter().cloned());
        if let Some(identity) = &valid.tls.identity {
            builder = builder.identity(identity.clone());
        }
        if valid.tls.insecure_skip_verify {
            tracing::warn!(
                exporter = %id,
                "tls.insecure_skip_verify is on: any server certificate is accepted; use it only for testing"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| OtlpExporterError::Client(e.to_string()))?;

        let host = url.host_str().unwrap_or_default().to_string();
        let target = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        let shown = format!("{}://{}{}", url.scheme(), target, url.path());
        let dead_letter = DeadLetter::new(dead_letter::effective_dir(&id, config))
            .bounded(config.dead_letter_max_size.get(), id.as_str());
        Ok(Self {
            sender: Arc::new(Sender {
                id,
                client,
                url,
                target,
                shown,
                headers,
                encoding: config.encoding,
                compression: config.compression,
                compression_level: config.compression_level,
                policy: config.retry_on_failure.policy(),
                timeout,
                dead_letter,
            }),
            queue_size: config.sending_queue.queue_size,
            max_spans: config.sending_queue.max_spans,
            num_consumers: config.sending_queue.num_consumers,
        })
    }

    /// The endpoint as logged: no user info, no query.
    pub fn endpoint(&self) -> &str {
        &self.sender.shown
    }
}

#[async_trait]
impl Exporter for OtlpExporter {
    /// Posts an empty export request with `X-Test-Connection: true`. A 2xx or a 400 passes
    /// (some backends refuse empty payloads); anything else is explained in plain words.
    async fn test_connection(&self) -> Result<(), ExportError> {
        let s = &self.sender;
        let body = encode::encode_request(&ExportTraceServiceRequest::default(), s.encoding);
        let body = encode::compress(body, s.compression, s.compression_level).map_err(|e| {
            ExportError::permanent(format!("cannot compress the test request: {e}"))
        })?;
        let answer = s.post(body, true).await?;
        let code = answer.status.as_u16();
        if answer.status.is_success() || code == 400 {
            return Ok(());
        }
        let detail = classify::backend_message(
            answer
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            &answer.body,
        );
        let says = if detail.is_empty() {
            String::new()
        } else {
            format!(" (backend says: {detail})")
        };
        Err(match code {
            401 | 403 => ExportError::permanent(format!(
                "authentication failed (HTTP {code}): check the Authorization header / token{says}"
            )),
            404 => ExportError::permanent(format!(
                "HTTP 404: is the endpoint the full traces URL, ending in /v1/traces? (POST {}){says}",
                s.shown
            )),
            _ => classify::status_error(
                answer.status,
                &answer.headers,
                &answer.body,
                SystemTime::now(),
            ),
        })
    }

    async fn run(
        self: Box<Self>,
        mut input: mpsc::Receiver<TraceBatch>,
        hard_stop: CancellationToken,
    ) {
        let sender = self.sender;
        let id = sender.id.as_str().to_string();
        let depth = metrics::QUEUE_DEPTH.get_or_create(&component(&id)).clone();
        let (tx, rx) = mpsc::channel::<Queued>(self.queue_size);
        let span_budget = Arc::new(tokio::sync::Semaphore::new(self.max_spans));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut consumers = JoinSet::new();
        for _ in 0..self.num_consumers {
            consumers.spawn(consume(
                sender.clone(),
                rx.clone(),
                hard_stop.clone(),
                depth.clone(),
            ));
        }

        // Spans given up at the hard stop while still queued (the consumers count theirs).
        let mut dropped_queued = 0usize;
        loop {
            let batch = tokio::select! {
                biased;
                _ = hard_stop.cancelled() => break,
                batch = input.recv() => batch,
            };
            let Some(batch) = batch else { break };
            let spans = batch.span_count();
            // The batch's share of `max_spans` (all of it for a larger batch), held until
            // its export is final; then a slot in the queue. Both first, so the batch never
            // sits in a future the hard stop drops.
            let share = u32::try_from(spans.clamp(1, self.max_spans)).unwrap_or(u32::MAX);
            let reserved = tokio::select! {
                biased;
                _ = hard_stop.cancelled() => None,
                reserved = async {
                    let spans = span_budget.clone().acquire_many_owned(share).await.ok()?;
                    let slot = tx.reserve().await.ok()?;
                    Some((spans, slot))
                } => reserved,
            };
            match reserved {
                Some((spans_held, slot)) => {
                    slot.send(Queued {
                        batch,
                        _spans_held: spans_held,
                    });
                    depth.set((tx.max_capacity() - tx.capacity()) as i64);
                }
                None => {
                    // The hard stop, or every consumer gone (only possible after it).
                    dropped_queued += spans;
                    batch.abandon();
                    break;
                }
            }
        }
        drop(tx);

        let mut undelivered = 0usize;
        while let Some(joined) = consumers.join_next().await {
            match joined {
                Ok(n) => undelivered += n,
                Err(e) => tracing::error!(exporter = %id, error = %e, "an export task failed"),
            }
        }
        if hard_stop.is_cancelled() {
            let mut rx = rx.lock().await;
            while let Ok(Queued { batch, .. }) = rx.try_recv() {
                dropped_queued += batch.span_count();
                batch.abandon();
            }
            input.close();
            while let Ok(batch) = input.try_recv() {
                dropped_queued += batch.span_count();
                batch.abandon();
            }
            metrics::SPANS_FAILED
                .get_or_create(&reason(&id, "shutdown"))
                .inc_by(dropped_queued as u64);
            undelivered += dropped_queued;
            if undelivered > 0 {
                tracing::error!(
                    exporter = %id,
                    spans = undelivered,
                    "shutdown deadline reached: {undelivered} spans were not delivered"
                );
            }
        }
        depth.set(0);
    }
}

/// One consumer: takes batches from the queue until it is closed and empty, or the hard
/// stop. Returns the spans it gave up at the hard stop.
async fn consume(
    sender: Arc<Sender>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>,
    hard_stop: CancellationToken,
    depth: Gauge,
) -> usize {
    let mut undelivered = 0;
    loop {
        let next = async {
            let mut rx = rx.lock().await;
            let batch = rx.recv().await;
            depth.set(rx.len() as i64);
            batch
        };
        let batch = tokio::select! {
            biased;
            _ = hard_stop.cancelled() => None,
            batch = next => batch,
        };
        let Some(Queued {
            batch,
            _spans_held: spans_held,
        }) = batch
        else {
            return undelivered;
        };
        // A panic while exporting is contained to its batch: the batch's claims are
        // dropped unsettled (its entries go back to the pipeline) and this consumer goes on.
        let delivered = std::panic::AssertUnwindSafe(sender.deliver(batch, &hard_stop))
            .catch_unwind()
            .await;
        // The export is final (or the batch's claims went back): its spans leave memory.
        drop(spans_held);
        match delivered {
            Ok(n) => undelivered += n,
            Err(panic) => tracing::error!(
                exporter = %sender.id,
                "export panicked ({}); the batch's entries go back to the pipeline",
                tracecast_core::panic_message(&panic)
            ),
        }
    }
}

/// A batch in the sending queue with its share of `sending_queue.max_spans`, released when
/// its export is final.
struct Queued {
    batch: TraceBatch,
    _spans_held: tokio::sync::OwnedSemaphorePermit,
}

/// Batches from this many spans are encoded and compressed on a background thread
/// (`tracecast_core::background`).
const BLOCKING_ENCODE_SPANS: usize = 256;

impl Sender {
    /// Exports one batch with retries; logs and counts the outcome. Returns the spans not
    /// delivered because of the hard stop (0 otherwise: failures are counted, not returned).
    /// The batch's claims are held until the outcome is final, then confirmed (delivered
    /// or dead-lettered) or abandoned (hard stop); dropped unsettled when the dead-letter
    /// write fails too or a panic unwinds (not delivered: the pipeline retries them).
    async fn deliver(&self, mut batch: TraceBatch, hard_stop: &CancellationToken) -> usize {
        let id = self.id.as_str();
        let spans = batch.span_count();
        let started = std::time::Instant::now();
        // Sampled span of this export for tracecast's own telemetry (a no-op unless
        // `service.telemetry.otlp` installed a tracer provider); it ends when dropped.
        let mut trace = opentelemetry::global::tracer("tracecast").start("tracecast.export");
        trace.set_attribute(KeyValue::new("tracecast.component", id.to_string()));
        trace.set_attribute(KeyValue::new("tracecast.spans", spans as i64));
        let claims = Claims::new(batch.take_tokens());
        let (encoding, compression, level) =
            (self.encoding, self.compression, self.compression_level);
        // Encoding and compressing a large batch takes milliseconds of CPU: off the async
        // workers (on a pool sized to the cores), so the receiver keeps answering meanwhile.
        let packed = if spans >= BLOCKING_ENCODE_SPANS {
            let b = batch.clone();
            tracecast_core::background::run(move || {
                encode::compress(encode::encode_batch(&b, encoding), compression, level)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(format!("encoding task failed: {e}"))))
        } else {
            encode::compress(encode::encode_batch(&batch, encoding), compression, level)
        };
        let body = match packed {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(exporter = %id, spans, error = %e, "cannot compress a batch");
                let error = e.to_string();
                let why = ("encoding", "could not be compressed");
                self.dead_letter(&batch, claims, why, &error, spans).await;
                return 0;
            }
        };

        let partial: Mutex<Option<PartialSuccess>> = Mutex::new(None);
        let (body_ref, partial_ref) = (&body, &partial);
        let result = retry(
            &self.policy,
            hard_stop,
            move || async move {
                let found = self.attempt(body_ref.clone()).await?;
                *partial_ref.lock().unwrap_or_else(|e| e.into_inner()) = found;
                Ok(())
            },
            |err, wait| {
                metrics::EXPORT_RETRIES.get_or_create(&component(id)).inc();
                tracing::warn!(
                    exporter = %id,
                    endpoint = %self.shown,
                    spans,
                    retry_in = ?wait,
                    "export failed, will retry: {err}"
                );
                tracecast_core::activity::batch_failed(id, &batch, &err.to_string(), false);
            },
        )
        .await;

        let outcome = match &result {
            Ok(_) => "delivered",
            Err(RetryError::Permanent(_)) => "rejected",
            Err(RetryError::Exhausted { .. }) => "retries_exhausted",
            Err(RetryError::Stopped { .. }) => "stopped",
        };
        trace.set_attribute(KeyValue::new("tracecast.outcome", outcome));
        if outcome != "delivered" {
            trace.set_status(opentelemetry::trace::Status::error(outcome));
        }
        match result {
            Ok(_) => {
                let partial = partial.into_inner().unwrap_or_else(|e| e.into_inner());
                let rejected = partial.as_ref().map_or(0, |p| {
                    usize::try_from(p.rejected_spans.max(0))
                        .unwrap_or(usize::MAX)
                        .min(spans)
                });
                if let Some(p) = &partial {
                    tracing::warn!(
                        exporter = %id,
                        endpoint = %self.shown,
                        rejected,
                        spans,
                        "backend accepted the request but rejected {rejected} of {spans} spans: {}",
                        p.message
                    );
                    self.failed("partial_success", rejected);
                }
                metrics::SPANS_EXPORTED
                    .get_or_create(&component(id))
                    .inc_by((spans - rejected) as u64);
                metrics::BYTES_EXPORTED
                    .get_or_create(&component(id))
                    .inc_by(body.len() as u64);
                tracecast_core::activity::exported(id, &batch, started.elapsed());
                claims.confirm();
                0
            }
            Err(RetryError::Permanent(message)) => {
                tracing::error!(
                    exporter = %id,
                    endpoint = %self.shown,
                    spans,
                    "export rejected, not retried: {message}"
                );
                let why = ("permanent", "rejected (permanent error)");
                self.dead_letter(&batch, claims, why, &message, spans).await;
                0
            }
            Err(RetryError::Exhausted { attempts, last }) => {
                tracing::error!(
                    exporter = %id,
                    endpoint = %self.shown,
                    spans,
                    attempts,
                    "export given up after {attempts} attempts (retry_on_failure.max_elapsed_time reached): {last}"
                );
                let outcome = format!("retries exhausted after {attempts} attempts");
                let why = ("retries_exhausted", outcome.as_str());
                self.dead_letter(&batch, claims, why, &last, spans).await;
                0
            }
            Err(RetryError::Stopped { .. }) => {
                self.failed("shutdown", spans);
                // Not final: the queue keeps the entries and replays them at the next start.
                claims.abandon();
                spans
            }
        }
    }

    /// Keeps a batch whose export failed for good in the dead-letter folder. Written, its
    /// claims are confirmed (the failure is final) and its spans counted under the cause
    /// (`why.0`: `permanent`, `retries_exhausted`, `encoding`); if the folder cannot be
    /// written either, they are counted under `dead_letter_write_failed` instead and the
    /// claims dropped unsettled, so the pipeline retries the entries rather than losing them.
    async fn dead_letter(
        &self,
        batch: &TraceBatch,
        claims: Claims,
        why: (&str, &str),
        error: &str,
        spans: usize,
    ) {
        let id = self.id.as_str();
        let (cause, outcome) = why;
        let protobuf = batch.to_protobuf();
        tracecast_core::activity::batch_failed(id, batch, &format!("{outcome}: {error}"), true);
        let reason = Reason {
            outcome,
            error,
            endpoint: &self.shown,
            spans,
        };
        match self.dead_letter.keep(&protobuf, &reason).await {
            Ok(file) => {
                tracing::error!(exporter = %id, spans, file = %file.display(), "batch kept in the dead-letter folder: {outcome}: {error}");
                self.failed(cause, spans);
                metrics::DEAD_LETTERS.get_or_create(&component(id)).inc();
                claims.confirm();
            }
            Err(e) => {
                tracing::error!(exporter = %id, spans, dir = %self.dead_letter.dir().display(), error = %e, "the dead-letter folder cannot be written; the batch stays in the queue if there is one");
                self.failed("dead_letter_write_failed", spans);
                drop(claims);
            }
        }
    }

    fn failed(&self, why: &str, spans: usize) {
        metrics::SPANS_FAILED
            .get_or_create(&reason(self.id.as_str(), why))
            .inc_by(spans as u64);
    }

    /// One attempt: 2xx is success (with its `partial_success`, if any); anything else is
    /// classified for the retry loop.
    /// Each attempt is one observation of `tracecast_exporter_request_duration_seconds`,
    /// failed ones included (a slow timeout is what an operator looks for).
    async fn attempt(&self, body: Bytes) -> Result<Option<PartialSuccess>, ExportError> {
        let started = std::time::Instant::now();
        let answer = self.post(body, false).await;
        metrics::observe_request(self.id.as_str(), started.elapsed());
        let answer = answer?;
        if answer.status.is_success() {
            tracecast_core::activity::note_status(self.id.as_str(), answer.status.as_u16());
            Ok(classify::partial_success(&answer.headers, &answer.body))
        } else {
            Err(classify::status_error(
                answer.status,
                &answer.headers,
                &answer.body,
                SystemTime::now(),
            ))
        }
    }

    /// Posts `body`; only failures below HTTP are errors here.
    async fn post(&self, body: Bytes, test_connection: bool) -> Result<Answer, ExportError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body);
        if test_connection {
            request = request.header("x-test-connection", "true");
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| classify::transport_error(&e, &self.target, self.timeout))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        // A body that breaks off is read as far as it came: the status already decided.
        while body.len() < MAX_RESPONSE_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(MAX_RESPONSE_BODY);
        Ok(Answer {
            status,
            headers,
            body: Bytes::from(body),
        })
    }
}
