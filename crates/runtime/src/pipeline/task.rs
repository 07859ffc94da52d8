//! One pipeline's task: entries from its queue, in order, through the processor chain, to
//! every exporter of the pipeline; and the entries whose delivery failed, retried with
//! backoff and then quarantined, so no single entry can hold the queue back.

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracecast_core::{
    metrics, panic_message, BatchContext, CancellationToken, ComponentId,
    ExportTraceServiceRequest, Processor, TraceBatch,
};
use tracecast_queue::Item;
use tracing::{error, warn};

use super::fanout::PipelineInput;

/// The longest wait between two attempts at one entry.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A processor with the id it is logged under.
pub(super) struct NamedProcessor {
    pub(super) id: ComponentId,
    pub(super) processor: Box<dyn Processor>,
}

/// Why an entry cannot become a batch: nothing will change that, so it is quarantined.
type Undecodable = String;

/// Decodes a stored entry.
fn decode(bytes: &Bytes) -> Result<TraceBatch, Undecodable> {
    let (ctx, protobuf): (BatchContext, Bytes) = tracecast_queue::decode_entry(bytes)
        .map_err(|e| format!("the queue entry is unreadable: {e}"))?;
    match ExportTraceServiceRequest::decode(protobuf.clone()) {
        Ok(req) => Ok(TraceBatch::new(ctx, req, Some(protobuf))),
        Err(e) => Err(format!(
            "the queue entry's request does not decode as OTLP protobuf: {e}"
        )),
    }
}

/// Turns a queue entry into a batch carrying its delivery token: the live batch when the
/// pipeline kept up, else decoded from the stored bytes (replay).
fn entry_batch(
    seq: u64,
    item: Item,
    input: &PipelineInput,
) -> Result<TraceBatch, (Bytes, Undecodable)> {
    let batch = match item {
        Item::Live(b) => b,
        Item::Stored(bytes) => decode(&bytes).map_err(|why| (bytes, why))?,
    };
    Ok(batch.with_tokens(vec![input.queue.token(seq)]))
}

/// Entries whose delivery failed: attempts so far, why, and when each is tried again.
#[derive(Default)]
struct Poison {
    attempts: HashMap<u64, u32>,
    /// Set by the task when it caught a panic on an entry, read when the failure arrives.
    reasons: HashMap<u64, String>,
    due: BTreeSet<(Instant, u64)>,
}

impl Poison {
    fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Forgets entries the cursor has passed (delivered on a retry).
    fn prune(&mut self, committed: u64) {
        self.attempts.retain(|seq, _| *seq >= committed);
        self.reasons.retain(|seq, _| *seq >= committed);
    }
}

/// One pipeline task: entries in order through the processor chain, results to every
/// exporter of the pipeline. Waiting on a full exporter input is what keeps the backlog on
/// disk instead of in memory. `stop` ends the intake (the processors are then flushed);
/// `hard_stop` (the shutdown deadline) makes every wait on an exporter give up: what was
/// not handed over is abandoned, so it stays queued for the next start. `release` (a child
/// of `hard_stop`, fired alone when a reload replaces this task and it is stuck) gives what
/// it holds back to the queue instead, for the new task to retry.
pub(super) async fn run_pipeline(
    name: String,
    mut processors: Vec<NamedProcessor>,
    input: PipelineInput,
    outputs: Vec<mpsc::Sender<TraceBatch>>,
    stop: CancellationToken,
    hard_stop: CancellationToken,
    release: CancellationToken,
) {
    let mut poison = Poison::default();
    let out = Outputs {
        pipeline: &name,
        senders: &outputs,
        hard_stop: &hard_stop,
        release: &release,
    };
    loop {
        let deadline = processors
            .iter()
            .filter_map(|p| p.processor.next_deadline())
            .min();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let retry_due = poison.next_due();
        let retry = async {
            match retry_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            seq = input.queue.next_failed() => {
                on_failed(seq, &input, &mut poison).await;
            }
            _ = retry => {
                if let Some((_, seq)) = poison.due.pop_first() {
                    retry_entry(seq, &input, &mut processors, &mut poison, &out).await;
                }
            }
            _ = sleep => {
                let batches = tick_chain(&mut processors, Instant::now(), &mut poison);
                out.deliver(batches).await;
            }
            // Cancel-safe: an entry is only taken when this branch completes.
            entry = input.queue.next_item() => match entry {
                Some((seq, item)) => match entry_batch(seq, item, &input) {
                    Ok(batch) => {
                        let batches = run_chain(&mut processors, 0, vec![batch], &mut poison);
                        out.deliver(batches).await;
                    }
                    Err((bytes, why)) => quarantine(seq, &bytes, &why, 1, &input, &mut poison).await,
                },
                None => break,
            },
        }
    }
    // Flush every processor in order; what one releases still passes through the
    // processors after it (which may hold it until their own flush).
    let mut batches = Vec::new();
    for i in 0..processors.len() {
        let mut flushed = Vec::new();
        let p = &mut processors[i];
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| p.processor.flush(&mut flushed))) {
            error!(pipeline = %name, processor = %p.id, "processor panicked while flushing ({}); what it held is replayed at the next start", panic_message(&*panic));
        }
        batches.extend(run_chain(&mut processors, i + 1, flushed, &mut poison));
    }
    out.deliver(batches).await;
}

