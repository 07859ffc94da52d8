//! The pipeline runtime: wires receivers -> pipelines (processor chains) -> exporters with
//! bounded channels, so back-pressure from a slow exporter reaches the receiver as 429.
//!
//! ```text
//! receiver --FanOutSink--> pipeline task (processors) --> exporter task(s)
//!             (all-or-nothing reservation on every pipeline the receiver feeds)
//! ```
//!
//! Shutdown order: receivers stop accepting and answer what is in flight; the pipelines'
//! inputs close, each pipeline flushes its processors and closes its exporter inputs; each
//! exporter drains and returns. If `shutdown_timeout` passes first, exporters are told to
//! stop retrying (`hard_stop`) and report what they could not deliver.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracecast_core::{
    BatchSink, CancellationToken, ComponentId, Processor, SubmitError, TraceBatch,
};
use tracing::{info, warn};

use crate::registry::{self, ValidatedConfig};

/// Batches a pipeline's input holds before the receiver is told to back off.
const PIPELINE_CHANNEL_BATCHES: usize = 64;
/// Batches an exporter's input holds before its pipelines wait.
const EXPORTER_CHANNEL_BATCHES: usize = 256;
/// What the receiver tells clients to wait when a pipeline is full.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Hands a receiver's batches to every pipeline it feeds, all or nothing: capacity is
/// reserved on every pipeline first, so a refusal never leaves a copy behind in some of them.
struct FanOutSink {
    pipelines: Vec<mpsc::Sender<TraceBatch>>,
}

#[async_trait]
impl BatchSink for FanOutSink {
    async fn submit(&self, batch: TraceBatch) -> Result<(), SubmitError> {
        let mut permits = Vec::with_capacity(self.pipelines.len());
        for tx in &self.pipelines {
            match tx.try_reserve() {
                Ok(p) => permits.push(p),
                Err(mpsc::error::TrySendError::Full(())) => {
                    return Err(SubmitError::Full {
                        retry_after: FULL_RETRY_AFTER,
                    })
                }
                Err(mpsc::error::TrySendError::Closed(())) => {
                    return Err(SubmitError::Unavailable {
                        reason: "tracecast is shutting down".into(),
                        retry_after: FULL_RETRY_AFTER,
                    })
                }
            }
        }
        let last = permits.len().saturating_sub(1);
        let mut batch = Some(batch);
        for (i, permit) in permits.into_iter().enumerate() {
            // Fan-out shares the decoded request (Arc); a processor that writes copies it.
            let b = if i == last {
                batch.take()
            } else {
                batch.clone()
            };
            if let Some(b) = b {
                permit.send(b);
            }
        }
        Ok(())
    }
}

/// A running service: receivers, pipelines and exporters.
pub struct Service {
    receiver_addrs: BTreeMap<ComponentId, SocketAddr>,
    stop_receivers: CancellationToken,
    hard_stop: CancellationToken,
    receivers: Vec<tracecast_receiver_otlp::RunningReceiver>,
    pipelines: Vec<JoinHandle<()>>,
    exporters: Vec<(ComponentId, JoinHandle<()>)>,
    shutdown_timeout: Duration,
}

impl Service {
    /// Builds every component and starts them: exporters first, receivers last, so nothing
    /// is accepted before it has somewhere to go.
    pub async fn start(config: &ValidatedConfig) -> anyhow::Result<Self> {
        let hard_stop = CancellationToken::new();
        let stop_receivers = CancellationToken::new();
        let service_cfg = &config.raw.service;

        // Exporters: one instance per id, shared by every pipeline that lists it.
        let mut exporter_inputs: BTreeMap<ComponentId, mpsc::Sender<TraceBatch>> = BTreeMap::new();
        let mut exporters = Vec::new();
        for (id, cfg) in &config.exporters {
            if !service_cfg
                .pipelines
                .values()
                .any(|p| p.exporters.contains(id))
            {
                continue; // configured but unused, as in the Collector
            }
            let exporter = registry::build_exporter(id, cfg)
                .with_context(|| format!("building exporter {id}"))?;
            let (tx, rx) = mpsc::channel(EXPORTER_CHANNEL_BATCHES);
            exporter_inputs.insert(id.clone(), tx);
            let stop = hard_stop.clone();
            exporters.push((id.clone(), tokio::spawn(exporter.run(rx, stop))));
        }

        // Pipelines: a task each, owning fresh processor instances.
        let mut receiver_feeds: BTreeMap<ComponentId, Vec<mpsc::Sender<TraceBatch>>> =
            BTreeMap::new();
        let mut pipelines = Vec::new();
        for (name, p) in &service_cfg.pipelines {
            let mut processors = Vec::new();
            for pid in &p.processors {
                let cfg = config
                    .processors
                    .get(pid)
                    .with_context(|| format!("pipeline {name}: processor {pid} missing"))?;
                processors.push(
                    registry::build_processor(pid, cfg)
                        .with_context(|| format!("building processor {pid}"))?,
                );
            }
            let outputs = p
                .exporters
                .iter()
                .filter_map(|e| exporter_inputs.get(e).cloned())
                .collect::<Vec<_>>();
            let (tx, rx) = mpsc::channel(PIPELINE_CHANNEL_BATCHES);
            for r in &p.receivers {
                receiver_feeds
                    .entry(r.clone())
                    .or_default()
                    .push(tx.clone());
            }
            pipelines.push(tokio::spawn(run_pipeline(
                name.clone(),
                processors,
                rx,
                outputs,
            )));
        }
        // The runtime keeps no sender: when the receivers stop, pipelines see their input
        // close, and when pipelines end, exporters see theirs close.
        drop(exporter_inputs);

        let mut receivers = Vec::new();
        let mut receiver_addrs = BTreeMap::new();
        for (id, senders) in receiver_feeds {
            let Some(cfg) = config.receivers.get(&id) else {
                continue;
            };
            let sink = Arc::new(FanOutSink { pipelines: senders });
            let receiver = registry::build_receiver(&id, cfg, sink);
            let running = receiver
                .start(stop_receivers.clone())
                .await
                .with_context(|| format!("starting receiver {id}"))?;
            info!(receiver = %id, address = %running.local_addr, "listening");
            receiver_addrs.insert(id, running.local_addr);
            receivers.push(running);
        }

        Ok(Self {
            receiver_addrs,
            stop_receivers,
            hard_stop,
            receivers,
            pipelines,
            exporters,
            shutdown_timeout: service_cfg.shutdown_timeout.get(),
        })
    }

