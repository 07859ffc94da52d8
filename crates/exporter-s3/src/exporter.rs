//! `S3Exporter`: the run loop (assembly -> documents -> concurrent uploads with retry and
//! dead-letter) and the connection test.

use opentelemetry::trace::{Span as _, Tracer as _};
use opentelemetry::KeyValue;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracecast_core::dead_letter::DeadLetterStore;
use tracecast_core::gzip;
use tracecast_core::retry::{retry, RetryError, RetryPolicy};
use tracecast_core::{metrics, CancellationToken, ComponentId, ExportError, Exporter, TraceBatch};

use crate::assembly::{AssembledTrace, Assembler, AssemblyLimits};
use crate::config::{Compression, ValidS3ExporterConfig};
use crate::document;
use crate::error::{S3ExporterError, StoreProblem};
use crate::key::{fixed_folder, object_key_within, KeyVars, ObjectKey, PathTemplate};
use crate::upload::{
    object_key_of, reason_path, DeadLetter, ResendError, StoredTrace, UploadConcurrency, Uploader,
    Written,
};

/// What one upload task needs; shared by all of them.
#[derive(Debug)]
struct Shared {
    id: ComponentId,
    uploader: Uploader,
    template: PathTemplate,
    prefix: String,
    compression: Compression,
    api_key_name_attribute: Option<String>,
    policy: RetryPolicy,
    dead_letter: DeadLetter,
    /// How many uploads run at once; hears every attempt's latency and throttling.
    concurrency: Arc<UploadConcurrency>,
}

/// Writes one JSON file per trace to S3-compatible storage or a local folder.
#[derive(Debug)]
pub struct S3Exporter {
    shared: Arc<Shared>,
    limits: AssemblyLimits,
}

/// The outcome of one trace's delivery, reported by its task.
#[derive(Debug)]
pub enum Delivery {
    Written {
        key: String,
        spans: usize,
        bytes: usize,
    },
    Replayed {
        key: String,
    },
    DeadLettered {
        key: String,
        reason: String,
        file: Option<PathBuf>,
    },
    /// The hard stop came before the trace was written and its spans came from the durable
    /// queue: the entries were abandoned (they stay queued and are replayed at the next
    /// start). Traces not backed by a queue are dead-lettered instead.
    Abandoned {
        key: String,
        spans: usize,
    },
}

impl S3Exporter {
    /// Builds the exporter from its validated config: sets up the store client, or creates
    /// the `file://` folder. Parses nothing; fails only on that I/O or client set-up. No
    /// network I/O.
    pub fn new(id: ComponentId, valid: &ValidS3ExporterConfig) -> Result<Self, S3ExporterError> {
        let config = &valid.config;
        let uploader = Uploader::new(valid)?;
        let dead_letter = DeadLetter(
            DeadLetterStore::new(crate::upload::dead_letter_dir(&id, config))
                .bounded(config.dead_letter_max_size.get(), id.as_str()),
        );
        Ok(Self {
            shared: Arc::new(Shared {
                id,
                uploader,
                template: valid.template.clone(),
                prefix: config.prefix.clone(),
                compression: config.compression,
                api_key_name_attribute: config.api_key_name_attribute.clone(),
                policy: config.retry_on_failure.policy(),
                dead_letter,
                concurrency: Arc::new(UploadConcurrency::new(config.max_concurrent_uploads)),
            }),
            limits: AssemblyLimits {
                idle_timeout: config.trace_idle_timeout.get(),
                max_wait: config.max_trace_wait.get(),
                max_spans: config.max_buffered_spans,
                max_bytes: config.max_buffered_bytes.get(),
            },
        })
    }

    /// The adaptive upload concurrency ([`UploadConcurrency`]): its limit and what it did
    /// so far, readable while the exporter runs.
    pub fn upload_concurrency(&self) -> Arc<UploadConcurrency> {
        self.shared.concurrency.clone()
    }

    /// Where traces go (`s3://bucket` or `file:///dir`).
    pub fn destination(&self) -> &str {
        &self.shared.uploader.destination.display
    }

    /// The key of the connection probe: always the same object,
    /// `<fixed folder of path_template>/.tracecast/connection-test` (see
    /// [`crate::key::fixed_folder`]), overwritten by every test. One key outside the trace
    /// folders, so tests never add objects beside the traces that readers list.
    pub fn probe_key(&self) -> String {
        let folder = fixed_folder(&self.shared.template, &self.shared.prefix);
        if folder.is_empty() {
            PROBE_NAME.to_string()
        } else {
            format!("{folder}/{PROBE_NAME}")
        }
    }
}

/// Where the connection probe goes, below the template's fixed folder.
pub const PROBE_NAME: &str = ".tracecast/connection-test";

