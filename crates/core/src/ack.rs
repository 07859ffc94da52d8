//! Delivery tokens: how a durably queued entry learns that every destination has it.
//!
//! The durable queue hands each entry to its pipeline as a [`TraceBatch`](crate::TraceBatch)
//! carrying one [`DeliveryToken`]. Every copy of the batch (fan-out, splits, spans held for
//! trace assembly) carries a clone of the token, and **each clone is a claim that must be
//! settled explicitly**:
//!
//! - [`DeliveryToken::confirm`]: this copy reached its final place (exported, written,
//!   dead-lettered), or its responsibility was handed to other clones (a merge), or it held
//!   nothing to deliver (an empty batch).
//! - [`DeliveryToken::abandon`]: give up without delivering, on purpose (shutdown deadline):
//!   the entry stays queued and is replayed at the next start; nothing is retried now.
//! - dropped without either (a panic unwinding, a forgotten path, a failure nothing could
//!   keep): the entry is **not delivered**. The queue's owner is told ([`AckSink::failed`])
//!   and may retry the entry, then quarantine it.
//!
//! When the last clone is gone, the entry counts as delivered only if every clone was
//! confirmed. So a panic or a lost path can cause a duplicate (the entry is sent again),
//! never a loss. This is why "drop means delivered" was replaced: with it, any panic in a
//! processor or exporter acknowledged data that never arrived.
//!
//! Rule for components: never build a new batch out of received data without carrying the
//! tokens of the batches it came from (`TraceBatch::into_parts`, `TraceBatch::with_tokens`,
//! `TraceBatch::absorb_tokens`), and settle every batch you consume.
//!
//! A component that holds data outside a batch while it delivers it (an exporter's request
//! in flight, a trace being assembled from several batches) holds its tokens as [`Claims`]:
//! the same two words, [`Claims::confirm`] and [`Claims::abandon`], and the same meaning
//! when dropped unsettled. Claims never hold two tokens of one entry ([`merge_tokens`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Told how an entry ended (implemented by the durable queue).
pub trait AckSink: Send + Sync + 'static {
    /// Every claim on the entry was confirmed.
    fn delivered(&self, seq: u64);
    /// Some claim was dropped without being confirmed or abandoned: the entry was not
    /// delivered everywhere. The default does nothing (the entry stays queued and is
    /// replayed at the next start).
    fn failed(&self, _seq: u64) {}
}

struct TokenInner {
    seq: u64,
    sink: Arc<dyn AckSink>,
    abandoned: AtomicBool,
    failed: AtomicBool,
}

impl Drop for TokenInner {
    fn drop(&mut self) {
        if self.abandoned.load(Ordering::Acquire) {
            return;
        }
        if self.failed.load(Ordering::Acquire) {
            self.sink.failed(self.seq);
        } else {
            self.sink.delivered(self.seq);
        }
    }
}

/// One claim on one queued entry; cloning makes another claim on the same entry (an
/// `Arc` increment). See the module docs for how claims are settled.
pub struct DeliveryToken {
    inner: Arc<TokenInner>,
    settled: bool,
}

impl Clone for DeliveryToken {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            settled: false,
        }
    }
}

impl Drop for DeliveryToken {
    fn drop(&mut self) {
        if !self.settled {
            self.inner.failed.store(true, Ordering::Release);
        }
    }
}

impl DeliveryToken {
    pub fn new(seq: u64, sink: Arc<dyn AckSink>) -> Self {
        Self {
            inner: Arc::new(TokenInner {
                seq,
                sink,
                abandoned: AtomicBool::new(false),
                failed: AtomicBool::new(false),
            }),
            settled: false,
        }
    }

    /// The queue sequence number of the entry.
    pub fn seq(&self) -> u64 {
        self.inner.seq
    }

    /// Settles this claim: its copy of the data is where it belongs (or was handed on).
    pub fn confirm(mut self) {
        self.settled = true;
    }

    /// Marks the entry as not delivered, on purpose: it stays queued and is replayed at the
    /// next start (no retry now). Settles this claim.
    pub fn abandon(mut self) {
        self.inner.abandoned.store(true, Ordering::Release);
        self.settled = true;
    }

    /// Marks the entry abandoned without consuming this claim (for holders that only have
    /// a reference); the claim itself still has to be dropped or settled.
    pub fn mark_abandoned(&self) {
        self.inner.abandoned.store(true, Ordering::Release);
    }

    /// Whether some holder abandoned the entry.
    pub fn is_abandoned(&self) -> bool {
        self.inner.abandoned.load(Ordering::Acquire)
    }

