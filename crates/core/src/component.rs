//! One trait per component kind.
//!
//! Lifecycle, shared by all kinds: a component is built from its validated config by the
//! registry (binary crate), started by the pipeline runtime, and shut down by closing its
//! input. Shutdown flushes whatever the component buffers; a component that was built but
//! never started is simply dropped.

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{ExportError, SubmitError};
use crate::CancellationToken;
use crate::TraceBatch;

/// Where a receiver hands accepted batches. Implemented by the pipeline runtime's fan-out.
///
/// `submit` returns `Ok` only once every pipeline the receiver feeds has taken the batch;
/// the receiver answers 2xx after that and not before.
#[async_trait]
pub trait BatchSink: Send + Sync + 'static {
    async fn submit(&self, batch: TraceBatch) -> Result<(), SubmitError>;

    /// Whether a request may be read at all (checked before the body is read, so an
    /// overloaded process refuses without buffering it). Default: always.
    fn ready(&self) -> Result<(), SubmitError> {
        Ok(())
    }
}

/// A processor transforms batches in one pipeline. The pipeline task owns its processors
/// (hence `&mut self` and no locks). A processor may hold batches back (`batch`): it then
/// reports when it next wants to be woken, and releases everything on `flush`.
pub trait Processor: Send + 'static {
    /// Processes one batch, pushing zero or more batches onto `out`.
    fn process(&mut self, batch: TraceBatch, out: &mut Vec<TraceBatch>);

    /// When `on_deadline` must next be called, if the processor holds data.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Called at or after `next_deadline`; pushes what became due.
    fn on_deadline(&mut self, _now: Instant, _out: &mut Vec<TraceBatch>) {}

    /// Pushes everything held (shutdown).
    fn flush(&mut self, _out: &mut Vec<TraceBatch>) {}
}

/// An exporter delivers batches to one destination.
#[async_trait]
pub trait Exporter: Send + Sync + 'static {
    /// Checks the destination with the least privilege the destination's docs require
    /// (an empty OTLP export, a PutObject of a probe object). Used by `tracecast check`,
    /// at start and before a reloaded config is taken.
    async fn test_connection(&self) -> Result<(), ExportError>;

    /// Consumes `input` until it is closed and empty, delivering every batch. Returns when
    /// drained. `hard_stop` fires when the shutdown deadline has passed: stop retrying, report
    /// what could not be delivered, and return.
    async fn run(self: Box<Self>, input: mpsc::Receiver<TraceBatch>, hard_stop: CancellationToken);
}