impl Shared {
    fn ext(&self) -> &'static str {
        match self.compression {
            Compression::None => ".json",
            Compression::Gzip => ".json.gz",
            Compression::Zstd => ".json.zst",
        }
    }

    fn encode(&self, doc: &document::TraceDocument) -> Result<Bytes, String> {
        let json = serde_json::to_vec(doc).map_err(|e| format!("cannot encode trace: {e}"))?;
        match self.compression {
            Compression::None => Ok(Bytes::from(json)),
            Compression::Gzip => tracecast_core::gzip::compress(&json, gzip::DEFAULT_LEVEL)
                .map(Bytes::from)
                .map_err(|e| format!("cannot compress trace: {e}")),
            Compression::Zstd => Ok(Bytes::from(ruzstd::encoding::compress_to_vec(
                &json[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ))),
        }
    }

    /// Builds, uploads (with retries) and, failing that, dead-letters one trace. The trace's
    /// queue claims are settled once it is written or kept in the dead-letter folder, and
    /// abandoned (replayed later) when the hard stop comes first or nothing could keep it.
    async fn deliver(
        self: Arc<Self>,
        mut trace: AssembledTrace,
        hard_stop: CancellationToken,
    ) -> Delivery {
        let claims = std::mem::take(&mut trace.claims);
        let delivery = self
            .write_trace(&trace, &hard_stop, !claims.is_empty())
            .await;
        match &delivery {
            Delivery::Written { .. } | Delivery::Replayed { .. } => claims.confirm(),
            Delivery::DeadLettered { file: Some(_), .. } => claims.confirm(),
            // Neither written nor kept: not delivered. Dropped unsettled, the claims send
            // the entries back to their pipeline, which retries and then quarantines them.
            Delivery::DeadLettered { file: None, .. } => drop(claims),
            Delivery::Abandoned { .. } => claims.abandon(),
        }
        delivery
    }

    /// Builds and uploads one trace; see [`Shared::deliver`]. `queued`: the spans are
    /// backed by durable-queue entries, so a hard stop abandons rather than dead-letters.
    async fn write_trace(
        &self,
        trace: &AssembledTrace,
        hard_stop: &CancellationToken,
        queued: bool,
    ) -> Delivery {
        let spans = trace.spans.len();
        let doc = document::build(trace, self.api_key_name_attribute.as_deref());
        let key = object_key_within(
            &self.template,
            KeyVars {
                prefix: &self.prefix,
                api_key_name: &doc.api_key_name,
            },
            &doc.id,
            doc.start,
            self.ext(),
            self.uploader.max_key_bytes,
        );
        let body = match self.encode(&doc) {
            Ok(b) => b,
            Err(reason) => return self.dead_letter(&key.to_string(), &[], reason, spans).await,
        };
        let component = self.id.as_str();
        match self.upload(&key, &body, hard_stop).await {
            (Ok(_), Some(Written::Created(k))) => {
                crate::metrics::S3_OBJECTS_WRITTEN
                    .get_or_create(&metrics::component(component))
                    .inc();
                metrics::SPANS_EXPORTED
                    .get_or_create(&metrics::component(component))
                    .inc_by(spans as u64);
                metrics::BYTES_EXPORTED
                    .get_or_create(&metrics::component(component))
                    .inc_by(body.len() as u64);
                tracecast_core::activity::file_written(component, &k, body.len(), spans, &doc.id);
                Delivery::Written {
                    key: k,
                    spans,
                    bytes: body.len(),
                }
            }
            (Ok(_), Some(Written::AlreadyPresent(k))) => Delivery::Replayed { key: k },
            (Ok(_), None) => Delivery::Replayed {
                key: key.to_string(),
            },
            (Err(RetryError::Stopped { .. }), _) if queued => {
                metrics::SPANS_FAILED
                    .get_or_create(&metrics::reason(component, "shutdown"))
                    .inc_by(spans as u64);
                tracing::warn!(exporter = component, key = %key, spans, "shutdown deadline reached before the trace was written; it stays in the queue and is written after the next start");
                Delivery::Abandoned {
                    key: key.to_string(),
                    spans,
                }
            }
            (Err(e), _) => {
                self.dead_letter(&key.to_string(), &body, e.to_string(), spans)
                    .await
            }
        }
    }

    /// Writes `body` create-only under `key` (see [`Uploader::write_unique`]) with the
    /// shared retry loop; the write's outcome is `None` only if it never succeeded.
    async fn upload(
        &self,
        key: &ObjectKey,
        body: &Bytes,
        hard_stop: &CancellationToken,
    ) -> (Result<u32, RetryError>, Option<Written>) {
        let dest = &self.uploader.destination;
        let component = self.id.as_str();
        // Sampled span of this upload for tracecast's own telemetry (a no-op unless
        // `service.telemetry.otlp` installed a tracer provider); it ends when dropped.
        let mut trace = opentelemetry::global::tracer("tracecast").start("tracecast.s3.upload");
        trace.set_attribute(KeyValue::new("tracecast.component", component.to_string()));
        trace.set_attribute(KeyValue::new("tracecast.bytes", body.len() as i64));
        let outcome = std::sync::Mutex::new(None);
        let (shared, outcome_ref) = (self, &outcome);
        let result = retry(
            &self.policy,
            hard_stop,
            || {
                let body = body.clone();
                async move {
                    // One observation per upload attempt (a PutObject; plus a GET when the
                    // name is taken), failed ones included.
                    let started = std::time::Instant::now();
                    let written = shared.uploader.write_unique(key, body).await;
                    let took = started.elapsed();
                    metrics::observe_request(component, took);
                    match &written {
                        Ok(_) => shared.concurrency.record(took, false),
                        Err(StoreProblem::Throttled) => shared.concurrency.record(took, true),
                        Err(_) => {}
                    }
                    let written = written.map_err(|p| p.to_export_error(dest))?;
                    if let Ok(mut slot) = outcome_ref.lock() {
                        *slot = Some(written);
                    }
                    Ok(())
                }
            },
            |err, wait| {
                metrics::EXPORT_RETRIES
                    .get_or_create(&metrics::component(component))
                    .inc();
                tracing::warn!(exporter = component, key = %key, error = %err, retry_in = ?wait, "trace upload failed; retrying");
                tracecast_core::activity::key_failed(component, &key.to_string(), None, &err.to_string(), false);
            },
        )
        .await;
        let status = if result.is_ok() { "written" } else { "failed" };
        trace.set_attribute(KeyValue::new("tracecast.outcome", status));
        if result.is_err() {
            trace.set_status(opentelemetry::trace::Status::error(status));
        }
        (result, outcome.into_inner().ok().flatten())
    }

    async fn dead_letter(&self, key: &str, body: &[u8], reason: String, spans: usize) -> Delivery {
        let component = self.id.as_str();
        metrics::SPANS_FAILED
            .get_or_create(&metrics::reason(component, "dead_letter"))
            .inc_by(spans as u64);
        tracecast_core::activity::key_failed(component, key, None, &reason, true);
        match self.dead_letter.keep(key, body, &reason).await {
            Ok(file) => {
                metrics::DEAD_LETTERS
                    .get_or_create(&metrics::component(component))
                    .inc();
                tracing::error!(exporter = component, key, reason = %reason, file = %file.display(), "trace not written; kept in the dead-letter folder");
                Delivery::DeadLettered {
                    key: key.to_string(),
                    reason,
                    file: Some(file),
                }
            }
            Err(io) => {
                tracing::error!(exporter = component, key, reason = %reason, dead_letter_error = %io, dir = %self.dead_letter.dir().display(), "trace not written and the dead-letter folder failed too: its queue entries go back to the pipeline (retried, then quarantined)");
                Delivery::DeadLettered {
                    key: key.to_string(),
                    reason: format!("{reason}; dead-letter write failed: {io}"),
                    file: None,
                }
            }
        }
    }
}

