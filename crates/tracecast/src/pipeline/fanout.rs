//! The receivers' side of the pipelines: [`FanOutSink`] appends each accepted request to the
//! durable queue of every pipeline its receiver feeds, and leaves the decoded batch in a
//! [`Handoff`] so a pipeline that keeps up does not decode it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use std::time::Duration;
use tokio::sync::Notify;

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

/// Longest a pipeline waits for the fan-out to announce an entry it already read from the
/// queue (the append resolves, and the reader may see the entry, just before the fan-out
/// announces it). Only hit when a request was abandoned between the two.
const ANNOUNCE_WAIT: Duration = Duration::from_millis(200);

/// Decoded batches waiting for their pipeline, by queue sequence number.
///
/// Every entry appended by this process is *announced* here right after its append
/// resolves: with its decoded batch when it fits in [`HANDOFF_BYTES`], else without. The
/// pipeline, reading entries in order, takes each announcement (so nothing is left behind)
/// and decodes from the queue's bytes only when the batch was not kept, or for entries
/// appended before this process started (replay).
pub(super) struct Handoff {
    map: Mutex<HandoffMap>,
    announced: Notify,
    /// The first sequence number this process appended: older entries are replayed from
    /// disk and never announced.
    first_live: u64,
}

#[derive(Default)]
struct HandoffMap {
    batches: HashMap<u64, Option<(TraceBatch, usize)>>,
    bytes: usize,
}

impl Handoff {
    pub(super) fn new(first_live: u64) -> Self {
        Self {
            map: Mutex::default(),
            announced: Notify::new(),
            first_live,
        }
    }

    /// Announces `seq`, keeping `batch` (of about `size` bytes) if there is room.
    pub(super) fn announce(&self, seq: u64, batch: Option<TraceBatch>, size: usize) {
        if let Ok(mut m) = self.map.lock() {
            let keep = batch.filter(|_| m.bytes + size <= HANDOFF_BYTES);
            if keep.is_some() {
                m.bytes += size;
            }
            m.batches.insert(seq, keep.map(|b| (b, size)));
        }
        self.announced.notify_waiters();
    }

    fn try_take(&self, seq: u64) -> Option<Option<TraceBatch>> {
        let mut m = self.map.lock().ok()?;
        let entry = m.batches.remove(&seq)?;
        Some(entry.map(|(batch, size)| {
            m.bytes -= size;
            batch
        }))
    }

    /// The decoded batch of `seq`, if the fan-out kept it; waits for its announcement when
    /// the pipeline read the entry first.
    pub(super) async fn take(&self, seq: u64) -> Option<TraceBatch> {
        if seq < self.first_live {
            return None;
        }
        let deadline = tokio::time::Instant::now() + ANNOUNCE_WAIT;
        loop {
            let notified = self.announced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(entry) = self.try_take(seq) {
                return entry;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// One pipeline's input as the fan-out sees it.
#[derive(Clone)]
pub(super) struct PipelineInput {
    pub(super) name: String,
    pub(super) queue: DurableQueue,
    pub(super) handoff: Arc<Handoff>,
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
        let appends = targets.iter().map(|t| {
            let entry = entry.clone();
            async move { t.queue.append(entry).await }
        });
        let results = futures_util::future::join_all(appends).await;
        let failed = results.iter().any(|r| r.is_err());
        let mut refusal = None;
        for (target, res) in targets.iter().zip(results) {
            match res {
                // Every appended entry is announced, so its pipeline never waits for it.
                // After a refusal the pipelines that took it decode it from disk: they
                // deliver it, and the client's retry may duplicate it (at least once).
                Ok(seq) if failed => target.handoff.announce(seq, None, 0),
                // Decoded request + received bytes: about twice the entry.
                Ok(seq) => target
                    .handoff
                    .announce(seq, Some(batch.clone()), 2 * entry.len()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracecast_core::{BatchContext, ExportTraceServiceRequest};

    fn batch() -> TraceBatch {
        TraceBatch::new(
            BatchContext::new("otlp"),
            ExportTraceServiceRequest::default(),
            None,
        )
    }

    #[tokio::test]
    async fn a_pipeline_that_reads_first_waits_for_the_announcement() {
        let h = Arc::new(Handoff::new(10));
        let waiter = {
            let h = h.clone();
            tokio::spawn(async move { h.take(10).await })
        };
        tokio::task::yield_now().await;
        h.announce(10, Some(batch()), 100);
        assert!(
            waiter.await.unwrap().is_some(),
            "the announced batch is taken"
        );
        assert!(h.try_take(10).is_none(), "and nothing is left behind");
    }

    #[tokio::test]
    async fn replayed_and_oversized_entries_are_decoded_instead() {
        let h = Handoff::new(10);
        // Appended before this process started: never announced, no wait.
        assert!(h.take(3).await.is_none());
        // Announced without a batch (over the byte budget): taken, nothing kept.
        h.announce(11, Some(batch()), HANDOFF_BYTES + 1);
        assert!(h.take(11).await.is_none());
        assert_eq!(h.map.lock().unwrap().bytes, 0);
        assert!(h.map.lock().unwrap().batches.is_empty());
    }
}
