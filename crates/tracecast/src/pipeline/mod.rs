//! The pipeline runtime: receivers -> durable queue per pipeline -> processors -> exporters.
//!
//! ```text
//! receiver --FanOutSink--> queue(pipeline A) --next_item--> pipeline task A (processors) --> exporter tasks
//!                     \--> queue(pipeline B) --next_item--> pipeline task B ...
//! ```
//!
//! - **Acknowledgement**: the fan-out appends the request (context + protobuf bytes, encoded
//!   once) to the durable queue of every pipeline the receiver feeds, and the receiver
//!   answers 2xx only once every append is durable (per `service.queue.fsync`).
//! - **Delivery**: a pipeline task takes entries in order (`DurableQueue::next_item`), runs
//!   its processors and hands the result to its exporters. Each batch carries a claim on the
//!   entry (`DeliveryToken`); when every claim is confirmed the queue forgets the entry. A
//!   claim dropped unconfirmed sends the entry back to the task, which retries it and then
//!   quarantines it (`task.rs`, `quarantine.rs`). Entries not delivered before a crash or a
//!   shutdown deadline are replayed at the next start.
//! - **No double decode on the hot path**: the fan-out appends each request with its decoded
//!   batch (`append_live`); the queue hands that batch to a pipeline that keeps up without
//!   reading the record back (with the received bytes, so an untouched batch is forwarded
//!   without re-encoding), and reads from disk only on replay or when the pipeline fell more
//!   than 16 MiB of live batches behind.
//! - **Back-pressure**: a full queue (`service.queue.max_size`) makes the receiver answer
//!   429 + `Retry-After`; a slow exporter fills its bounded input, its pipelines wait, and
//!   the backlog stays on disk, not in memory.
//! - **Reload** ([`Service::reload`]) is all or nothing: first everything that can fail is
//!   prepared (exporters and processors built, new queues opened, the listeners of new or
//!   changed receivers bound, a receiver keeping its endpoint taking over the running
//!   socket); any failure drops what was prepared and the running service is untouched.
//!   Then the switch: unchanged pipelines and exporters keep running; changed pipelines get
//!   a new task on the same queue (the old one flushes first); new listeners serve before
//!   the ones they replace stop; removed pipelines and exporters stop last.
//! - **Shutdown**: receivers stop (in-flight requests answered), pipeline tasks stop taking
//!   entries and flush their processors, exporters drain; after `shutdown_timeout` exporters
//!   give up and abandon what they hold, which stays queued for the next start.

mod fanout;
pub mod quarantine;
mod task;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracecast_core::{CancellationToken, ComponentId, TraceBatch};
use tracecast_queue::{DurableQueue, RecoveryReport};
use tracecast_receiver_otlp::{BoundReceiver, RunningReceiver};
use tracing::{info, warn};

use crate::memory::MemoryLimiter;
use crate::registry::{self, ExporterConfig, ProcessorConfig, ReceiverConfig, ValidatedConfig};
use fanout::{FanOutSink, PipelineInput};
use task::{run_pipeline, NamedProcessor};

/// Batches an exporter's input holds before its pipelines wait.
const EXPORTER_CHANNEL_BATCHES: usize = 64;

/// What a pipeline is made of; a change means a new pipeline task on reload.
#[derive(Debug, Clone, PartialEq)]
struct PipelineDefinition {
    processors: Vec<(ComponentId, ProcessorConfig)>,
    exporters: Vec<(ComponentId, ExporterConfig)>,
}

impl PipelineDefinition {
    fn of(config: &ValidatedConfig, name: &str) -> anyhow::Result<Self> {
        let p = config
            .raw
            .service
            .pipelines
            .get(name)
            .with_context(|| format!("pipeline {name} is not configured"))?;
        let processors = pick(&p.processors, &config.processors, name, "processor")?;
        let exporters = pick(&p.exporters, &config.exporters, name, "exporter")?;
        Ok(Self {
            processors,
            exporters,
        })
    }
}

/// The configs of `ids`, in order (validation guarantees they exist; an error otherwise).
fn pick<C: Clone>(
    ids: &[ComponentId],
    configs: &BTreeMap<ComponentId, C>,
    pipeline: &str,
    kind: &str,
) -> anyhow::Result<Vec<(ComponentId, C)>> {
    ids.iter()
        .map(|id| {
            configs
                .get(id)
                .map(|c| (id.clone(), c.clone()))
                .with_context(|| format!("pipeline {pipeline}: {kind} {id} is not configured"))
        })
        .collect()
}

