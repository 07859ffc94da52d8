//! Start and reload as small steps: [`Service::prepare`] does everything that can fail
//! (build exporters and processors, open new queues, bind new listeners) without touching
//! the running service; [`Service::switch`] then applies the result in steps that cannot
//! fail: exporters, pipelines, receivers, then what is no longer used.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tracecast_core::{BoundReceiver, CancellationToken, ComponentId, Exporter};
use tracecast_queue::{DurableQueue, RecoveryReport};
use tracing::{info, warn};

use super::fanout::{self, FanOutSink, PipelineInput};
use super::task::{run_pipeline, NamedProcessor};
use super::{
    close_pipeline, quarantine, used_exporters, ExporterHandle, PipelineDefinition, PipelineHandle,
    ReceiverHandle, ReloadSummary, Service, EXPORTER_CHANNEL_BATCHES,
};
use crate::registry::{self, ExporterConfig, ReceiverConfig, ValidatedConfig};

/// Everything a config needs that the running service does not have yet, built and bound.
/// Dropping it (a later step failed) releases it: queues are closed by
/// [`Prepared::discard`], listeners and unstarted exporters simply dropped.
pub(super) struct Prepared {
    exporters: BTreeMap<ComponentId, (ExporterConfig, Box<dyn Exporter>)>,
    pipelines: BTreeMap<String, (PipelineDefinition, Vec<NamedProcessor>)>,
    queues: BTreeMap<String, (DurableQueue, RecoveryReport)>,
    receivers: BoundReceivers,
}

impl Prepared {
    async fn discard(self) {
        close_unused_queues(self.queues).await;
    }
}

/// A receiver bound for a config being applied: its config, its sink (targets set when it
/// starts serving) and its listener.
type BoundReceivers =
    BTreeMap<ComponentId, (ReceiverConfig, Arc<FanOutSink>, Box<dyn BoundReceiver>)>;

/// How long a replaced pipeline task may take to hand over what it holds before its waits
/// on exporters are released (what it still holds goes back to the queue and is retried by
/// the new task).
const REPLACE_WAIT: Duration = Duration::from_secs(5);

impl Service {
    /// Brings the running components in line with `config`: all or nothing.
    pub(super) async fn apply(
        &mut self,
        config: &ValidatedConfig,
    ) -> anyhow::Result<ReloadSummary> {
        let prepared = self.prepare(config).await?;
        Ok(self.switch(config, prepared).await)
    }

    /// Everything fallible, before anything changes: exporters that are new or changed,
    /// processors of changed pipelines, queues of new pipelines, listeners of new or changed
    /// receivers. A failure leaves the running service exactly as it was.
    async fn prepare(&self, config: &ValidatedConfig) -> anyhow::Result<Prepared> {
        let mut exporters = BTreeMap::new();
        for id in used_exporters(config) {
            let Some(cfg) = config.exporters.get(&id) else {
                continue;
            };
            if self.exporters.get(&id).map(|h| &h.config) == Some(cfg) {
                continue;
            }
            let exporter = registry::build_exporter(&id, cfg)
                .with_context(|| format!("building exporter {id}"))?;
            exporters.insert(id.clone(), (cfg.clone(), exporter));
        }
        let mut pipelines = BTreeMap::new();
        for name in config.raw.service.pipelines.keys() {
            let definition = PipelineDefinition::of(config, name)?;
            let unchanged = self.pipelines.get(name).is_some_and(|p| {
                p.definition == definition
                    && definition
                        .exporters
                        .iter()
                        .all(|(id, _)| !exporters.contains_key(id))
            });
            if unchanged {
                continue;
            }
            let mut processors = Vec::new();
            for (pid, pcfg) in &definition.processors {
                processors.push(NamedProcessor {
                    id: pid.clone(),
                    processor: registry::build_processor(pid, pcfg),
                });
            }
            pipelines.insert(name.clone(), (definition, processors));
        }
        let mut prepared = Prepared {
            exporters,
            pipelines,
            queues: BTreeMap::new(),
            receivers: BTreeMap::new(),
        };
        let new_pipelines: Vec<String> = prepared
            .pipelines
            .keys()
            .filter(|n| !self.pipelines.contains_key(*n))
            .cloned()
            .collect();
        for name in new_pipelines {
            match open_queue(&config.raw.service, &name).await {
                Ok(q) => {
                    prepared.queues.insert(name, q);
                }
                Err(e) => {
                    prepared.discard().await;
                    return Err(e);
                }
            }
        }
        match self.bind_receivers(config).await {
            Ok(bound) => prepared.receivers = bound,
            Err(e) => {
                prepared.discard().await;
                return Err(e);
            }
        }
        Ok(prepared)
    }

