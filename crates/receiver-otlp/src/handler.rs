//! One request, start to answer: concurrency slot, path and method, authentication,
//! content negotiation, size limits, decoding, id checks, hand-off to the pipeline, and the
//! response and metrics for whatever happened.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracecast_core::batch::span_count;
use tracecast_core::{metrics, BatchContext, BatchSink, ComponentId, SubmitError, TraceBatch};

use crate::auth::Authenticator;
use crate::config::{Listen, OtlpReceiverConfig, Protocol};
use crate::cors::Cors;
use crate::decode::{self, BodyEncoding, ContentEncoding, InflateBudget, Rejected, Reserved};
use crate::error::RequestError;
use crate::limits::Limits;
use crate::status::{self, ResponseBody};

/// Bodies at least this large are decompressed and decoded on the blocking pool, so a
/// 16 MiB request does not stall the other connections served by the same worker thread.
const BLOCKING_DECODE_THRESHOLD: usize = 512 * 1024;
/// The same for compressed bodies: gzip inflates up to ~1000x, so 15 KB can be 16 MB to
/// inflate and scan.
const BLOCKING_DECOMPRESS_THRESHOLD: usize = 4 * 1024;

/// How long a refused request's unread body is drained before the connection is closed.
/// Closing a socket with unread data makes the kernel send a reset, which can destroy the
/// response before the client reads it; draining (like nginx's lingering close) lets the
/// client see the status code. Bounded in time and bytes so it cannot be abused.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// What one listener serves: the request handler for its protocol.
#[derive(Clone)]
pub(crate) enum Service {
    Http(Arc<Handler>),
    Grpc(Arc<Handler>),
}

/// A response body of any listener.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

impl Service {
    /// `handler` holds the receiver's shared bounds; the listener gets its own path and
    /// body limit.
    pub fn new(handler: &Handler, listen: &Listen) -> Self {
        let handler = Arc::new(handler.for_listener(listen));
        match listen.protocol {
            Protocol::Http => Service::Http(handler),
            Protocol::Grpc => Service::Grpc(handler),
        }
    }

    /// The hyper service function: always answers, never fails the connection.
    pub async fn call(self, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        match self {
            Service::Http(handler) => {
                let response = handler.handle(request).await?;
                Ok(response.map(|b| b.boxed()))
            }
            Service::Grpc(handler) => {
                let response = handler.handle_grpc(request).await?;
                Ok(response.map(|b| b.boxed()))
            }
        }
    }
}

/// Shared by every connection of one listener; the bounds (concurrency, decode budgets)
/// are shared by every listener of the receiver.
#[derive(Clone)]
pub(crate) struct Handler {
    id: ComponentId,
    receiver: Arc<str>,
    path: String,
    limit: u64,
    limits: Arc<Limits>,
    inflate: InflateBudget,
    /// Decoded request memory held by all requests at once (`max_decoding_size`).
    decoding: InflateBudget,
    read_timeout: Duration,
    max_concurrent: usize,
    permits: Arc<Semaphore>,
    auth: Authenticator,
    /// CORS of this listener (OTLP/HTTP with `cors.allowed_origins`).
    cors: Option<Arc<Cors>>,
    sink: Arc<dyn BatchSink>,
}

/// One export request's body as received, with what its head said.
pub(crate) struct Message {
    pub received: Bytes,
    pub content_encoding: ContentEncoding,
    pub encoding: BodyEncoding,
    /// The name of the ingest key it authenticated with.
    pub api_key_name: Option<Arc<str>>,
    pub received_at: SystemTime,
}

/// What the receiver did with an accepted request.
pub(crate) struct Accepted {
    pub encoding: BodyEncoding,
    pub rejected: Option<Rejected>,
}

/// A refusal and the spans it refused, when the body had been decoded.
pub(crate) struct Refused {
    pub err: RequestError,
    pub spans: usize,
    /// The request body, when it was not read before refusing (drained before answering).
    unread: Option<Incoming>,
}