    /// Where each receiver listens (useful with port 0).
    pub fn receiver_addr(&self, id: &str) -> Option<SocketAddr> {
        self.receiver_addrs
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, a)| *a)
    }

    /// Stops accepting, drains pipelines and exporters within `shutdown_timeout`.
    /// Returns true when everything drained in time.
    pub async fn shutdown(self) -> bool {
        info!("shutting down: no longer accepting spans, draining");
        self.stop_receivers.cancel();
        let drain = async {
            for r in self.receivers {
                r.stopped().await;
            }
            for p in self.pipelines {
                let _ = p.await;
            }
        };
        let deadline = tokio::time::sleep(self.shutdown_timeout);
        tokio::pin!(deadline);
        let mut exporters = self.exporters;
        let drained = tokio::select! {
            _ = drain => {
                let mut all = true;
                for (id, handle) in exporters.iter_mut() {
                    tokio::select! {
                        res = handle => { if res.is_err() { warn!(exporter = %id, "exporter task failed"); } }
                        _ = &mut deadline => { all = false; break; }
                    }
                }
                all
            }
            _ = &mut deadline => false,
        };
        if !drained {
            warn!(
                timeout = ?self.shutdown_timeout,
                "shutdown_timeout reached: telling exporters to stop retrying"
            );
            self.hard_stop.cancel();
            for (_, handle) in exporters {
                let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
            }
        }
        drained
    }
}

/// One pipeline: runs each batch through the processor chain and hands the results to
/// every exporter of the pipeline. Waiting on a full exporter input is what propagates
/// back-pressure.
async fn run_pipeline(
    name: String,
    mut processors: Vec<Box<dyn Processor>>,
    mut input: mpsc::Receiver<TraceBatch>,
    outputs: Vec<mpsc::Sender<TraceBatch>>,
) {
    loop {
        let deadline = processors.iter().filter_map(|p| p.next_deadline()).min();
        let batch = match deadline {
            Some(at) => tokio::select! {
                b = input.recv() => b,
                _ = tokio::time::sleep_until(at) => {
                    let out = tick_chain(&mut processors, tokio::time::Instant::now());
                    deliver(&name, out, &outputs).await;
                    continue;
                }
            },
            None => input.recv().await,
        };
        match batch {
            Some(b) => {
                let out = run_chain(&mut processors, 0, vec![b]);
                deliver(&name, out, &outputs).await;
            }
            None => break,
        }
    }
    // Input closed: flush every processor in order; what one releases still passes
    // through the processors after it (which may hold it until their own flush).
    let mut out = Vec::new();
    for i in 0..processors.len() {
        let mut flushed = Vec::new();
        processors[i].flush(&mut flushed);
        out.extend(run_chain(&mut processors, i + 1, flushed));
    }
    deliver(&name, out, &outputs).await;
}

/// Runs `batches` through `processors[from..]`.
fn run_chain(
    processors: &mut [Box<dyn Processor>],
    from: usize,
    mut batches: Vec<TraceBatch>,
) -> Vec<TraceBatch> {
    for p in processors.iter_mut().skip(from) {
        let mut next = Vec::with_capacity(batches.len());
        for b in batches {
            p.process(b, &mut next);
        }
        batches = next;
        if batches.is_empty() {
            break;
        }
    }
    batches
}

/// Gives every processor whose deadline passed its tick; what it releases continues down
/// the chain.
fn tick_chain(processors: &mut [Box<dyn Processor>], now: tokio::time::Instant) -> Vec<TraceBatch> {
    let mut out = Vec::new();
    for i in 0..processors.len() {
        let mut released = Vec::new();
        if processors[i].next_deadline().is_some_and(|d| d <= now) {
            processors[i].on_deadline(now, &mut released);
        }
        out.extend(run_chain(processors, i + 1, released));
    }
    out
}

async fn deliver(pipeline: &str, batches: Vec<TraceBatch>, outputs: &[mpsc::Sender<TraceBatch>]) {
    for b in batches {
        if let Some((last, rest)) = outputs.split_last() {
            for tx in rest {
                if tx.send(b.clone()).await.is_err() {
                    warn!(
                        pipeline,
                        "an exporter stopped before its pipeline; batch not delivered"
                    );
                }
            }
            if last.send(b).await.is_err() {
                warn!(
                    pipeline,
                    "an exporter stopped before its pipeline; batch not delivered"
                );
            }
        }
    }
}
