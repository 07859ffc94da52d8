//! The receivers' side of the pipelines: [`FanOutSink`] appends each accepted request to the
//! durable queue of every pipeline its receiver feeds, with its decoded batch, so a pipeline
//! that keeps up gets the batch from memory (`DurableQueue::append_live`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tracecast_core::{BatchSink, SubmitError, TraceBatch};
use tracecast_queue::{DurableQueue, QueueError};
use tracing::error;

use crate::memory::MemoryLimiter;

/// What the receiver tells clients to wait when a queue is full or unavailable.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One pipeline's input as the fan-out sees it.
#[derive(Clone)]
pub(super) struct PipelineInput {
    pub(super) name: String,
    pub(super) queue: DurableQueue,
    pub(super) poison: Arc<PoisonPolicy>,
}

/// What happens to entries whose delivery fails (`service.queue.quarantine`).
#[derive(Debug)]
pub(super) struct PoisonPolicy {
    pub(super) max_attempts: u32,
    pub(super) backoff: Duration,
    pub(super) quarantine: super::quarantine::Quarantine,
}

/// Hands a receiver's batches to every pipeline it feeds. The target list is swapped on
/// reload without touching the receiver.
pub(super) struct FanOutSink {
    targets: RwLock<Arc<Vec<PipelineInput>>>,
    memory: Arc<MemoryLimiter>,
}

impl FanOutSink {
    pub(super) fn new(targets: Vec<PipelineInput>, memory: Arc<MemoryLimiter>) -> Self {
        Self {
            targets: RwLock::new(Arc::new(targets)),
            memory,
        }
    }

    pub(super) fn set_targets(&self, targets: Vec<PipelineInput>) {
        if let Ok(mut t) = self.targets.write() {
            *t = Arc::new(targets);
        }
    }

    fn targets(&self) -> Arc<Vec<PipelineInput>> {
        self.targets
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

#[async_trait]
impl BatchSink for FanOutSink {
    fn ready(&self) -> Result<(), SubmitError> {
        if self.memory.over_limit() {
            return Err(SubmitError::Unavailable {
                reason: format!(
                    "tracecast is over its memory limit ({} bytes, service.memory_limit)",
                    self.memory.limit()
                ),
                retry_after: RETRY_AFTER,
            });
        }
        Ok(())
    }

    async fn submit(&self, batch: TraceBatch) -> Result<(), SubmitError> {
        let targets = self.targets();
        if targets.is_empty() {
            return Err(SubmitError::Unavailable {
                reason: "tracecast is shutting down".into(),
                retry_after: RETRY_AFTER,
            });
        }
        // Encoded once for every pipeline; an untouched batch reuses the received bytes.
        let entry = tracecast_queue::encode_entry(batch.context(), &batch.to_protobuf());
        // Decoded request + received bytes: about twice the entry.
        let live_size = 2 * entry.len() as u64;
        // The last pipeline gets the batch itself, not a copy: a pipeline that takes its
        // live batch while another handle to the request is still alive makes `batch` (and
        // any processor that takes the request out) copy the whole request, span by span.
        let mut copies: Vec<TraceBatch> = (1..targets.len()).map(|_| batch.clone()).collect();
        copies.push(batch);
        let appends = targets.iter().zip(copies).map(|(t, batch)| {
            let entry = entry.clone();
            async move { t.queue.append_live(entry, batch, live_size).await }
        });
        let results = futures_util::future::join_all(appends).await;
        let mut refusal = None;
        // After a refusal the pipelines that took the entry deliver it, and the client's
        // retry may duplicate it (at least once).
        for (target, res) in targets.iter().zip(results) {
            match res {
                Ok(_) => {}
                Err(QueueError::Full { .. }) => {
                    refusal.get_or_insert(SubmitError::Full {
                        retry_after: RETRY_AFTER,
                    });
                }
                Err(e) => {
                    error!(pipeline = %target.name, "cannot queue the request: {e}");
                    refusal = Some(SubmitError::Unavailable {
                        reason: format!("cannot store the request durably ({e})"),
                        retry_after: RETRY_AFTER,
                    });
                }
            }
        }
        match refusal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