    /// Whether some claim on the entry was dropped unsettled.
    pub fn is_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }

    /// Same entry (same underlying claim).
    pub fn same_entry(&self, other: &DeliveryToken) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Adds `more` to `tokens`; a claim on an entry already carried is confirmed (its
/// responsibility passes to the one kept), so merging never multiplies claims.
pub fn merge_tokens(
    tokens: &mut Vec<DeliveryToken>,
    more: impl IntoIterator<Item = DeliveryToken>,
) {
    for t in more {
        if tokens.iter().any(|mine| mine.same_entry(&t)) {
            t.confirm();
        } else {
            tokens.push(t);
        }
    }
}

/// The claims a holder keeps on the queue entries its data came from, until that data is
/// delivered: at most one per entry (added through [`merge_tokens`]).
///
/// - [`Claims::confirm`]: the data reached its final place (delivered, or kept in a
///   dead-letter folder).
/// - [`Claims::abandon`]: given up on purpose (shutdown deadline): the entries stay queued
///   and are replayed at the next start.
/// - dropped without either (a panic, a failure nothing could keep): the entries count as
///   **not delivered**; the pipeline retries them, then quarantines them.
#[derive(Debug, Default)]
pub struct Claims(Vec<DeliveryToken>);

impl Claims {
    /// Claims made of `tokens` (duplicates of one entry are merged).
    pub fn new(tokens: Vec<DeliveryToken>) -> Self {
        let mut claims = Self::default();
        claims.add(tokens);
        claims
    }

    /// Takes over `tokens`; a token of an entry already claimed is confirmed (see
    /// [`merge_tokens`]).
    pub fn add(&mut self, tokens: impl IntoIterator<Item = DeliveryToken>) {
        merge_tokens(&mut self.0, tokens);
    }

    /// Adds a claim on each entry `batch` carries. The batch keeps its own claims: its
    /// holder confirms them once every holder it fed has taken its claim.
    pub fn add_from(&mut self, batch: &crate::TraceBatch) {
        self.add(batch.tokens().iter().cloned());
    }

    /// No claim held (the data came with no tokens: no durable queue in front).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Queue sequence numbers claimed.
    pub fn seqs(&self) -> Vec<u64> {
        self.0.iter().map(DeliveryToken::seq).collect()
    }

    /// The data reached its final place: confirms every claim. An entry is acknowledged
    /// once every other holder has confirmed it too.
    pub fn confirm(mut self) {
        self.0.drain(..).for_each(DeliveryToken::confirm);
    }

    /// Gives the entries up on purpose (hard stop): they stay queued for the next start.
    pub fn abandon(mut self) {
        self.0.drain(..).for_each(DeliveryToken::abandon);
    }

    /// The tokens, to hand to a batch ([`crate::TraceBatch::with_tokens`]).
    pub fn into_tokens(mut self) -> Vec<DeliveryToken> {
        std::mem::take(&mut self.0)
    }
}

impl fmt::Debug for DeliveryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeliveryToken({})", self.inner.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        delivered: Mutex<Vec<u64>>,
        failed: Mutex<Vec<u64>>,
    }
    impl AckSink for Recorder {
        fn delivered(&self, seq: u64) {
            self.delivered.lock().unwrap().push(seq);
        }
        fn failed(&self, seq: u64) {
            self.failed.lock().unwrap().push(seq);
        }
    }

    #[test]
    fn delivered_when_every_clone_is_confirmed() {
        let rec = Arc::new(Recorder::default());
        let t = DeliveryToken::new(7, rec.clone());
        let t2 = t.clone();
        t.confirm();
        assert!(rec.delivered.lock().unwrap().is_empty());
        t2.confirm();
        assert_eq!(*rec.delivered.lock().unwrap(), vec![7]);
        assert!(rec.failed.lock().unwrap().is_empty());
    }

    #[test]
    fn a_clone_dropped_unsettled_means_not_delivered() {
        let rec = Arc::new(Recorder::default());
        let t = DeliveryToken::new(9, rec.clone());
        let t2 = t.clone();
        t.confirm();
        drop(t2);
        assert!(rec.delivered.lock().unwrap().is_empty());
        assert_eq!(*rec.failed.lock().unwrap(), vec![9]);
    }

    #[test]
    fn a_panic_holding_a_token_is_not_a_delivery() {
        let rec = Arc::new(Recorder::default());
        let t = DeliveryToken::new(3, rec.clone());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = t;
            panic!("processor bug");
        }));
        assert!(r.is_err());
        assert!(rec.delivered.lock().unwrap().is_empty());
        assert_eq!(*rec.failed.lock().unwrap(), vec![3]);
    }

    #[test]
    fn abandoned_entries_are_neither_delivered_nor_failed() {
        let rec = Arc::new(Recorder::default());
        let a = DeliveryToken::new(8, rec.clone());
        let b = a.clone();
        b.abandon();
        drop(a);
        assert!(rec.delivered.lock().unwrap().is_empty());
        assert!(rec.failed.lock().unwrap().is_empty());
    }

    #[test]
    fn claims_hold_one_token_per_entry_and_settle_with_the_same_words() {
        let rec = Arc::new(Recorder::default());
        let a = DeliveryToken::new(1, rec.clone());
        let b = DeliveryToken::new(2, rec.clone());
        let mut claims = Claims::new(vec![a.clone(), a.clone()]);
        claims.add(vec![b.clone(), a.clone()]);
        assert_eq!(claims.seqs(), vec![1, 2]);
        claims.confirm();
        a.confirm();
        b.confirm();
        assert_eq!(*rec.delivered.lock().unwrap(), vec![1, 2]);

        let c = DeliveryToken::new(3, rec.clone());
        Claims::new(vec![c]).abandon();
        let d = DeliveryToken::new(4, rec.clone());
        drop(Claims::new(vec![d]));
        assert_eq!(*rec.delivered.lock().unwrap(), vec![1, 2]);
        assert_eq!(*rec.failed.lock().unwrap(), vec![4]);
    }

    #[test]
    fn merging_confirms_the_duplicate_claim() {
        let rec = Arc::new(Recorder::default());
        let a = DeliveryToken::new(1, rec.clone());
        let mut kept = vec![a.clone()];
        merge_tokens(&mut kept, vec![a]);
        assert_eq!(kept.len(), 1);
        kept.pop().unwrap().confirm();
        assert_eq!(*rec.delivered.lock().unwrap(), vec![1]);
    }
}
