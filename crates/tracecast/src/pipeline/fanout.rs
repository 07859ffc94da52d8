//! The receivers' side of the pipelines: [`FanOutSink`] appends each accepted request to the
//! durable queue of every pipeline its receiver feeds, and leaves the decoded batch in a
//! [`Handoff`] so a pipeline that keeps up does not decode it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tracecast_core::{BatchSink, SubmitError, TraceBatch};
use tracecast_queue::{DurableQueue, QueueError};
use tracing::error;

use crate::memory::MemoryLimiter;

/// Bytes of decoded batches kept for pipelines that keep up (beyond it they decode from
/// disk): a stalled pipeline must not pin the backlog in memory.
const HANDOFF_BYTES: usize = 16 * 1024 * 1024;
/// What the receiver tells clients to wait when a queue is full or unavailable.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Decoded batches waiting for their pipeline, by queue sequence number, with their
/// approximate size (the queue entry's length).
#[derive(Default)]
pub(super) struct Handoff(Mutex<HandoffMap>);

#[derive(Default)]
struct HandoffMap {
    batches: HashMap<u64, (TraceBatch, usize)>,
    bytes: usize,
}

impl Handoff {
    pub(super) fn put(&self, seq: u64, batch: TraceBatch, size: usize) {
        if let Ok(mut m) = self.0.lock() {
            if m.bytes + size <= HANDOFF_BYTES {
                m.bytes += size;
                m.batches.insert(seq, (batch, size));
            }
        }
    }

    pub(super) fn take(&self, seq: u64) -> Option<TraceBatch> {
        let mut m = self.0.lock().ok()?;
        let (batch, size) = m.batches.remove(&seq)?;
        m.bytes -= size;
        Some(batch)
    }
}

/// One pipeline's input as the fan-out sees it.
#[derive(Clone)]
pub(super) struct PipelineInput {
    pub(super) name: String,
    pub(super) queue: DurableQueue,
    pub(super) handoff: Arc<Handoff>,
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
        let appends = targets.iter().map(|t| {
            let entry = entry.clone();
            async move { t.queue.append(entry).await }
        });
        let results = futures_util::future::join_all(appends).await;
        let mut seqs = Vec::with_capacity(results.len());
        for (target, res) in targets.iter().zip(results) {
            match res {
                Ok(seq) => seqs.push(seq),
                Err(QueueError::Full { .. }) => {
                    // Pipelines that did take it will deliver it; the client's retry may
                    // duplicate it there (at least once, never lost).
                    return Err(SubmitError::Full {
                        retry_after: RETRY_AFTER,
                    });
                }
                Err(e) => {
                    error!(pipeline = %target.name, "cannot queue the request: {e}");
                    return Err(SubmitError::Unavailable {
                        reason: format!("cannot store the request durably ({e})"),
                        retry_after: RETRY_AFTER,
                    });
                }
            }
        }
        for (target, seq) in targets.iter().zip(seqs) {
            // Decoded request + received bytes: about twice the entry.
            target.handoff.put(seq, batch.clone(), 2 * entry.len());
        }
        Ok(())
    }
}