impl From<RequestError> for Refused {
    fn from(err: RequestError) -> Self {
        Refused {
            err,
            spans: 0,
            unread: None,
        }
    }
}

impl Handler {
    /// The receiver's shared bounds; [`Self::for_listener`] gives each listener its own.
    pub fn new(id: ComponentId, config: &OtlpReceiverConfig, sink: Arc<dyn BatchSink>) -> Self {
        let max_concurrent = config.max_concurrent_requests.max(1);
        Self {
            limits: Arc::new(Limits::new(id.as_str(), config)),
            inflate: InflateBudget::new(id.as_str(), config.decompressing_size_limit()),
            decoding: InflateBudget::decoding(id.as_str(), config.decoding_size_limit()),
            receiver: Arc::from(id.as_str()),
            id,
            path: config.path.clone(),
            limit: config.max_request_body_size.get(),
            read_timeout: config.read_timeout.get(),
            max_concurrent,
            permits: Arc::new(Semaphore::new(max_concurrent)),
            auth: Authenticator::new(&config.api_keys),
            cors: None,
            sink,
        }
    }

    /// This handler for the listener `listen` (its path and body limit).
    pub fn for_listener(&self, listen: &Listen) -> Self {
        Self {
            path: listen.path.clone(),
            limit: listen.max_body,
            cors: listen.cors.as_ref().and_then(Cors::new).map(Arc::new),
            ..self.clone()
        }
    }

