//! Delivery tokens: how a durably queued entry learns that every destination has it.
//!
//! The durable queue hands each entry to its pipeline as a [`TraceBatch`] carrying one
//! [`DeliveryToken`]. Every copy of the batch (fan-out, splits, merges, spans held for trace
//! assembly) carries a clone of the token. When the last clone is dropped, the entry counts
//! as delivered and the queue may forget it. A component that gives up on data without
//! delivering it (shutdown deadline, crash) calls [`DeliveryToken::abandon`] (or
//! [`TraceBatch::abandon`](crate::TraceBatch::abandon)) first, so the entry stays in the
//! queue and is replayed at the next start: at least once, never lost.
//!
//! Rule for components: never build a new batch out of received data without carrying the
//! tokens of the batches it came from (`TraceBatch::add_tokens_from`,
//! `TraceBatch::with_tokens`).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Told when an entry has been delivered everywhere (implemented by the durable queue).
pub trait AckSink: Send + Sync + 'static {
    fn delivered(&self, seq: u64);
}

struct TokenInner {
    seq: u64,
    sink: Arc<dyn AckSink>,
    abandoned: AtomicBool,
}

impl Drop for TokenInner {
    fn drop(&mut self) {
        if !self.abandoned.load(Ordering::Acquire) {
            self.sink.delivered(self.seq);
        }
    }
}

/// A claim on one queued entry; cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct DeliveryToken(Arc<TokenInner>);

impl DeliveryToken {
    pub fn new(seq: u64, sink: Arc<dyn AckSink>) -> Self {
        Self(Arc::new(TokenInner {
            seq,
            sink,
            abandoned: AtomicBool::new(false),
        }))
    }

    /// The queue sequence number of the entry.
    pub fn seq(&self) -> u64 {
        self.0.seq
    }

    /// Marks the entry as not delivered: it stays queued and is replayed at the next start.
    pub fn abandon(&self) {
        self.0.abandoned.store(true, Ordering::Release);
    }

    /// Whether some holder abandoned the entry.
    pub fn is_abandoned(&self) -> bool {
        self.0.abandoned.load(Ordering::Acquire)
    }

    /// Same entry (same underlying claim).
    pub fn same_entry(&self, other: &DeliveryToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for DeliveryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeliveryToken({})", self.0.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<u64>>);
    impl AckSink for Recorder {
        fn delivered(&self, seq: u64) {
            self.0.lock().unwrap().push(seq);
        }
    }

    #[test]
    fn delivered_when_the_last_clone_drops_unless_abandoned() {
        let rec = Arc::new(Recorder::default());
        let t = DeliveryToken::new(7, rec.clone());
        let t2 = t.clone();
        drop(t);
        assert!(rec.0.lock().unwrap().is_empty());
        drop(t2);
        assert_eq!(*rec.0.lock().unwrap(), vec![7]);

        let a = DeliveryToken::new(8, rec.clone());
        let b = a.clone();
        b.abandon();
        drop(a);
        drop(b);
        assert_eq!(*rec.0.lock().unwrap(), vec![7]);
    }
}