struct ReceiverHandle {
    config: ReceiverConfig,
    sink: Arc<FanOutSink>,
    stop: CancellationToken,
    running: RunningReceiver,
}

struct PipelineHandle {
    definition: PipelineDefinition,
    input: PipelineInput,
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// Stops the queue's metrics refresher ([`crate::queue_metrics`]) when the queue closes.
    queue_metrics: CancellationToken,
}

struct ExporterHandle {
    config: ExporterConfig,
    input: mpsc::Sender<TraceBatch>,
    task: JoinHandle<()>,
}

/// A running service: receivers, queues, pipelines and exporters.
pub struct Service {
    config: ValidatedConfig,
    receivers: BTreeMap<ComponentId, ReceiverHandle>,
    pipelines: BTreeMap<String, PipelineHandle>,
    exporters: BTreeMap<ComponentId, ExporterHandle>,
    /// Tasks of replaced exporters, still draining.
    retired: Vec<JoinHandle<()>>,
    hard_stop: CancellationToken,
    memory: Arc<MemoryLimiter>,
    stop_watchers: CancellationToken,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub exporters_started: Vec<ComponentId>,
    pub pipelines_restarted: Vec<String>,
    pub receivers_restarted: Vec<ComponentId>,
}

impl Service {
    /// Starts everything: exporters first, receivers last, so nothing is accepted before it
    /// has somewhere to go. Queues replay what a previous run left undelivered.
    pub async fn start(config: &ValidatedConfig) -> anyhow::Result<Self> {
        let memory = MemoryLimiter::new(config.raw.service.memory_limit.get());
        let stop_watchers = CancellationToken::new();
        memory.spawn(stop_watchers.clone());
        let mut service = Service {
            config: config.clone(),
            receivers: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            exporters: BTreeMap::new(),
            retired: Vec::new(),
            hard_stop: CancellationToken::new(),
            memory,
            stop_watchers,
        };
        service.apply(config).await?;
        Ok(service)
    }

