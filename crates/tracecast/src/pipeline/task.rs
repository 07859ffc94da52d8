//! One pipeline's task: entries from its queue, in order, through the processor chain, to
//! every exporter of the pipeline.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tokio::sync::mpsc;
use tracecast_core::{
    BatchContext, CancellationToken, ExportTraceServiceRequest, Processor, TraceBatch,
};
use tracecast_queue::DurableQueue;
use tracing::{error, warn};

use super::fanout::PipelineInput;

/// Reads a queue in order into a small bounded channel (so a pipeline task can be replaced
/// without losing its place).
pub(super) async fn read_queue(queue: DurableQueue, tx: mpsc::Sender<(u64, Bytes)>) {
    while let Some(entry) = queue.next().await {
        if tx.send(entry).await.is_err() {
            break;
        }
    }
}

/// Turns a queue entry into a batch: from the hand-off when the pipeline kept up, else
/// decoded from the stored bytes (replay).
async fn entry_batch(seq: u64, bytes: &Bytes, input: &PipelineInput) -> Option<TraceBatch> {
    let batch = match input.handoff.take(seq).await {
        Some(b) => b,
        None => {
            let (ctx, protobuf): (BatchContext, Bytes) = match tracecast_queue::decode_entry(bytes)
            {
                Ok(parts) => parts,
                Err(e) => {
                    error!(pipeline = %input.name, seq, "queue entry unreadable, skipped: {e}");
                    return None;
                }
            };
            match ExportTraceServiceRequest::decode(protobuf.clone()) {
                Ok(req) => TraceBatch::new(ctx, req, Some(protobuf)),
                Err(e) => {
                    error!(pipeline = %input.name, seq, "queue entry does not decode, skipped: {e}");
                    return None;
                }
            }
        }
    };
    Some(batch.with_tokens(vec![input.queue.token(seq)]))
}

/// One pipeline task: entries in order through the processor chain, results to every
/// exporter of the pipeline. Waiting on a full exporter input is what keeps the backlog on
/// disk instead of in memory.
pub(super) async fn run_pipeline(
    name: String,
    mut processors: Vec<Box<dyn Processor>>,
    entries: Arc<tokio::sync::Mutex<mpsc::Receiver<(u64, Bytes)>>>,
    input: PipelineInput,
    outputs: Vec<mpsc::Sender<TraceBatch>>,
    stop: CancellationToken,
) {
    let mut rx = entries.lock().await;
    loop {
        let deadline = processors.iter().filter_map(|p| p.next_deadline()).min();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = sleep => {
                let out = tick_chain(&mut processors, tokio::time::Instant::now());
                deliver(&name, out, &outputs).await;
            }
            entry = rx.recv() => match entry {
                Some((seq, bytes)) => {
                    if let Some(batch) = entry_batch(seq, &bytes, &input).await {
                        let out = run_chain(&mut processors, 0, vec![batch]);
                        deliver(&name, out, &outputs).await;
                    }
                }
                None => break,
            },
        }
    }
    // Flush every processor in order; what one releases still passes through the
    // processors after it (which may hold it until their own flush).
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
                if let Err(e) = tx.send(b.clone()).await {
                    // The exporter is gone: keep the entry queued for the next start.
                    e.0.abandon();
                    warn!(
                        pipeline,
                        "an exporter stopped before its pipeline; batch kept queued"
                    );
                }
            }
            if let Err(e) = last.send(b).await {
                e.0.abandon();
                warn!(
                    pipeline,
                    "an exporter stopped before its pipeline; batch kept queued"
                );
            }
        }
    }
}