/// A claim on `seq` was dropped unsettled: count the attempt, then retry later or
/// quarantine.
async fn on_failed(seq: u64, input: &PipelineInput, poison: &mut Poison) {
    poison.prune(input.queue.stats().committed_seq);
    let attempts = {
        let a = poison.attempts.entry(seq).or_insert(0);
        *a += 1;
        *a
    };
    let reason = poison.reasons.remove(&seq).unwrap_or_else(|| {
        "a destination could neither deliver nor keep it (see the exporter's errors above)"
            .to_string()
    });
    if attempts >= input.poison.max_attempts {
        match input.queue.read_entry(seq).await {
            Ok(Some(bytes)) => quarantine(seq, &bytes, &reason, attempts, input, poison).await,
            Ok(None) => {}
            Err(e) => {
                warn!(pipeline = %input.name, seq, "cannot re-read a failed entry ({e}); trying again later");
                schedule(seq, attempts, input, poison);
            }
        }
        return;
    }
    warn!(pipeline = %input.name, seq, attempts, max_attempts = input.poison.max_attempts, "entry not delivered ({reason}); retrying it");
    poison.reasons.insert(seq, reason);
    schedule(seq, attempts, input, poison);
}

fn schedule(seq: u64, attempts: u32, input: &PipelineInput, poison: &mut Poison) {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    let wait = input.poison.backoff.saturating_mul(factor).min(MAX_BACKOFF);
    poison.due.insert((Instant::now() + wait, seq));
}

/// Reads a failed entry again and sends it through the chain once more.
async fn retry_entry(
    seq: u64,
    input: &PipelineInput,
    processors: &mut [NamedProcessor],
    poison: &mut Poison,
    out: &Outputs<'_>,
) {
    let bytes = match input.queue.read_entry(seq).await {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(e) => {
            warn!(pipeline = %input.name, seq, "cannot re-read a failed entry ({e}); trying again later");
            let attempts = poison.attempts.get(&seq).copied().unwrap_or(1);
            schedule(seq, attempts, input, poison);
            return;
        }
    };
    crate::metrics::DELIVERY_RETRIES
        .get_or_create(&metrics::pipeline(&input.name))
        .inc();
    match decode(&bytes) {
        Ok(batch) => {
            let batch = batch.with_tokens(vec![input.queue.token(seq)]);
            let batches = run_chain(processors, 0, vec![batch], poison);
            out.deliver(batches).await;
        }
        Err(why) => quarantine(seq, &bytes, &why, 1, input, poison).await,
    }
}

