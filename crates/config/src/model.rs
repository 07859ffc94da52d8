//! The config as the rest of tracecast sees it: component bodies kept raw (each component
//! crate decodes its own with [`crate::Config::decode`]) and the typed `service` section.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use tracecast_core::{ComponentId, ComponentKind};

use crate::positions::Positions;
use crate::units::{ByteSize, Duration};

/// A loaded config: the component graph is consistent (every reference resolves), but
/// component bodies are not decoded yet.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file name used in error messages.
    pub source: String,
    pub receivers: BTreeMap<ComponentId, RawComponent>,
    pub processors: BTreeMap<ComponentId, RawComponent>,
    pub exporters: BTreeMap<ComponentId, RawComponent>,
    pub service: ServiceConfig,
    /// Where each key path was written, so later decodes can report lines.
    pub(crate) positions: Arc<Positions>,
}

/// One component as written: its id, kind and env-expanded body.
#[derive(Debug, Clone, PartialEq)]
pub struct RawComponent {
    pub id: ComponentId,
    pub kind: ComponentKind,
    /// The body with `${env:...}` expanded; an empty body (`otlp:`) is an empty mapping so
    /// that an all-defaults config decodes.
    pub body: serde_yaml::Value,
    /// The key path of the body, like `exporters.otlp/axiom`; errors inside the body are
    /// reported below it.
    pub path: String,
}

/// The `service` section. Each field is a typed setting; there is deliberately no
/// free-form map: later settings get their own fields (and a line in `service.rs`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Pipelines by name: `traces` or `traces/<name>` (tracecast carries traces only).
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// tracecast's own logs.
    pub telemetry: TelemetryConfig,
    /// How long shutdown waits for in-flight data to drain before dropping it.
    pub shutdown_timeout: Duration,
    /// The admin endpoint (`/metrics`, `/healthz`, `/readyz`).
    pub admin: AdminConfig,
    /// Folder of the durable queues (one sub-folder per pipeline). Acknowledged spans live
    /// here until every exporter of their pipeline has them.
    pub queue_dir: PathBuf,
    /// Durability and size of the queues.
    pub queue: QueueConfig,
    /// Resident memory above which the receivers refuse requests (503 + `Retry-After`)
    /// until it drops again, like the Collector's `memory_limiter`; `0` disables the check.
    pub memory_limit: ByteSize,
}

/// Durable queue settings (shared by every pipeline's queue).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `always`: answer 2xx only after fsync (group commit shares one fsync among concurrent
    /// requests); `interval`: fsync every `fsync_interval` (a crash may lose that much);
    /// `never`: leave it to the OS (a power loss may lose recent data, a process crash not).
    pub fsync: FsyncMode,
    /// The period of `fsync: interval`.
    pub fsync_interval: Duration,
    /// Disk bound of one pipeline's queue; when reached, the receiver answers 429.
    pub max_size: ByteSize,
    /// Size of one segment file; a segment is deleted once every entry in it is delivered.
    pub segment_size: ByteSize,
    /// How often the delivery cursor is saved: longer means fewer writes and more replay
    /// after a crash (never loss).
    pub cursor_interval: Duration,
    /// What happens to an entry that cannot be delivered (a poison entry): it must never
    /// hold the queue back for good.
    pub quarantine: QuarantineConfig,
}

/// Poison entries: retried with backoff, then moved to `<queue_dir>/quarantine/<pipeline>/`
/// so the cursor moves on (`tracecast dead-letters list` shows them, `resend` re-queues them).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// Deliveries tried before an entry is quarantined (an undecodable entry is quarantined
    /// at once: decoding again cannot help). At least 1.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failure (at most 5 minutes), so a
    /// temporary failure (disk full, a backend and its dead-letter folder both down) is
    /// retried rather than quarantined at once.
    pub retry_backoff: Duration,
    /// Bound of one pipeline's quarantine folder; past it the oldest entries are removed
    /// (logged, counted). `0`: a quarter of `service.queue.max_size`.
    pub max_size: ByteSize,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            retry_backoff: Duration::from_secs(1),
            max_size: ByteSize(0),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            fsync: FsyncMode::Always,
            fsync_interval: Duration::from_millis(200),
            max_size: ByteSize(1024 * 1024 * 1024),
            segment_size: ByteSize::mib(64),
            cursor_interval: Duration::from_millis(100),
            quarantine: QuarantineConfig::default(),
        }
    }
}

