//! The batch type.
//!
//! Design: a [`TraceBatch`] holds its decoded request behind an `Arc`, so fan-out to several
//! pipelines is a reference-count increment, not a copy. A processor that writes calls
//! [`TraceBatch::request_mut`], which copies the request only if another pipeline still
//! shares it (copy-on-write), so Privacy Mode in one pipeline can never change what another
//! pipeline sees. The protobuf bytes the receiver decoded are kept beside the request while
//! nobody has written to it, so a batch that no processor touched is forwarded without being
//! encoded again.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use prost::Message;

use crate::ack::DeliveryToken;
use crate::ExportTraceServiceRequest;

/// Where a batch came from. Shared by every copy of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchContext {
    /// Id of the receiver that accepted the request (e.g. `otlp`).
    pub receiver: Arc<str>,
    /// Name of the ingest key the request authenticated with, if the receiver uses keys.
    /// It fills `{apiKeyName}` in S3 paths. Never the token itself.
    pub api_key_name: Option<Arc<str>>,
    /// When the receiver accepted the request.
    pub received_at: SystemTime,
}

impl BatchContext {
    pub fn new(receiver: impl Into<Arc<str>>) -> Self {
        Self {
            receiver: receiver.into(),
            api_key_name: None,
            received_at: SystemTime::now(),
        }
    }
}

/// One export request's worth of spans plus where it came from. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TraceBatch {
    ctx: Arc<BatchContext>,
    request: Arc<ExportTraceServiceRequest>,
    /// Protobuf encoding of `request`, valid while `request` is unmodified.
    encoded: Option<Bytes>,
    /// Claims on the durable-queue entries this batch's spans came from (see [`crate::ack`]).
    tokens: Vec<DeliveryToken>,
}

impl TraceBatch {
    /// A batch from a decoded request. Pass `encoded` when the protobuf bytes of exactly
    /// this request are at hand (the receiver's body), so it can be forwarded as is.
    pub fn new(
        ctx: BatchContext,
        request: ExportTraceServiceRequest,
        encoded: Option<Bytes>,
    ) -> Self {
        Self {
            ctx: Arc::new(ctx),
            request: Arc::new(request),
            encoded,
            tokens: Vec::new(),
        }
    }

    /// A batch sharing `ctx` with another one (used by processors that split or merge).
    /// It carries no delivery tokens: add those of its sources with
    /// [`TraceBatch::absorb_tokens`] or [`TraceBatch::with_tokens`].
    pub fn with_context(ctx: Arc<BatchContext>, request: ExportTraceServiceRequest) -> Self {
        Self {
            ctx,
            request: Arc::new(request),
            encoded: None,
            tokens: Vec::new(),
        }
    }

    /// Replaces the delivery tokens (builder style).
    pub fn with_tokens(mut self, tokens: Vec<DeliveryToken>) -> Self {
        self.tokens = tokens;
        self
    }

    /// The delivery tokens this batch carries.
    pub fn tokens(&self) -> &[DeliveryToken] {
        &self.tokens
    }

    /// Moves the delivery tokens out (the caller now owns the claims and must settle them).
    pub fn take_tokens(&mut self) -> Vec<DeliveryToken> {
        std::mem::take(&mut self.tokens)
    }

    /// Takes over `other`'s claims (when merging batches): `other`'s data now travels in
    /// this batch. Claims on entries already carried are confirmed, not duplicated.
    pub fn absorb_tokens(&mut self, other: &mut TraceBatch) {
        crate::ack::merge_tokens(&mut self.tokens, other.take_tokens());
    }

    /// This copy of the data reached its final place (exported, written, kept in a
    /// dead-letter folder), or had nothing to deliver: settles its claims.
    pub fn confirm(mut self) {
        for t in self.take_tokens() {
            t.confirm();
        }
    }

    /// Gives up on this batch on purpose (shutdown deadline): its queue entries stay
    /// queued and are replayed at the next start, without a retry now.
    pub fn abandon(mut self) {
        for t in self.take_tokens() {
            t.abandon();
        }
    }