/// Moves entry `seq` to the quarantine folder and lets the cursor pass it. If the folder
/// cannot be written (disk full), the entry is retried later instead.
async fn quarantine(
    seq: u64,
    bytes: &Bytes,
    reason: &str,
    attempts: u32,
    input: &PipelineInput,
    poison: &mut Poison,
) {
    let q = input.poison.quarantine.clone();
    let (entry, why) = (bytes.clone(), reason.to_string());
    let kept = tokio::task::spawn_blocking(move || q.keep(seq, &entry, &why, attempts))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match kept {
        Ok(path) => {
            error!(pipeline = %input.name, seq, attempts, file = %path.display(), "queue entry quarantined: {reason}. The entries after it keep flowing; `tracecast dead-letters list` shows it, `resend` sends it again");
            crate::metrics::QUARANTINED
                .get_or_create(&metrics::pipeline(&input.name))
                .inc();
            poison.attempts.remove(&seq);
            poison.reasons.remove(&seq);
            input.queue.token(seq).confirm();
            // Saved now, so a restart does not quarantine the same entry again.
            if let Err(e) = input.queue.sync().await {
                warn!(pipeline = %input.name, "cannot save the queue cursor after a quarantine: {e}");
            }
        }
        Err(e) => {
            error!(pipeline = %input.name, seq, dir = %input.poison.quarantine.dir.display(), "cannot quarantine a poison entry ({e}); it stays queued and is tried again");
            poison.attempts.insert(seq, attempts);
            poison.reasons.insert(seq, reason.to_string());
            schedule(seq, attempts, input, poison);
        }
    }
}

/// Runs `batches` through `processors[from..]`. A processor that panics on a batch loses
/// only that batch: its claims are dropped unsettled (the entry comes back through
/// [`on_failed`] with the panic as its reason) and the chain goes on with the others.
fn run_chain(
    processors: &mut [NamedProcessor],
    from: usize,
    mut batches: Vec<TraceBatch>,
    poison: &mut Poison,
) -> Vec<TraceBatch> {
    for p in processors.iter_mut().skip(from) {
        let mut next = Vec::with_capacity(batches.len());
        for b in batches {
            let seqs: Vec<u64> = b.tokens().iter().map(|t| t.seq()).collect();
            let processor = &mut p.processor;
            let next_ref = &mut next;
            if let Err(panic) =
                catch_unwind(AssertUnwindSafe(move || processor.process(b, next_ref)))
            {
                let why = format!("processor {} panicked: {}", p.id, panic_message(&*panic));
                error!(processor = %p.id, entries = ?seqs, "{why}; the entries are retried, then quarantined");
                for seq in seqs {
                    poison.reasons.insert(seq, why.clone());
                }
            }
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
fn tick_chain(
    processors: &mut [NamedProcessor],
    now: Instant,
    poison: &mut Poison,
) -> Vec<TraceBatch> {
    let mut out = Vec::new();
    for i in 0..processors.len() {
        let mut released = Vec::new();
        let p = &mut processors[i];
        if p.processor.next_deadline().is_some_and(|d| d <= now) {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| {
                p.processor.on_deadline(now, &mut released)
            })) {
                error!(processor = %p.id, "processor panicked on its timer ({})", panic_message(&*panic));
            }
        }
        out.extend(run_chain(processors, i + 1, released, poison));
    }
    out
}

/// Where a pipeline's results go.
struct Outputs<'a> {
    pipeline: &'a str,
    senders: &'a [mpsc::Sender<TraceBatch>],
    hard_stop: &'a CancellationToken,
    release: &'a CancellationToken,
}

impl Outputs<'_> {
    /// Hands every batch to every exporter (a claim each). Past the hard stop, or when an
    /// exporter is gone, the batch is abandoned: it stays queued for the next start.
    async fn deliver(&self, batches: Vec<TraceBatch>) {
        for b in batches {
            let Some((last, rest)) = self.senders.split_last() else {
                // No exporter (cannot pass validation): nothing to deliver to.
                b.confirm();
                continue;
            };
            for tx in rest {
                self.send(tx, b.clone()).await;
            }
            self.send(last, b).await;
        }
    }

    async fn send(&self, tx: &mpsc::Sender<TraceBatch>, batch: TraceBatch) {
        let permit = if self.release.is_cancelled() {
            None
        } else {
            tokio::select! {
                biased;
                _ = self.release.cancelled() => None,
                permit = tx.reserve() => permit.ok(),
            }
        };
        let Some(permit) = permit else {
            if self.hard_stop.is_cancelled() {
                batch.abandon();
            } else if self.release.is_cancelled() {
                // Replaced by a reload: dropped unsettled, the entry goes back to the queue
                // and the new task retries it.
                drop(batch);
            } else {
                warn!(
                    pipeline = self.pipeline,
                    "an exporter stopped before its pipeline; batch kept queued"
                );
                batch.abandon();
            }
            return;
        };
        permit.send(batch);
    }
}
