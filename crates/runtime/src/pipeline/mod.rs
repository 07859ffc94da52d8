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
//!   A replaced pipeline task stuck on an exporter for 5 s has its waits released: what it
//!   holds goes back to the queue and the new task retries it (`apply.rs`).
//! - **Shutdown**: receivers stop (in-flight requests answered), pipeline tasks stop taking
//!   entries and flush their processors, exporters drain, all within `shutdown_timeout`;
//!   then pipelines and exporters give up and abandon what they hold, which stays queued for
//!   the next start.
//!
//! Files: `mod.rs` (the service, start, shutdown), `apply.rs` (start and reload as
//! prepare-then-switch steps), `fanout.rs` (the receivers' sink), `task.rs` (a pipeline's
//! task, retries), `quarantine.rs` (poison entries).

mod apply;
mod fanout;
pub mod quarantine;
mod task;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracecast_core::{CancellationToken, ComponentId, RunningReceiver, TraceBatch};
use tracing::{info, warn};

use crate::memory::MemoryLimiter;
use crate::registry::{ExporterConfig, ProcessorConfig, ReceiverConfig, ValidatedConfig};
use fanout::{FanOutSink, PipelineInput};

/// Batches an exporter's input holds before its pipelines wait. Few: a batch out of the
/// `batch` processor can be 8,192 spans (tens of MB of gateway traffic), and this channel
/// counts batches, not bytes; the backlog belongs in the durable queue on disk. At 64 a
/// lagging export held hundreds of MB here (issue 16: 287-475 MiB peak RSS at saturation).
const EXPORTER_CHANNEL_BATCHES: usize = 4;

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
    running: Box<dyn RunningReceiver>,
}

struct PipelineHandle {
    definition: PipelineDefinition,
    input: PipelineInput,
    stop: CancellationToken,
    /// Releases the task's waits on exporters (a child of the service's hard stop).
    release: CancellationToken,
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
            .map(|(_, r)| r.running.local_addr())
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

/// Every exporter id some pipeline of `config` uses.
pub fn used_exporters(config: &ValidatedConfig) -> Vec<ComponentId> {
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