/// How often due traces are looked for: a sixteenth of the idle timeout, within
/// [10ms, 250ms]. Every trace waits the same idle timeout, so what a tick releases is what
/// arrived during one tick: at 2,000 traces/s a quarter-second tick released 500 traces at
/// once, uploads then came in bursts and reading stopped while the burst drained (the
/// `ready` backlog bound); smaller, more frequent releases keep both flowing.
fn tick_interval(idle: Duration) -> Duration {
    (idle / 16).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

impl S3Exporter {
    /// The run loop; `on_delivery` hears about every trace (written, replayed or
    /// dead-lettered), for tests and callers that report.
    pub async fn run_observed(
        self,
        mut input: mpsc::Receiver<TraceBatch>,
        hard_stop: CancellationToken,
        mut on_delivery: impl FnMut(Delivery) + Send,
    ) {
        let mut assembler = Assembler::new(self.limits);
        let mut ready: VecDeque<AssembledTrace> = VecDeque::new();
        let mut uploads: JoinSet<Delivery> = JoinSet::new();
        let mut ticker = tokio::time::interval(tick_interval(self.limits.idle_timeout));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        let mut released = Vec::new();
        let held = crate::metrics::S3_TRACES_HELD
            .get_or_create(&metrics::component(self.shared.id.as_str()))
            .clone();
        let concurrency = crate::metrics::S3_UPLOAD_CONCURRENCY
            .get_or_create(&metrics::component(self.shared.id.as_str()))
            .clone();
        loop {
            // Backpressure: stop reading while the ready queue is long.
            let limit = self.shared.concurrency.limit();
            let accepting = open && ready.len() < limit * 2;
            tokio::select! {
                batch = input.recv(), if accepting => match batch {
                    Some(batch) => {
                        // A panic here is contained to this batch: its claims are dropped
                        // unsettled (the pipeline retries, then quarantines the entry).
                        let ingested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            assembler.ingest(&batch, Instant::now(), &mut released)
                        }));
                        match ingested {
                            // Every trace the batch touched took its own claim.
                            Ok(()) => batch.confirm(),
                            Err(panic) => {
                                tracing::error!(exporter = %self.shared.id, "trace assembly panicked on a batch ({}); its entries go back to the pipeline", tracecast_core::panic_message(&panic));
                                drop(batch);
                            }
                        }
                    }
                    None => {
                        open = false;
                        assembler.take_all(&mut released);
                    }
                },
                _ = ticker.tick() => assembler.take_due(Instant::now(), &mut released),
                Some(done) = uploads.join_next(), if !uploads.is_empty() => {
                    match done {
                        Ok(d) => on_delivery(d),
                        Err(e) => tracing::error!(exporter = %self.shared.id, error = %e, "upload task failed"),
                    }
                }
            }
            ready.extend(released.drain(..));
            held.set(i64::try_from(assembler.held_traces()).unwrap_or(i64::MAX));
            let limit = self.shared.concurrency.limit();
            concurrency.set(i64::try_from(limit).unwrap_or(i64::MAX));
            while uploads.len() < limit {
                let Some(trace) = ready.pop_front() else {
                    break;
                };
                uploads.spawn(self.shared.clone().deliver(trace, hard_stop.clone()));
            }
            if !ready.is_empty() {
                self.shared.concurrency.saturated();
            }
            if !open && assembler.is_empty() && ready.is_empty() && uploads.is_empty() {
                break;
            }
        }
        held.set(0);
        concurrency.set(0);
    }
}

