//! The status page's data: what a person setting tracecast up wants to see without reading
//! logs. [`StatusState::collect`] gathers it from the running process; the admin endpoint
//! serves it as HTML (`/status`, `html.rs`) and as JSON (`/status.json`, this module's
//! types, serialized as they are).
//!
//! Where each part comes from:
//! - pipelines and their components: the running config;
//! - each destination's state: [`Readiness`] (the last connection test, or the periodic
//!   check's judgement by traffic), with its time;
//! - counts: the same metric families `/metrics` encodes (so both agree at any moment);
//!   spans/s over the last minute: a small ring of counter samples (`rates.rs`);
//! - dead letters and quarantine: the folders themselves (file count, newest reason);
//! - queues: each pipeline's [`tracecast_queue::DurableQueue`] (depth, bytes, bound, age of
//!   the oldest undelivered entry);
//! - recent trace files, exports and failed attempts: [`tracecast_core::activity`].
//!
//! Nothing here reads a header value, token, key or secret: destinations are shown by id and
//! type, receivers by their bound address.
//!
//! - `html.rs`: the page; `rates.rs`: spans/s; `test_trace.rs`: the test trace (built, sent,
//!   followed), shared by the page's button and `tracecast send-test-trace`.

pub mod html;
pub mod rates;
pub mod test_trace;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracecast_core::activity::{self, Outcome};
use tracecast_core::metrics::{self as core_metrics, ComponentLabels, PipelineLabels};
use tracecast_core::ComponentId;
use tracecast_runtime::metrics as runtime_metrics;

use crate::health::Readiness;
use crate::pipeline::{quarantine, used_exporters};
use crate::ValidatedConfig;

/// Recent records shown on the page per list (the JSON has every exporter's whole ring).
pub const PAGE_ROWS: usize = 20;