    /// Where a receiver listens (useful with port 0).
    pub fn receiver_addr(&self, id: &str) -> Option<SocketAddr> {
        self.receivers
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, r)| r.running.local_addr)
    }

    /// The config the service runs.
    pub fn config(&self) -> &ValidatedConfig {
        &self.config
    }

    /// Exporters of `new` that are new or changed compared with the running config (those a
    /// reload must connection-test).
    pub fn changed_exporters(&self, new: &ValidatedConfig) -> Vec<ComponentId> {
        used_exporters(new)
            .into_iter()
            .filter(|id| self.exporters.get(id).map(|h| &h.config) != new.exporters.get(id))
            .collect()
    }

    /// Switches to `new` without losing acknowledged data (see the module docs).
    pub async fn reload(&mut self, new: &ValidatedConfig) -> anyhow::Result<ReloadSummary> {
        let summary = self.apply(new).await?;
        self.config = new.clone();
        Ok(summary)
    }

    /// Brings the running components in line with `config`.
    async fn apply(&mut self, config: &ValidatedConfig) -> anyhow::Result<ReloadSummary> {
        let mut summary = ReloadSummary::default();
        let service_cfg = &config.raw.service;

        // 1. Exporters that are new or changed (built before anything is torn down, so a
        //    build error leaves the running service as it was).
        let mut new_exporters = BTreeMap::new();
        for id in used_exporters(config) {
            let Some(cfg) = config.exporters.get(&id) else {
                continue;
            };
            if self.exporters.get(&id).map(|h| &h.config) == Some(cfg) {
                continue;
            }
            let exporter = registry::build_exporter(&id, cfg)
                .with_context(|| format!("building exporter {id}"))?;
            new_exporters.insert(id.clone(), (cfg.clone(), exporter));
        }
        // Processors of changed pipelines, also built up front.
        let mut new_pipelines = BTreeMap::new();
        for name in service_cfg.pipelines.keys() {
            let definition = PipelineDefinition::of(config, name)?;
            let unchanged = self.pipelines.get(name).is_some_and(|p| {
                p.definition == definition
                    && definition
                        .exporters
                        .iter()
                        .all(|(id, _)| !new_exporters.contains_key(id))
            });
            if unchanged {
                continue;
            }
            let mut processors = Vec::new();
            for (pid, pcfg) in &definition.processors {
                processors.push(NamedProcessor {
                    id: pid.clone(),
                    processor: registry::build_processor(pid, pcfg)
                        .with_context(|| format!("building processor {pid}"))?,
                });
            }
            new_pipelines.insert(name.clone(), (definition, processors));
        }
        // Queues of new pipelines, and the listeners of new or changed receivers: opened and
        // bound before anything changes, so a queue that cannot open or a port in use refuses
        // the whole config and the running service stays exactly as it was.
        let mut opened = BTreeMap::new();
        for name in new_pipelines.keys() {
            if self.pipelines.contains_key(name) {
                continue;
            }
            match open_queue(service_cfg, name).await {
                Ok(q) => {
                    opened.insert(name.clone(), q);
                }
                Err(e) => {
                    close_unused_queues(opened).await;
                    return Err(e);
                }
            }
        }
        let bound = match self.bind_receivers(config).await {
            Ok(b) => b,
            Err(e) => {
                close_unused_queues(opened).await;
                return Err(e);
            }
        };

        // 2. Start the new exporters; replaced ones drain once their pipelines let go.
        for (id, (cfg, exporter)) in new_exporters {
            let (tx, rx) = mpsc::channel(EXPORTER_CHANNEL_BATCHES);
            let task = tokio::spawn(exporter.run(rx, self.hard_stop.clone()));
            summary.exporters_started.push(id.clone());
            if let Some(old) = self.exporters.insert(
                id,
                ExporterHandle {
                    config: cfg,
                    input: tx,
                    task,
                },
            ) {
                self.retired.push(old.task);
            }
        }

        // 3. Pipelines: new task on the same queue for changed ones, a new queue for new ones.
        for (name, (definition, processors)) in new_pipelines {
            let outputs = definition
                .exporters
                .iter()
                .filter_map(|(id, _)| self.exporters.get(id).map(|h| h.input.clone()))
                .collect::<Vec<_>>();
            let stop = CancellationToken::new();
            if let Some(old) = self.pipelines.remove(&name) {
                old.stop.cancel();
                let _ = old.task.await;
                let task = tokio::spawn(run_pipeline(
                    name.clone(),
                    processors,
                    old.input.clone(),
                    outputs,
                    stop.clone(),
                    self.hard_stop.clone(),
                ));
                self.pipelines.insert(
                    name.clone(),
                    PipelineHandle {
                        definition,
                        stop,
                        task,
                        ..old
                    },
                );
            } else {
                let Some((queue, report)) = opened.remove(&name) else {
                    continue;
                };
                if report.entries_to_replay > 0 {
                    info!(pipeline = %name, entries = report.entries_to_replay, "replaying undelivered entries from the queue");
                }
                for c in &report.corrupt {
                    warn!(
                        pipeline = %name,
                        segment = %c.segment.display(),
                        offset = c.offset,
                        bytes = c.bytes,
                        kept_at = ?c.moved_to,
                        "queue: cut off a torn or corrupt region ({}); the intact entries before it are replayed",
                        c.reason
                    );
                    tracecast_core::metrics::WARNINGS
                        .get_or_create(&tracecast_core::metrics::reason("queue", "corrupt_region"))
                        .inc();
                }
                let input = PipelineInput {
                    name: name.clone(),
                    queue: queue.clone(),
                    poison: Arc::new(poison_policy(service_cfg, &name)),
                };
                let queue_metrics = CancellationToken::new();
                crate::queue_metrics::spawn(name.clone(), queue.clone(), queue_metrics.clone());
                let task = tokio::spawn(run_pipeline(
                    name.clone(),
                    processors,
                    input.clone(),
                    outputs,
                    stop.clone(),
                    self.hard_stop.clone(),
                ));
                self.pipelines.insert(
                    name.clone(),
                    PipelineHandle {
                        definition,
                        input,
                        stop,
                        task,
                        queue_metrics,
                    },
                );
            }
            summary.pipelines_restarted.push(name);
        }
        // 4. Receivers: re-point the unchanged; the new and changed ones (bound above) start
        //    serving before the ones they replace stop, so there is always a listener.
        let mut feeds: BTreeMap<ComponentId, Vec<PipelineInput>> = BTreeMap::new();
        for (name, p) in &service_cfg.pipelines {
            if let Some(handle) = self.pipelines.get(name) {
                for r in &p.receivers {
                    feeds
                        .entry(r.clone())
                        .or_default()
                        .push(handle.input.clone());
                }
            }
        }
        let mut replaced = Vec::new();
        for (id, (cfg, sink, receiver)) in bound {
            sink.set_targets(feeds.get(&id).cloned().unwrap_or_default());
            let stop = CancellationToken::new();
            let running = receiver.serve(stop.clone());
            info!(receiver = %id, address = %running.local_addr, "listening");
            summary.receivers_restarted.push(id.clone());
            let handle = ReceiverHandle {
                config: cfg,
                sink,
                stop,
                running,
            };
            if let Some(old) = self.receivers.insert(id, handle) {
                replaced.push(old);
            }
        }
        let unused: Vec<ComponentId> = self
            .receivers
            .keys()
            .filter(|id| !feeds.contains_key(*id))
            .cloned()
            .collect();
        for id in unused {
            if let Some(h) = self.receivers.remove(&id) {
                h.sink.set_targets(Vec::new());
                replaced.push(h);
            }
        }
        for (id, targets) in feeds {
            if let Some(h) = self.receivers.get(&id) {
                if !summary.receivers_restarted.contains(&id) {
                    h.sink.set_targets(targets);
                }
            }
        }
        // Old listeners finish their in-flight requests into the pipelines they were fed to
        // (still open: removed pipelines close below).
        for old in replaced {
            old.stop.cancel();
            old.running.stopped().await;
        }

        // 5. Pipelines no longer configured: stop taking entries; what they hold stays on disk
        // under their name and is delivered if a pipeline of that name comes back.
        let removed: Vec<String> = self
            .pipelines
            .keys()
            .filter(|n| !service_cfg.pipelines.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            if let Some(p) = self.pipelines.remove(&name) {
                warn!(pipeline = %name, "pipeline removed; its undelivered entries stay queued on disk");
                close_pipeline(p).await;
            }
        }

        // 6. Exporters no pipeline uses any more: drop our sender so they drain and stop.
        let used = used_exporters(config);
        let unused: Vec<ComponentId> = self
            .exporters
            .keys()
            .filter(|id| !used.contains(id))
            .cloned()
            .collect();
        for id in unused {
            if let Some(h) = self.exporters.remove(&id) {
                self.retired.push(h.task);
            }
        }

        Ok(summary)
    }

    /// Stops accepting, flushes the pipelines and drains the exporters within
    /// `shutdown_timeout`. Returns true when everything drained in time; what did not stays
    /// in the queues for the next start.
    pub async fn shutdown(self) -> bool {
        info!("shutting down: no longer accepting spans, draining");
        let timeout = self.config.raw.service.shutdown_timeout.get();
        let deadline = tokio::time::Instant::now() + timeout;
        for (_, r) in self.receivers {
            r.sink.set_targets(Vec::new());
            r.stop.cancel();
            r.running.stopped().await;
        }
        // Pipelines stop taking entries and flush what their processors hold; then the
        // exporters see their input close and drain. All of it within `shutdown_timeout`:
        // a pipeline waiting on an exporter that retries a down backend is part of it.
        let mut queues = Vec::new();
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        for (_, p) in self.pipelines {
            p.stop.cancel();
            p.queue_metrics.cancel();
            queues.push(p.input.queue);
            tasks.push(p.task);
        }
        tasks.extend(self.exporters.into_values().map(|h| h.task));
        tasks.extend(self.retired);
        // Awaited in order; a finished handle is removed (polling it again would panic).
        let mut drained = true;
        while let Some(task) = tasks.first_mut() {
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                drained = false;
                break;
            }
            tasks.remove(0);
        }
        if !drained {
            warn!(
                ?timeout,
                "shutdown_timeout reached: retries and exports in flight are cancelled; what was not delivered stays queued for the next start"
            );
            // Pipelines abandon what they still hand over, exporters stop retrying and
            // abandon what they hold: nothing is dead-lettered because of the shutdown.
            self.hard_stop.cancel();
            let grace = tokio::time::Instant::now() + HARD_STOP_GRACE;
            for task in tasks {
                if tokio::time::timeout_at(grace, task).await.is_err() {
                    warn!("a task did not stop after the shutdown deadline; leaving it");
                }
            }
        }
        for q in queues {
            q.close();
            if let Err(e) = q.shutdown().await {
                warn!("queue shutdown: {e}; the next start replays a little more");
            }
        }
        self.stop_watchers.cancel();
        drained
    }
}