    /// Splits the batch into its shared context, its request and its claims.
    pub fn into_parts(
        mut self,
    ) -> (
        Arc<BatchContext>,
        ExportTraceServiceRequest,
        Vec<DeliveryToken>,
    ) {
        let tokens = self.take_tokens();
        let ctx = self.ctx.clone();
        (ctx, self.into_request(), tokens)
    }

    pub fn context(&self) -> &BatchContext {
        &self.ctx
    }

    pub fn shared_context(&self) -> &Arc<BatchContext> {
        &self.ctx
    }

    pub fn request(&self) -> &ExportTraceServiceRequest {
        &self.request
    }

    /// Write access: copies the request if another holder shares it, and forgets the
    /// received bytes (they no longer describe the request).
    pub fn request_mut(&mut self) -> &mut ExportTraceServiceRequest {
        self.encoded = None;
        Arc::make_mut(&mut self.request)
    }

    /// Takes the request out, copying only if it is shared. The batch's claims are
    /// dropped unsettled (the entry is *not* delivered): take them first with
    /// [`TraceBatch::take_tokens`] or use [`TraceBatch::into_parts`].
    pub fn into_request(mut self) -> ExportTraceServiceRequest {
        let request = std::mem::take(&mut self.request);
        Arc::try_unwrap(request).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Splits the batch like [`TraceBatch::into_parts`], also handing over the received
    /// protobuf bytes when they still describe the request (see
    /// [`TraceBatch::received_protobuf`]).
    pub fn into_parts_with_protobuf(
        mut self,
    ) -> (
        Arc<BatchContext>,
        ExportTraceServiceRequest,
        Option<Bytes>,
        Vec<DeliveryToken>,
    ) {
        let encoded = self.encoded.take();
        let (ctx, request, tokens) = self.into_parts();
        (ctx, request, encoded, tokens)
    }

    /// Attaches protobuf bytes that encode exactly this batch's request (builder style), so
    /// exporters forward them instead of encoding again. Used by the `batch` processor,
    /// which joins the received bytes of the batches it merges: an
    /// `ExportTraceServiceRequest` is one repeated field, so concatenated encodings decode
    /// as the request holding all their `resource_spans` in order.
    pub fn with_protobuf(mut self, encoded: Bytes) -> Self {
        self.encoded = Some(encoded);
        self
    }

    /// The received protobuf bytes, if no processor has modified the batch.
    pub fn received_protobuf(&self) -> Option<&Bytes> {
        self.encoded.as_ref()
    }

    /// Protobuf encoding: the received bytes when still valid, else a fresh encoding.
    pub fn to_protobuf(&self) -> Bytes {
        match &self.encoded {
            Some(bytes) => bytes.clone(),
            None => Bytes::from(self.request.encode_to_vec()),
        }
    }

    /// Number of spans in the batch.
    pub fn span_count(&self) -> usize {
        span_count(&self.request)
    }
}

/// Number of spans in a request.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .map(|ss| ss.spans.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn request(n: usize) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (0..n)
                        .map(|i| Span {
                            name: format!("s{i}"),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn writing_to_a_shared_batch_leaves_the_other_copy_untouched() {
        let req = request(2);
        let bytes = Bytes::from(req.encode_to_vec());
        let a = TraceBatch::new(BatchContext::new("otlp"), req, Some(bytes.clone()));
        let mut b = a.clone();
        b.request_mut().resource_spans[0].scope_spans[0].spans[0].name = "changed".into();
        assert_eq!(
            a.request().resource_spans[0].scope_spans[0].spans[0].name,
            "s0"
        );
        assert_eq!(a.received_protobuf(), Some(&bytes));
        assert!(b.received_protobuf().is_none());
        let decoded = ExportTraceServiceRequest::decode(b.to_protobuf()).unwrap();
        assert_eq!(
            decoded.resource_spans[0].scope_spans[0].spans[0].name,
            "changed"
        );
        assert_eq!(b.span_count(), 2);
    }
}
