//! One trait per component kind: [`Receiver`], [`Processor`], [`Exporter`].
//!
//! Lifecycle, shared by all kinds: a component is built from its validated config by the
//! registry (`tracecast-runtime`'s `registry.rs`), started by the pipeline runtime, and shut
//! down by closing its input (processors, exporters) or cancelling its token (receivers).
//! Shutdown flushes whatever the component buffers; a component that was built but never
//! started is simply dropped.

use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{BindError, ExportError, SubmitError};
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

/// A receiver accepts data from clients and hands it to the [`BatchSink`] it was built with.
///
/// Starting is split in two so that a reload is all or nothing: [`Receiver::bind`] (or
/// [`Receiver::take_over`]) is the only step that can fail, and the runtime does it for every
/// new receiver before it changes anything; [`BoundReceiver::serve`] cannot fail.
#[async_trait]
pub trait Receiver: Send + 'static {
    /// The endpoint as configured (`host:port`). A receiver replacing a running one on the
    /// same endpoint takes over its socket instead of binding again: re-binding would leave a
    /// moment with nothing listening, or fail because the old listener still holds the port.
    fn endpoint(&self) -> &str;

    /// Binds the listener without accepting yet: connections wait in the kernel's backlog
    /// until [`BoundReceiver::serve`]. Errors name the address and the cause.
    async fn bind(self: Box<Self>) -> Result<Box<dyn BoundReceiver>, BindError>;

    /// Shares the listening socket of `running` (same endpoint, new settings). Both accept
    /// from it until the caller stops the old one, so nothing is refused in between.
    fn take_over(
        self: Box<Self>,
        running: &dyn RunningReceiver,
    ) -> Result<Box<dyn BoundReceiver>, BindError>;
}

/// A receiver whose listener is bound but not yet accepting. Dropping it closes the listener
/// (a later step of a reload failed).
pub trait BoundReceiver: Send + 'static {
    /// The address actually bound (useful with port 0).
    fn local_addr(&self) -> SocketAddr;

    /// Starts accepting; the receiver serves until `shutdown` is cancelled.
    fn serve(self: Box<Self>, shutdown: CancellationToken) -> Box<dyn RunningReceiver>;
}

/// A serving receiver. Stopping it: cancel the token given to [`BoundReceiver::serve`], then
/// await [`RunningReceiver::stopped`].
#[async_trait]
pub trait RunningReceiver: Send + Sync + 'static {
    /// The address actually bound.
    fn local_addr(&self) -> SocketAddr;

    /// The endpoint as configured (what a new config is compared with to reuse the socket).
    fn endpoint(&self) -> &str;

    /// A second descriptor of the listening socket, for [`Receiver::take_over`]; `None` when
    /// the platform cannot duplicate it or the receiver is stopping.
    fn socket(&self) -> Option<&std::net::TcpListener>;

    /// Resolves when the receiver stopped accepting and answered every in-flight request.
    async fn stopped(self: Box<Self>);
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