/// When the queue forces data to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    #[default]
    Always,
    Interval,
    Never,
}

/// Where the admin endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address (`ip:port`, parsed here so `tracecast validate` rejects a bad one);
    /// written as `""` it is `None`, which disables the endpoint.
    #[serde(deserialize_with = "admin_endpoint")]
    pub endpoint: Option<SocketAddr>,
    /// How often every destination's connection test is re-run while tracecast runs, so
    /// `/readyz` turns red when a destination becomes unreachable (and green when it is back).
    pub recheck_interval: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 13133))),
            recheck_interval: Duration::from_secs(30),
        }
    }
}

/// `service.admin.endpoint`: an IP address and port (the admin server binds it without a
/// name lookup), or `""` for none.
fn admin_endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP address and port; expected ip:port, like 127.0.0.1:13133 \
             or 0.0.0.0:13133, or \"\" to disable the admin endpoint"
        ))
    })
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            pipelines: BTreeMap::new(),
            telemetry: TelemetryConfig::default(),
            shutdown_timeout: Duration::from_secs(30),
            admin: AdminConfig::default(),
            queue_dir: PathBuf::from("./tracecast-data/queue"),
            queue: QueueConfig::default(),
            memory_limit: ByteSize(0),
        }
    }
}

/// One pipeline: receivers feed the processors in order, whose output goes to every
/// exporter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Receivers feeding this pipeline (at least one).
    #[serde(deserialize_with = "ids")]
    pub receivers: Vec<ComponentId>,
    /// Processors, applied in this order (may be empty).
    #[serde(deserialize_with = "ids")]
    pub processors: Vec<ComponentId>,
    /// Exporters receiving every batch the processors let through (at least one).
    #[serde(deserialize_with = "ids")]
    pub exporters: Vec<ComponentId>,
}

/// Reads a list of `type[/name]` ids (core's `ComponentId` has no serde support).
fn ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ComponentId>, D::Error> {
    let raw = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
    raw.iter()
        .map(|s| ComponentId::parse(s).map_err(serde::de::Error::custom))
        .collect()
}

/// tracecast's own telemetry.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Log output settings.
    pub logs: LogsConfig,
    /// Export tracecast's own metrics over OTLP/HTTP (off when absent). They go straight to
    /// this endpoint, never through tracecast's own pipelines, so there is no feedback loop.
    pub otlp: Option<SelfTelemetryOtlpConfig>,
}

/// Where tracecast sends its own metrics and (sampled) export spans.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfTelemetryOtlpConfig {
    /// OTLP/HTTP (protobuf) endpoint: a base URL like `http://collector:4318` (tracecast
    /// appends `/v1/metrics` and `/v1/traces`) or the full metrics URL.
    pub endpoint: String,
    /// How often the metrics are exported.
    pub interval: Duration,
    /// Share of export operations (one HTTP export, one S3 upload) traced as a span, from
    /// 0 (none) to 1 (all); sampled so tracing tracecast never costs much.
    pub traces_sampling_ratio: f64,
}

impl Default for SelfTelemetryOtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            interval: Duration::from_secs(30),
            traces_sampling_ratio: 0.01,
        }
    }
}

/// Log output; `RUST_LOG`, when set, overrides `level`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// A `tracing` filter: `info`, `debug`, or directives like `info,tracecast=debug`.
    pub level: String,
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
