//! Shared by the receiver tests: a recording [`BatchSink`] that can be told to refuse or to
//! hold batches, request fixtures, and a started receiver on 127.0.0.1:0.
#![allow(dead_code)] // each test binary uses a different part

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tracecast_core::proto::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecast_core::{
    BatchSink, CancellationToken, ComponentId, ExportTraceServiceRequest, SubmitError, TraceBatch,
};
use tracecast_receiver_otlp::{OtlpReceiver, OtlpReceiverConfig, RunningReceiver};

/// What the sink does with the next batches.
#[derive(Debug, Clone)]
pub enum Mode {
    Accept,
    Full(Duration),
    Unavailable(Duration),
    /// Waits for [`RecordingSink::release`] before accepting.
    Hold,
}

pub struct RecordingSink {
    batches: Mutex<Vec<TraceBatch>>,
    mode: Mutex<Mode>,
    entered: Notify,
    release: Notify,
}

impl RecordingSink {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            batches: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Accept),
            entered: Notify::new(),
            release: Notify::new(),
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn batches(&self) -> Vec<TraceBatch> {
        self.batches.lock().unwrap().clone()
    }

    /// Resolves once a held `submit` has started.
    pub async fn entered(&self) {
        self.entered.notified().await;
    }

    pub fn release(&self) {
        self.release.notify_one();
    }
}

#[async_trait]
impl BatchSink for RecordingSink {
    async fn submit(&self, batch: TraceBatch) -> Result<(), SubmitError> {
        let mode = self.mode.lock().unwrap().clone();
        match mode {
            Mode::Accept => {}
            Mode::Full(retry_after) => return Err(SubmitError::Full { retry_after }),
            Mode::Unavailable(retry_after) => {
                return Err(SubmitError::Unavailable {
                    reason: "disk queue is full".into(),
                    retry_after,
                })
            }
            Mode::Hold => {
                self.entered.notify_one();
                self.release.notified().await;
            }
        }
        self.batches.lock().unwrap().push(batch);
        Ok(())
    }
}

pub struct Started {
    pub running: RunningReceiver,
    pub shutdown: CancellationToken,
    pub url: String,
    pub sink: Arc<RecordingSink>,
}

/// Starts a receiver with id `id` on 127.0.0.1:0; `edit` adjusts the default config.
pub async fn start(id: &str, edit: impl FnOnce(&mut OtlpReceiverConfig)) -> Started {
    let mut config = OtlpReceiverConfig {
        endpoint: "127.0.0.1:0".into(),
        ..Default::default()
    };
    edit(&mut config);
    let sink = RecordingSink::new();
    let shutdown = CancellationToken::new();
    let receiver = OtlpReceiver::new(ComponentId::parse(id).unwrap(), config, sink.clone());
    let running = receiver.start(shutdown.clone()).await.unwrap();
    let url = format!("http://{}/v1/traces", running.local_addr);
    Started {
        running,
        shutdown,
        url,
        sink,
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A request with `n` valid spans in one trace, each with a few attributes.
pub fn request(n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: vec![0xab; 16],
            span_id: vec![i as u8 + 1; 8],
            name: format!("chat gpt-4o #{i}"),
            kind: 3,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            end_time_unix_nano: 1_700_000_000_500_000_000 + i as u64,
            attributes: vec![
                string_attr("gen_ai.system", "openai"),
                string_attr("gen_ai.request.model", "gpt-4o"),
                KeyValue {
                    key: "gen_ai.usage.input_tokens".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(100 + i as i64)),
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![string_attr("service.name", "llm-gateway")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "gateway".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub fn spans(request: &ExportTraceServiceRequest) -> Vec<&Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}