/// A receiver bound for a config being applied: its config, its sink (targets set when it
/// starts serving) and its listener.
type BoundReceivers = BTreeMap<ComponentId, (ReceiverConfig, Arc<FanOutSink>, BoundReceiver)>;

impl Service {
    /// Binds the listener of every receiver of `config` that is new or whose settings
    /// changed. A receiver keeping its endpoint takes over the running socket; one moving to
    /// another endpoint binds it while the old one still listens. The first failure (a port
    /// in use, say) drops what was bound and leaves the running receivers untouched.
    async fn bind_receivers(&self, config: &ValidatedConfig) -> anyhow::Result<BoundReceivers> {
        let mut bound = BTreeMap::new();
        let used: std::collections::BTreeSet<&ComponentId> = config
            .raw
            .service
            .pipelines
            .values()
            .flat_map(|p| p.receivers.iter())
            .collect();
        for id in used {
            let Some(cfg) = config.receivers.get(id) else {
                continue;
            };
            let running = self.receivers.get(id);
            if running.is_some_and(|h| &h.config == cfg) {
                continue;
            }
            let sink = Arc::new(FanOutSink::new(Vec::new(), self.memory.clone()));
            let receiver = registry::build_receiver(id, cfg, sink.clone());
            let listener = match running {
                Some(h) if h.running.endpoint() == receiver.endpoint() => {
                    receiver.bind_shared(&h.running)
                }
                _ => receiver.bind().await,
            }
            .with_context(|| format!("starting receiver {id}"))?;
            bound.insert(id.clone(), (cfg.clone(), sink, listener));
        }
        Ok(bound)
    }
}