    /// Applies what [`Service::prepare`] built; nothing here can fail.
    async fn switch(&mut self, config: &ValidatedConfig, prepared: Prepared) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let Prepared {
            exporters,
            pipelines,
            mut queues,
            receivers,
        } = prepared;
        self.start_exporters(exporters, &mut summary);
        for (name, (definition, processors)) in pipelines {
            let queue = queues.remove(&name);
            self.start_pipeline(config, &name, definition, processors, queue)
                .await;
            summary.pipelines_restarted.push(name);
        }
        close_unused_queues(queues).await;
        self.switch_receivers(config, receivers, &mut summary).await;
        self.close_removed_pipelines(config).await;
        self.retire_unused_exporters(config);
        summary
    }

    /// Starts the new exporters; replaced ones drain once their pipelines let go.
    fn start_exporters(
        &mut self,
        exporters: BTreeMap<ComponentId, (ExporterConfig, Box<dyn Exporter>)>,
        summary: &mut ReloadSummary,
    ) {
        for (id, (cfg, exporter)) in exporters {
            let (tx, rx) = mpsc::channel(EXPORTER_CHANNEL_BATCHES);
            let task = tokio::spawn(exporter.run(rx, self.hard_stop.clone()));
            summary.exporters_started.push(id.clone());
            let handle = ExporterHandle {
                config: cfg,
                input: tx,
                task,
            };
            if let Some(old) = self.exporters.insert(id, handle) {
                self.retired.push(old.task);
            }
        }
    }

    /// A changed pipeline gets a new task on its queue (the old one flushes first); a new
    /// one gets its freshly opened queue.
    async fn start_pipeline(
        &mut self,
        config: &ValidatedConfig,
        name: &str,
        definition: PipelineDefinition,
        processors: Vec<NamedProcessor>,
        opened: Option<(DurableQueue, RecoveryReport)>,
    ) {
        let outputs = definition
            .exporters
            .iter()
            .filter_map(|(id, _)| self.exporters.get(id).map(|h| h.input.clone()))
            .collect::<Vec<_>>();
        let (input, queue_metrics) = match self.pipelines.remove(name) {
            Some(old) => {
                stop_replaced(name, &old).await;
                (old.input, old.queue_metrics)
            }
            None => {
                let Some((queue, report)) = opened else {
                    return;
                };
                report_recovery(name, &report);
                let input = PipelineInput {
                    name: name.to_string(),
                    queue: queue.clone(),
                    poison: Arc::new(poison_policy(&config.raw.service, name)),
                };
                let queue_metrics = CancellationToken::new();
                crate::queue_metrics::spawn(name.to_string(), queue, queue_metrics.clone());
                (input, queue_metrics)
            }
        };
        let stop = CancellationToken::new();
        let release = self.hard_stop.child_token();
        let task = tokio::spawn(run_pipeline(
            name.to_string(),
            processors,
            input.clone(),
            outputs,
            stop.clone(),
            self.hard_stop.clone(),
            release.clone(),
        ));
        self.pipelines.insert(
            name.to_string(),
            PipelineHandle {
                definition,
                input,
                stop,
                release,
                task,
                queue_metrics,
            },
        );
    }

    /// Receivers: re-point the unchanged; the new and changed ones (bound in `prepare`)
    /// start serving before the ones they replace stop, so there is always a listener.
    async fn switch_receivers(
        &mut self,
        config: &ValidatedConfig,
        bound: BoundReceivers,
        summary: &mut ReloadSummary,
    ) {
        let mut feeds: BTreeMap<ComponentId, Vec<PipelineInput>> = BTreeMap::new();
        for (name, p) in &config.raw.service.pipelines {
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
            info!(receiver = %id, address = %running.local_addr(), "listening");
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
        // (still open: removed pipelines close after this).
        for old in replaced {
            old.stop.cancel();
            old.running.stopped().await;
        }
    }

    /// Pipelines no longer configured stop taking entries; what they hold stays on disk
    /// under their name and is delivered if a pipeline of that name comes back.
    async fn close_removed_pipelines(&mut self, config: &ValidatedConfig) {
        let removed: Vec<String> = self
            .pipelines
            .keys()
            .filter(|n| !config.raw.service.pipelines.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            if let Some(p) = self.pipelines.remove(&name) {
                warn!(pipeline = %name, "pipeline removed; its undelivered entries stay queued on disk");
                close_pipeline(p).await;
            }
        }
    }

    /// Exporters no pipeline uses any more: dropping our sender lets them drain and stop.
    fn retire_unused_exporters(&mut self, config: &ValidatedConfig) {
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
    }

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
                    receiver.take_over(h.running.as_ref())
                }
                _ => receiver.bind().await,
            }
            .with_context(|| format!("starting receiver {id}"))?;
            bound.insert(id.clone(), (cfg.clone(), sink, listener));
        }
        Ok(bound)
    }
}

/// Stops a pipeline task being replaced: it stops taking entries and flushes; if it is still
/// waiting on an exporter after [`REPLACE_WAIT`], its waits are released and what it held
/// goes back to the queue (retried by the new task), so a reload never hangs on a backend.
async fn stop_replaced(name: &str, old: &PipelineHandle) {
    old.stop.cancel();
    let task = &old.task;
    let finished = tokio::time::timeout(REPLACE_WAIT, async {
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if finished.is_err() {
        warn!(pipeline = %name, "the replaced pipeline task is still waiting on an exporter; what it holds goes back to the queue");
        old.release.cancel();
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Logs what the queue's recovery found.
fn report_recovery(name: &str, report: &RecoveryReport) {
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
    let dir = quarantine::dir_for(&service.queue_dir, pipeline);
    let bound = tracecast_core::spool::Bound::new(dir.clone(), max_bytes, pipeline, "quarantine");
    fanout::PoisonPolicy {
        max_attempts: q.max_attempts.max(1),
        backoff: q.retry_backoff.get(),
        quarantine: quarantine::Quarantine {
            dir,
            bound: Arc::new(bound),
            pipeline: pipeline.to_string(),
        },
    }
}

/// `<queue_dir>/<pipeline name with '/' as '_'>`.
fn queue_dir(base: &std::path::Path, pipeline: &str) -> PathBuf {
    base.join(pipeline.replace('/', "_"))
}