    /// The OTLP/HTTP service function: always answers, never fails the connection.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let encoding = BodyEncoding::for_response(request.headers());
        let mut allow_origin = None;
        if let Some(cors) = &self.cors {
            if Cors::is_preflight(&request) && request.uri().path() == self.path {
                return Ok(match cors.preflight(request.headers()) {
                    Ok(answer) => answer.map(|()| ResponseBody::default()),
                    Err(refused) => self.refused(
                        encoding,
                        &RequestError::CorsRefused { message: refused.0 },
                        0,
                    ),
                });
            }
            // A disallowed origin is refused in `check_head`; an allowed one can read
            // every answer, failures included.
            allow_origin = cors.check_request(request.headers()).ok().flatten();
        }
        let mut response = match self.process(request).await {
            Ok(accepted) => self.accepted(accepted),
            Err(refused) => {
                if let Some(body) = refused.unread {
                    drain(body, self.limit.saturating_mul(4)).await;
                }
                self.refused(encoding, &refused.err, refused.spans)
            }
        };
        if let Some(origin) = allow_origin {
            let headers = response.headers_mut();
            headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(http::header::VARY, http::HeaderValue::from_static("Origin"));
        }
        Ok(response)
    }

    /// One of the receiver's `max_concurrent_requests` slots, or the refusal.
    pub(crate) fn permit(&self) -> Result<OwnedSemaphorePermit, RequestError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| RequestError::Overloaded {
                limit: self.max_concurrent,
                retry_after: Duration::from_secs(1),
            })
    }

    async fn process(&self, request: Request<Incoming>) -> Result<Accepted, Refused> {
        // Taken first so that every later step, draining included, runs inside the bound.
        let _permit = self.permit()?;
        let received_at = SystemTime::now();
        let (parts, body) = request.into_parts();
        let checked = self.check_head(&parts);
        let (encoding, content_encoding, api_key_name) = match checked {
            Ok(head) => head,
            Err(err) => {
                return Err(Refused {
                    err,
                    spans: 0,
                    unread: Some(body),
                })
            }
        };

        if let Err(e) = self.sink.ready() {
            return Err(Refused {
                err: refusal(e),
                spans: 0,
                unread: Some(body),
            });
        }

        let received = decode::read_body(body, self.limit, self.read_timeout)
            .await
            .map_err(|(err, unread)| Refused {
                err,
                spans: 0,
                unread,
            })?;
        let message = Message {
            received,
            content_encoding,
            encoding,
            api_key_name,
            received_at,
        };
        self.ingest(message).await
    }

    /// A received body, whatever the protocol, to its answer: decompression, decoding and
    /// limits, id checks, and the hand-off to the pipeline (the answer only after the sink
    /// took the batch, i.e. after the durable append).
    pub(crate) async fn ingest(&self, message: Message) -> Result<Accepted, Refused> {
        let Message {
            received,
            content_encoding,
            encoding,
            api_key_name,
            received_at,
        } = message;
        let limit = self.limit;
        let limits = self.limits.clone();
        let inflate = self.inflate.clone();
        let decoding = self.decoding.clone();
        let threshold = match content_encoding {
            ContentEncoding::Identity => BLOCKING_DECODE_THRESHOLD,
            _ => BLOCKING_DECOMPRESS_THRESHOLD,
        };
        let large = received.len() >= threshold;
        let decode = move || {
            decode_body(
                received,
                content_encoding,
                encoding,
                limit,
                &limits,
                (&inflate, &decoding),
            )
        };
        // Large bodies take milliseconds of CPU to inflate and decode: off the async workers.
        let decoded = if large {
            tokio::task::spawn_blocking(decode)
                .await
                .map_err(|e| RequestError::Internal {
                    message: format!("decoding task failed: {e}"),
                })?
        } else {
            decode()
        };
        // `_held` holds the decompressed body's share of `max_decompressing_size` and the
        // decoded request's share of `max_decoding_size` until the request is answered.
        let (mut request, body, _held) = decoded?;

        let rejected = decode::drop_invalid_spans(&mut request);
        if let Some(rejected) = &rejected {
            metrics::SPANS_REFUSED
                .get_or_create(&metrics::reason(self.id.as_str(), "invalid_id"))
                .inc_by(rejected.count as u64);
            tracing::debug!(receiver = %self.id, rejected = rejected.count, problem = %rejected.first_problem, "dropped spans with invalid ids");
        }
        let bad_links = decode::drop_invalid_links(&mut request);
        if bad_links > 0 {
            metrics::WARNINGS
                .get_or_create(&metrics::reason(self.id.as_str(), "invalid_link_id"))
                .inc_by(bad_links as u64);
            tracing::debug!(receiver = %self.id, links = bad_links, "dropped span links with invalid ids");
        }
        let spans = span_count(&request);
        if spans == 0 {
            return Ok(Accepted { encoding, rejected });
        }

        // The received bytes describe the request only if it is protobuf and untouched.
        let untouched = rejected.is_none() && bad_links == 0;
        let keep = (encoding == BodyEncoding::Protobuf && untouched).then_some(body);
        let ctx = BatchContext {
            receiver: self.receiver.clone(),
            api_key_name,
            received_at,
        };
        let batch = TraceBatch::new(ctx, request, keep);
        match self.sink.submit(batch).await {
            Ok(()) => {
                metrics::SPANS_RECEIVED
                    .get_or_create(&metrics::component(self.id.as_str()))
                    .inc_by(spans as u64);
                Ok(Accepted { encoding, rejected })
            }
            Err(e) => Err(Refused {
                err: refusal(e),
                spans,
                unread: None,
            }),
        }
    }

    /// Checks that need only the request head, cheapest and most telling first.
    fn check_head(
        &self,
        parts: &http::request::Parts,
    ) -> Result<(BodyEncoding, ContentEncoding, Option<Arc<str>>), RequestError> {
        if parts.uri.path() != self.path {
            return Err(RequestError::NotFound {
                got: parts.uri.path().to_string(),
                expected: self.path.clone(),
            });
        }
        if parts.method != Method::POST {
            return Err(RequestError::MethodNotAllowed {
                method: parts.method.to_string(),
                path: self.path.clone(),
            });
        }
        if let Some(cors) = &self.cors {
            cors.check_request(&parts.headers)
                .map_err(|refused| RequestError::CorsRefused { message: refused.0 })?;
        }
        let api_key_name = self.auth.authenticate(&parts.headers)?;
        let encoding = BodyEncoding::from_headers(&parts.headers)?;
        let content_encoding = ContentEncoding::from_headers(&parts.headers)?;
        decode::check_content_length(&parts.headers, self.limit)?;
        Ok((encoding, content_encoding, api_key_name))
    }

    fn accepted(&self, accepted: Accepted) -> Response<ResponseBody> {
        match accepted.rejected {
            Some(rejected) => {
                let message = format!(
                    "{} span(s) rejected because of invalid ids; first: {}",
                    rejected.count, rejected.first_problem
                );
                status::success(accepted.encoding, rejected.count as i64, &message)
            }
            None => status::success(accepted.encoding, 0, ""),
        }
    }

    fn refused(
        &self,
        encoding: BodyEncoding,
        err: &RequestError,
        spans: usize,
    ) -> Response<ResponseBody> {
        self.record_refusal(err, spans);
        status::failure(encoding, err)
    }

    /// Counts and logs a refused request, whatever the protocol.
    pub(crate) fn record_refusal(&self, err: &RequestError, spans: usize) {
        let reason = err.metric_reason();
        metrics::REQUESTS_REFUSED
            .get_or_create(&metrics::reason(self.id.as_str(), reason))
            .inc();
        if spans > 0 {
            metrics::SPANS_REFUSED
                .get_or_create(&metrics::reason(self.id.as_str(), reason))
                .inc_by(spans as u64);
        }
        let status = err.status().as_u16();
        match err {
            RequestError::Unavailable { .. } | RequestError::Internal { .. } => {
                tracing::warn!(receiver = %self.id, status, reason, spans, error = %err, "refused request")
            }
            _ => {
                tracing::debug!(receiver = %self.id, status, reason, spans, error = %err, "refused request")
            }
        }
    }

    /// The ingest key a request's headers (or gRPC metadata) authenticate.
    pub(crate) fn authenticate(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<Arc<str>>, RequestError> {
        self.auth.authenticate(headers)
    }

    /// Whether the pipeline may take a request at all, checked before reading its body.
    pub(crate) fn ready(&self) -> Result<(), RequestError> {
        self.sink.ready().map_err(refusal)
    }

    /// The listener's largest body (a gRPC message here) and the time allowed to read it.
    pub(crate) fn body_limits(&self) -> (u64, Duration) {
        (self.limit, self.read_timeout)
    }
}

fn decode_body(
    received: Bytes,
    content_encoding: ContentEncoding,
    encoding: BodyEncoding,
    limit: u64,
    limits: &Limits,
    (inflate, decoding): (&InflateBudget, &InflateBudget),
) -> Result<
    (
        tracecast_core::ExportTraceServiceRequest,
        Bytes,
        (Reserved, Reserved),
    ),
    RequestError,
> {
    let (body, inflated) = decode::decompress(received, content_encoding, limit, inflate)?;
    let (request, decoded) = decode::decode_within(encoding, &body, limits, Some(decoding))?;
    limits.check_decoded(&request)?;
    Ok((request, body, (inflated, decoded)))
}

/// Reads and discards up to `max_bytes` of a refused request's body within [`DRAIN_TIME`].
async fn drain(mut body: Incoming, max_bytes: u64) {
    let discard = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > max_bytes {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// The receiver's answer to a pipeline that cannot take a request.
fn refusal(e: SubmitError) -> RequestError {
    match e {
        SubmitError::Full { retry_after } => RequestError::Full { retry_after },
        SubmitError::Unavailable {
            reason,
            retry_after,
        } => RequestError::Unavailable {
            reason,
            retry_after,
        },
    }
}