impl S3Exporter {
    /// Puts a dead-lettered trace (listed by [`crate::upload::list_dead_letters`]) back
    /// under its original key, with the same create-only write and retry loop as a fresh
    /// trace: the same bytes already there count as written, a different object gets the
    /// next distinct name. On success the file and its reason file are removed; on failure
    /// both stay where they are, so nothing is lost.
    pub async fn resend_dead_letter(
        &self,
        stored: &StoredTrace,
        hard_stop: &CancellationToken,
    ) -> Result<Written, ResendError> {
        let path = stored.path.display().to_string();
        let Some(key) = stored.key.as_deref() else {
            return Err(ResendError::NoKey { path });
        };
        let body = tokio::fs::read(&stored.path)
            .await
            .map_err(|source| ResendError::Read {
                path: path.clone(),
                source,
            })?;
        if body.is_empty() {
            return Err(ResendError::Empty { path });
        }
        let body = Bytes::from(body);
        let (result, outcome) = self
            .shared
            .upload(&object_key_of(key), &body, hard_stop)
            .await;
        let written = match (result, outcome) {
            (Ok(_), Some(w)) => w,
            (Ok(_), None) => Written::AlreadyPresent(key.to_string()),
            (Err(e), _) => {
                return Err(ResendError::Upload {
                    key: key.to_string(),
                    message: e.to_string(),
                })
            }
        };
        let written_key = match &written {
            Written::Created(k) | Written::AlreadyPresent(k) => k.clone(),
        };
        let remove = |source| ResendError::Remove {
            key: written_key.clone(),
            path: path.clone(),
            source,
        };
        // The reason first: a crash in between leaves the trace, never a reason alone.
        match tokio::fs::remove_file(reason_path(&stored.path)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(remove(e)),
            _ => {}
        }
        tokio::fs::remove_file(&stored.path).await.map_err(remove)?;
        Ok(written)
    }
}

#[async_trait]
impl Exporter for S3Exporter {
    async fn test_connection(&self) -> Result<(), ExportError> {
        let now = OffsetDateTime::now_utc();
        let key = self.probe_key();
        let body = format!(
            "{{\"tracecast\":\"connection test\",\"exporter\":\"{}\",\"at\":\"{}\"}}",
            self.shared.id,
            now.unix_timestamp()
        );
        let dest = &self.shared.uploader.destination;
        self.shared
            .uploader
            .put_probe(&key, Bytes::from(body))
            .await
            .map_err(|p: StoreProblem| p.to_export_error(dest))
    }

    async fn run(self: Box<Self>, input: mpsc::Receiver<TraceBatch>, hard_stop: CancellationToken) {
        let id = self.shared.id.clone();
        let (mut written, mut total) = (0u64, 0u64);
        (*self)
            .run_observed(input, hard_stop, |d| {
                total += 1;
                written += u64::from(matches!(d, Delivery::Written { .. }));
            })
            .await;
        tracing::info!(exporter = %id, traces_written = written, traces_total = total, "s3 exporter stopped");
    }
}