/// Opens the durable queue of pipeline `name` under `service.queue_dir`.
async fn open_queue(
    service_cfg: &tracecast_config::ServiceConfig,
    name: &str,
) -> anyhow::Result<(DurableQueue, RecoveryReport)> {
    let dir = queue_dir(&service_cfg.queue_dir, name);
    let options = registry::queue_options(&service_cfg.queue);
    tokio::task::spawn_blocking(move || DurableQueue::open(&dir, options).map_err(|e| (dir, e)))
        .await
        .context("opening a queue")?
        .map_err(|(dir, e)| {
            anyhow::anyhow!(
                "cannot open the queue of pipeline {name} in {}: {e}",
                dir.display()
            )
        })
}

/// Closes queues opened for a config that was then refused.
async fn close_unused_queues(opened: BTreeMap<String, (DurableQueue, RecoveryReport)>) {
    for (queue, _) in opened.into_values() {
        queue.close();
        if let Err(e) = queue.shutdown().await {
            warn!("queue shutdown: {e}; the next start replays a little more");
        }
    }
}

/// Stops a pipeline task and its reader, and closes its queue.
async fn close_pipeline(p: PipelineHandle) {
    p.stop.cancel();
    let _ = p.task.await;
    p.queue_metrics.cancel();
    p.input.queue.close();
    if let Err(e) = p.input.queue.shutdown().await {
        warn!("queue shutdown: {e}; the next start replays a little more");
    }
}

/// How long tasks get to wind down after the hard stop (so the process exits within
/// `shutdown_timeout` plus this).
const HARD_STOP_GRACE: Duration = Duration::from_secs(2);

/// `service.queue.quarantine` for one pipeline.
fn poison_policy(
    service: &tracecast_config::ServiceConfig,
    pipeline: &str,
) -> fanout::PoisonPolicy {
    let q = &service.queue.quarantine;
    let max_bytes = match q.max_size.get() {
        0 => service.queue.max_size.get() / 4,
        n => n,
    };
    fanout::PoisonPolicy {
        max_attempts: q.max_attempts.max(1),
        backoff: q.retry_backoff.get(),
        quarantine: quarantine::Quarantine {
            dir: quarantine::dir_for(&service.queue_dir, pipeline),
            max_bytes,
            pipeline: pipeline.to_string(),
        },
    }
}

/// Every exporter id some pipeline of `config` uses.
pub(crate) fn used_exporters(config: &ValidatedConfig) -> Vec<ComponentId> {
    let mut ids: Vec<ComponentId> = config
        .raw
        .service
        .pipelines
        .values()
        .flat_map(|p| p.exporters.iter().cloned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// `<queue_dir>/<pipeline name with '/' as '_'>`.
fn queue_dir(base: &std::path::Path, pipeline: &str) -> PathBuf {
    base.join(pipeline.replace('/', "_"))
}