/// Everything the status page shows. Field names are the `/status.json` format.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    /// When this was collected (unix milliseconds).
    pub now_unix_ms: u64,
    pub uptime_seconds: u64,
    /// What `/readyz` says.
    pub ready: bool,
    pub receivers: Vec<ReceiverStatus>,
    pub pipelines: Vec<PipelineStatus>,
    pub destinations: Vec<DestinationStatus>,
    pub queues: Vec<QueueStatus>,
    /// Trace files written (S3), newest first.
    pub recent_files: Vec<FileRecord>,
    /// Batches accepted by OTLP backends, newest first.
    pub recent_exports: Vec<ExportRecord>,
    /// Failed attempts of any exporter, newest first.
    pub recent_failures: Vec<FailureRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiverStatus {
    pub id: String,
    pub type_name: String,
    /// Where it listens (`ip:port`), once started.
    pub address: Option<String>,
    /// The OTLP/HTTP path (`/v1/traces`), for OTLP receivers.
    pub path: Option<String>,
    /// Spans it accepted since the start (`tracecast_receiver_accepted_spans_total`).
    pub spans_accepted: u64,
    pub spans_per_second: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineStatus {
    pub name: String,
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationStatus {
    pub id: String,
    pub type_name: String,
    /// Pipelines that feed it.
    pub pipelines: Vec<String>,
    /// `up`, `down`, or `untested` (started with `--skip-connection-test`, before the first
    /// periodic check).
    pub state: String,
    /// Why it is down, in plain words.
    pub reason: Option<String>,
    /// When that was judged (unix milliseconds).
    pub checked_unix_ms: Option<u64>,
    /// Spans/s over the last minute received by the receivers feeding it.
    pub spans_in_per_second: f64,
    /// Spans/s over the last minute it delivered.
    pub spans_out_per_second: f64,
    /// `tracecast_exporter_sent_spans_total`.
    pub spans_sent: u64,
    /// `tracecast_exporter_retries_total`.
    pub retries: u64,
    /// `tracecast_dead_letters_total` (since the start).
    pub dead_letters: u64,
    /// Files in its dead-letter folder now.
    pub dead_letter_files: u64,
    pub newest_dead_letter_reason: Option<String>,
    /// Why the folder could not be read, if it could not.
    pub dead_letter_folder_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueStatus {
    pub pipeline: String,
    /// Entries not yet delivered.
    pub entries: u64,
    /// Bytes of segment files on disk.
    pub bytes: u64,
    /// `service.queue.max_size`.
    pub max_bytes: u64,
    /// Age of the oldest undelivered entry.
    pub oldest_entry_age_seconds: Option<f64>,
    /// `tracecast_queue_quarantined_total` (since the start).
    pub quarantined: u64,
    /// Entries in its quarantine folder now.
    pub quarantine_files: u64,
    pub newest_quarantine_reason: Option<String>,
    /// `tracecast_queue_delivery_retries_total`.
    pub delivery_retries: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    pub exporter: String,
    pub key: String,
    pub bytes: u64,
    pub spans: usize,
    pub trace_id: String,
    pub unix_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRecord {
    pub exporter: String,
    /// HTTP status the backend answered.
    pub status: u16,
    pub spans: usize,
    /// Whether `trace_ids` holds every trace of the batch (it lists at most 64).
    pub all_trace_ids_listed: bool,
    pub trace_ids: Vec<String>,
    pub latency_ms: f64,
    pub unix_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    pub exporter: String,
    pub reason: String,
    /// The exporter gave up (kept it in its dead-letter folder); otherwise it retries.
    pub gave_up: bool,
    /// The object key it was meant for (S3).
    pub key: Option<String>,
    pub spans: usize,
    pub trace_ids: Vec<String>,
    pub unix_ms: u64,
}

/// What the admin endpoint shares with the rest of the process.
pub struct StatusState {
    pub readiness: Arc<Readiness>,
    config: watch::Receiver<Arc<ValidatedConfig>>,
    /// Bound addresses of the running receivers (set after start and each reload).
    receivers: Mutex<BTreeMap<ComponentId, SocketAddr>>,
    pub rates: rates::Rates,
    started: SystemTime,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn counter(family: &Family<ComponentLabels, Counter>, id: &str) -> u64 {
    family
        .get(&core_metrics::component(id))
        .map_or(0, |c| c.get())
}

fn pipeline_counter(family: &Family<PipelineLabels, Counter>, name: &str) -> u64 {
    family
        .get(&core_metrics::pipeline(name))
        .map_or(0, |c| c.get())
}

/// A kept-files folder at a glance: how many, and the newest one's reason.
#[derive(Debug, Default, PartialEq, Eq)]
struct Folder {
    files: u64,
    newest_reason: Option<String>,
    error: Option<String>,
}

/// Counts the kept files of a dead-letter or quarantine folder (names ending in
/// `keep_suffix`, or any name but reason files when empty) and reads the newest one's reason
/// file: `pick` orders names so the greatest is the newest. Reads one reason file, so it
/// stays cheap however full the folder is. Blocking.
fn scan_folder(dir: &Path, keep_suffix: &str, pick: fn(&str) -> (u128, String)) -> Folder {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Folder::default(),
        Err(e) => {
            return Folder {
                error: Some(format!("cannot read {}: {e}", dir.display())),
                ..Folder::default()
            }
        }
    };
    let mut files = 0u64;
    let mut newest: Option<((u128, String), PathBuf)> = None;
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".reason.txt") || name.ends_with(".tmp") || !name.ends_with(keep_suffix) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        files += 1;
        let order = pick(&name);
        if newest.as_ref().is_none_or(|(o, _)| order > *o) {
            newest = Some((order, entry.path()));
        }
    }
    let newest_reason = newest.map(|(_, path)| {
        let text = std::fs::read_to_string(tracecast_core::dead_letter::reason_path(&path))
            .unwrap_or_default();
        one_line_reason(&text)
    });
    Folder {
        files,
        newest_reason,
        error: None,
    }
}

/// The reason of a `.reason.txt` (dead letter: `outcome: error`; quarantine: `reason`).
fn one_line_reason(text: &str) -> String {
    use tracecast_core::dead_letter::field;
    let reason = match (
        field(text, "reason"),
        field(text, "outcome"),
        field(text, "error"),
    ) {
        (Some(r), _, _) => r.to_string(),
        (None, Some(o), Some(e)) => format!("{o}: {e}"),
        (None, Some(o), None) => o.to_string(),
        (None, None, Some(e)) => e.to_string(),
        (None, None, None) => "(no reason file)".to_string(),
    };
    shorten(&reason, 400)
}

fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Dead letters are named `<unix_nanos>-<n>...`.
fn dead_letter_order(name: &str) -> (u128, String) {
    let nanos = name
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (nanos, name.to_string())
}

/// Quarantined entries are named `<seq, 20 digits>-<hash>.entry`: the name orders them.
fn quarantine_order(name: &str) -> (u128, String) {
    (0, name.to_string())
}

impl StatusState {
    pub fn new(readiness: Arc<Readiness>, config: watch::Receiver<Arc<ValidatedConfig>>) -> Self {
        Self {
            readiness,
            config,
            receivers: Mutex::new(BTreeMap::new()),
            rates: rates::Rates::default(),
            started: SystemTime::now(),
        }
    }

    /// The running config.
    pub fn config(&self) -> Arc<ValidatedConfig> {
        self.config.borrow().clone()
    }

    /// Records where the running receivers listen (after start and each reload).
    pub fn set_receivers(&self, bound: BTreeMap<ComponentId, SocketAddr>) {
        *self.receivers.lock().unwrap_or_else(|p| p.into_inner()) = bound;
    }

    /// Where receiver `id` listens, once started.
    pub fn receiver_addr(&self, id: &ComponentId) -> Option<SocketAddr> {
        self.receivers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// Gathers the status now (reads the folders on the blocking pool).
    pub async fn collect(&self) -> Status {
        let config = self.config();
        let now = SystemTime::now();
        let rates = self.rates.per_second_now(&config);
        let rate = |id: &str| rates.get(id).copied().unwrap_or(0.0);
        let pipelines_cfg = &config.raw.service.pipelines;

        let receivers = config
            .receivers
            .iter()
            .map(|(id, cfg)| ReceiverStatus {
                id: id.to_string(),
                type_name: cfg.type_name().to_string(),
                address: self.receiver_addr(id).map(|a| a.to_string()),
                path: cfg
                    .get::<tracecast_receiver_otlp::OtlpReceiverConfig>()
                    .and_then(|r| {
                        let mut listeners = r.listeners().into_iter();
                        listeners.find(|l| l.protocol == tracecast_receiver_otlp::Protocol::Http)
                    })
                    .map(|l| l.path),
                spans_accepted: counter(&core_metrics::SPANS_RECEIVED, id.as_str()),
                spans_per_second: rate(&rates::received_key(id.as_str())),
            })
            .collect();

        let pipelines = pipelines_cfg
            .iter()
            .map(|(name, p)| PipelineStatus {
                name: name.clone(),
                receivers: p.receivers.iter().map(|i| i.to_string()).collect(),
                processors: p.processors.iter().map(|i| i.to_string()).collect(),
                exporters: p.exporters.iter().map(|i| i.to_string()).collect(),
            })
            .collect();

        // Folder scans (dead letters, quarantine) on the blocking pool.
        let used = used_exporters(&config);
        let letter_dirs: Vec<(ComponentId, PathBuf)> = used
            .iter()
            .filter_map(|id| {
                config
                    .exporters
                    .get(id)
                    .map(|c| (id.clone(), c.dead_letter_dir(id)))
            })
            .collect();
        let queue_dir = config.raw.service.queue_dir.clone();
        let names: Vec<String> = pipelines_cfg.keys().cloned().collect();
        let (letters, quarantines) = tokio::task::spawn_blocking(move || {
            let letters: BTreeMap<ComponentId, Folder> = letter_dirs
                .into_iter()
                .map(|(id, dir)| (id, scan_folder(&dir, "", dead_letter_order)))
                .collect();
            let quarantines: BTreeMap<String, Folder> = names
                .into_iter()
                .map(|name| {
                    let dir = quarantine::dir_for(&queue_dir, &name);
                    let folder = scan_folder(&dir, quarantine::ENTRY_SUFFIX, quarantine_order);
                    (name, folder)
                })
                .collect();
            (letters, quarantines)
        })
        .await
        .unwrap_or_default();

        let judged = self.readiness.destination_states();
        let destinations = used
            .iter()
            .map(|id| {
                let feeding: Vec<&String> = pipelines_cfg
                    .iter()
                    .filter(|(_, p)| p.exporters.contains(id))
                    .map(|(n, _)| n)
                    .collect();
                let mut sources: Vec<&ComponentId> = pipelines_cfg
                    .values()
                    .filter(|p| p.exporters.contains(id))
                    .flat_map(|p| &p.receivers)
                    .collect();
                sources.sort();
                sources.dedup();
                let spans_in = sources
                    .iter()
                    .map(|r| rate(&rates::received_key(r.as_str())))
                    .sum();
                let (state, reason, checked) = match judged.get(id) {
                    Some(j) => match &j.outcome {
                        Ok(()) => ("up", None, Some(unix_ms(j.at))),
                        Err(why) => ("down", Some(why.clone()), Some(unix_ms(j.at))),
                    },
                    None => ("untested", None, None),
                };
                let folder = letters.get(id);
                DestinationStatus {
                    id: id.to_string(),
                    type_name: config
                        .exporters
                        .get(id)
                        .map_or_else(|| id.type_name().to_string(), |c| c.type_name().to_string()),
                    pipelines: feeding.into_iter().cloned().collect(),
                    state: state.to_string(),
                    reason,
                    checked_unix_ms: checked,
                    spans_in_per_second: spans_in,
                    spans_out_per_second: rate(&rates::sent_key(id.as_str())),
                    spans_sent: counter(&core_metrics::SPANS_EXPORTED, id.as_str()),
                    retries: counter(&core_metrics::EXPORT_RETRIES, id.as_str()),
                    dead_letters: counter(&core_metrics::DEAD_LETTERS, id.as_str()),
                    dead_letter_files: folder.map_or(0, |f| f.files),
                    newest_dead_letter_reason: folder.and_then(|f| f.newest_reason.clone()),
                    dead_letter_folder_error: folder.and_then(|f| f.error.clone()),
                }
            })
            .collect();

        let open: BTreeMap<String, tracecast_queue::DurableQueue> =
            crate::queue_metrics::open_queues().into_iter().collect();
        let mut queues = Vec::new();
        for name in pipelines_cfg.keys() {
            let (entries, bytes, max_bytes, oldest) = match open.get(name) {
                Some(q) => {
                    let s = q.stats();
                    let oldest = q.oldest_pending_received_at().await.map(|t| {
                        now.duration_since(t)
                            .unwrap_or(Duration::ZERO)
                            .as_secs_f64()
                    });
                    (s.entries_pending, s.bytes_on_disk, s.max_bytes, oldest)
                }
                None => (0, 0, config.raw.service.queue.max_size.get(), None),
            };
            let folder = quarantines.get(name);
            queues.push(QueueStatus {
                pipeline: name.clone(),
                entries,
                bytes,
                max_bytes,
                oldest_entry_age_seconds: oldest,
                quarantined: pipeline_counter(&runtime_metrics::QUARANTINED, name),
                quarantine_files: folder.map_or(0, |f| f.files),
                newest_quarantine_reason: folder.and_then(|f| f.newest_reason.clone()),
                delivery_retries: pipeline_counter(&runtime_metrics::DELIVERY_RETRIES, name),
            });
        }

        let (mut recent_files, mut recent_exports, mut recent_failures) =
            (Vec::new(), Vec::new(), Vec::new());
        let shown: Vec<String> = used.iter().map(|i| i.to_string()).collect();
        for (exporter, recent) in activity::recent() {
            if !shown.contains(&exporter) {
                continue;
            }
            for a in recent
                .files
                .iter()
                .chain(&recent.exports)
                .chain(&recent.failures)
            {
                let (spans, at) = (a.spans, unix_ms(a.at));
                match &a.outcome {
                    Outcome::FileWritten { key, bytes } => recent_files.push(FileRecord {
                        exporter: exporter.clone(),
                        key: key.clone(),
                        bytes: *bytes,
                        spans,
                        trace_id: a.trace_ids.first().cloned().unwrap_or_default(),
                        unix_ms: at,
                    }),
                    Outcome::Exported { status, latency } => recent_exports.push(ExportRecord {
                        exporter: exporter.clone(),
                        status: *status,
                        spans,
                        all_trace_ids_listed: a.all_listed,
                        trace_ids: a.trace_ids.clone(),
                        latency_ms: latency.as_secs_f64() * 1000.0,
                        unix_ms: at,
                    }),
                    Outcome::Failed {
                        reason,
                        final_,
                        key,
                    } => recent_failures.push(FailureRecord {
                        exporter: exporter.clone(),
                        reason: shorten(reason, 400),
                        gave_up: *final_,
                        key: key.clone(),
                        spans,
                        trace_ids: a.trace_ids.clone(),
                        unix_ms: at,
                    }),
                }
            }
        }
        recent_files.sort_by_key(|r| std::cmp::Reverse(r.unix_ms));
        recent_exports.sort_by_key(|r| std::cmp::Reverse(r.unix_ms));
        recent_failures.sort_by_key(|r| std::cmp::Reverse(r.unix_ms));

        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            now_unix_ms: unix_ms(now),
            uptime_seconds: now
                .duration_since(self.started)
                .unwrap_or(Duration::ZERO)
                .as_secs(),
            ready: self.readiness.is_ready(),
            receivers,
            pipelines,
            destinations,
            queues,
            recent_files,
            recent_exports,
            recent_failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_scan_counts_kept_files_and_reads_the_newest_reason() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(
            scan_folder(&d.join("missing"), "", dead_letter_order),
            Folder::default()
        );
        for (name, reason) in [
            (
                "100-1-a.json",
                "outcome: retries exhausted\nerror: HTTP 503\n",
            ),
            (
                "300-2-b.json",
                "outcome: rejected\nerror: HTTP 400 bad span\n",
            ),
            ("200-3-c.json", "outcome: rejected\nerror: older\n"),
        ] {
            std::fs::write(d.join(name), b"{}").unwrap();
            std::fs::write(d.join(format!("{name}.reason.txt")), reason).unwrap();
        }
        std::fs::write(d.join("400-4-d.json.tmp"), b"half").unwrap();
        let f = scan_folder(d, "", dead_letter_order);
        assert_eq!(f.files, 3);
        assert_eq!(
            f.newest_reason.as_deref(),
            Some("rejected: HTTP 400 bad span")
        );
    }

    #[test]
    fn quarantine_reasons_and_long_reasons_are_one_bounded_line() {
        assert_eq!(
            one_line_reason("pipeline: p\nseq: 4\nreason: processor x panicked\n"),
            "processor x panicked"
        );
        assert_eq!(one_line_reason(""), "(no reason file)");
        let long = format!("reason: {}", "é".repeat(500));
        assert!(one_line_reason(&long).len() <= 404);
    }
}
