//! Recent activity of each exporter: the last trace files written, the last OTLP exports and
//! the last failed attempts, for the admin endpoint's status page and `tracecast
//! send-test-trace` ("where did my trace go?").
//!
//! Why a ring and not metrics: counters say how many, not which object key or which answer.
//! Each exporter keeps its last [`RECENT`] records of each kind in a process-wide map; an
//! exporter records at the point an upload or export finished (or an attempt failed), which
//! is at most once per HTTP request, so one short mutex lock per record costs nothing next
//! to the request. Readers copy the rings out ([`recent`]).
//!
//! Records name traces by their ids (hex, at most [`MAX_TRACE_IDS`] per record), never by
//! content, and hold no header, token or key: a failure reason is the exporter's own
//! plain-words message, the same one it logs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::{ExportTraceServiceRequest, TraceBatch};

/// Records kept per exporter and kind (files, exports, failures).
pub const RECENT: usize = 20;

/// Trace ids kept per record: enough for a test trace in a quiet moment; a record of a large
/// batch lists the first ones and says how many there were.
pub const MAX_TRACE_IDS: usize = 64;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An object was created (S3): its key relative to the bucket's base folder and size.
    FileWritten { key: String, bytes: u64 },
    /// A batch was accepted by an OTLP backend: the HTTP status of the exporter's latest
    /// successful answer, and how long the export took (retries included).
    Exported { status: u16, latency: Duration },
    /// An attempt failed. `final_`: given up (kept in the dead-letter folder); otherwise the
    /// exporter retries. `key`: the object key it was meant for (S3).
    Failed {
        reason: String,
        final_: bool,
        key: Option<String>,
    },
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub at: SystemTime,
    pub spans: usize,
    /// Distinct trace ids (lowercase hex, or the custom id an S3 file is named after), at
    /// most [`MAX_TRACE_IDS`].
    pub trace_ids: Vec<String>,
    /// Every trace of the batch is in `trace_ids` (false: it had more than
    /// [`MAX_TRACE_IDS`]).
    pub all_listed: bool,
    pub outcome: Outcome,
}

impl Activity {
    /// Whether the record is about trace `id` (listed, or named in its object key).
    pub fn concerns(&self, id: &str) -> bool {
        self.trace_ids.iter().any(|t| t.eq_ignore_ascii_case(id))
            || matches!(&self.outcome,
                Outcome::FileWritten { key, .. } | Outcome::Failed { key: Some(key), .. }
                    if key.contains(id))
    }
}

/// One exporter's rings.
#[derive(Debug, Default, Clone)]
pub struct Recent {
    pub files: VecDeque<Activity>,
    pub exports: VecDeque<Activity>,
    pub failures: VecDeque<Activity>,
    /// HTTP status of the latest successful answer (OTLP), see [`note_status`].
    last_status: Option<u16>,
}

static RECENT_BY_EXPORTER: LazyLock<Mutex<BTreeMap<String, Recent>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

fn lock() -> MutexGuard<'static, BTreeMap<String, Recent>> {
    RECENT_BY_EXPORTER.lock().unwrap_or_else(|p| p.into_inner())
}

fn push(ring: &mut VecDeque<Activity>, a: Activity) {
    if ring.len() == RECENT {
        ring.pop_front();
    }
    ring.push_back(a);
}

/// Distinct trace ids of `request` in order of appearance, at most [`MAX_TRACE_IDS`], and
/// whether those are all. Spans of one trace usually follow each other, so a span with the
/// previous span's trace id costs one comparison; the scan stops at the first id past the
/// limit.
pub fn trace_ids(request: &ExportTraceServiceRequest) -> (Vec<String>, bool) {
    let mut distinct = std::collections::HashSet::new();
    let mut listed = Vec::new();
    let mut previous: Option<&[u8]> = None;
    for span in request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        let id = span.trace_id.as_slice();
        if previous == Some(id) {
            continue;
        }
        previous = Some(id);
        if distinct.insert(id) {
            if listed.len() == MAX_TRACE_IDS {
                return (listed, false);
            }
            listed.push(hex::encode(id));
        }
    }
    (listed, true)
}

/// S3: object `key` (of `bytes`, holding `spans` spans of trace `trace_id`) was created.
pub fn file_written(exporter: &str, key: &str, bytes: usize, spans: usize, trace_id: &str) {
    let a = Activity {
        at: SystemTime::now(),
        spans,
        trace_ids: vec![trace_id.to_string()],
        all_listed: true,
        outcome: Outcome::FileWritten {
            key: key.to_string(),
            bytes: bytes as u64,
        },
    };
    push(
        &mut lock().entry(exporter.to_string()).or_default().files,
        a,
    );
}

/// OTLP: the backend answered `status` (called for every successful answer; the next
/// [`exported`] of this exporter reports it).
pub fn note_status(exporter: &str, status: u16) {
    let mut map = lock();
    map.entry(exporter.to_string()).or_default().last_status = Some(status);
}

/// OTLP: `batch` was delivered after `latency` (retries included).
pub fn exported(exporter: &str, batch: &TraceBatch, latency: Duration) {
    let (ids, all_listed) = trace_ids(batch.request());
    let mut map = lock();
    let recent = map.entry(exporter.to_string()).or_default();
    let a = Activity {
        at: SystemTime::now(),
        spans: batch.span_count(),
        trace_ids: ids,
        all_listed,
        outcome: Outcome::Exported {
            status: recent.last_status.unwrap_or(200),
            latency,
        },
    };
    push(&mut recent.exports, a);
}

/// OTLP: an attempt to deliver `batch` failed with `reason`; `final_` when the exporter
/// gave up on it.
pub fn batch_failed(exporter: &str, batch: &TraceBatch, reason: &str, final_: bool) {
    let (ids, all_listed) = trace_ids(batch.request());
    failed(
        exporter,
        Activity {
            at: SystemTime::now(),
            spans: batch.span_count(),
            trace_ids: ids,
            all_listed,
            outcome: Outcome::Failed {
                reason: reason.to_string(),
                final_,
                key: None,
            },
        },
    );
}

/// S3: writing object `key` failed with `reason`; `final_` when the exporter gave up on it.
/// `trace_id` when known (the key names the trace anyway).
pub fn key_failed(exporter: &str, key: &str, trace_id: Option<&str>, reason: &str, final_: bool) {
    failed(
        exporter,
        Activity {
            at: SystemTime::now(),
            spans: 0,
            trace_ids: trace_id.map(str::to_string).into_iter().collect(),
            all_listed: true,
            outcome: Outcome::Failed {
                reason: reason.to_string(),
                final_,
                key: Some(key.to_string()),
            },
        },
    );
}

fn failed(exporter: &str, a: Activity) {
    push(
        &mut lock().entry(exporter.to_string()).or_default().failures,
        a,
    );
}

/// A copy of every exporter's rings, oldest record first in each.
pub fn recent() -> BTreeMap<String, Recent> {
    lock().clone()
}

/// Forgets exporter `id` (removed by a reload), so the page does not list it.
pub fn forget(exporter: &str) {
    lock().remove(exporter);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use crate::BatchContext;

    fn batch(ids: &[u8]) -> TraceBatch {
        let spans = ids
            .iter()
            .map(|i| Span {
                trace_id: vec![*i; 16],
                span_id: vec![1; 8],
                ..Default::default()
            })
            .collect();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        TraceBatch::new(BatchContext::new("otlp"), request, None)
    }

    #[test]
    fn rings_are_bounded_and_keep_the_newest() {
        for i in 0..(RECENT + 5) {
            file_written(
                "s3/activity_ring",
                &format!("p/{i}.json"),
                10,
                1,
                &format!("{i}"),
            );
        }
        let r = recent().remove("s3/activity_ring").unwrap();
        assert_eq!(r.files.len(), RECENT);
        assert!(r.files.back().unwrap().concerns("24"));
        assert!(r.files.front().unwrap().concerns("5"));
        forget("s3/activity_ring");
        assert!(!recent().contains_key("s3/activity_ring"));
    }

    #[test]
    fn exports_carry_trace_ids_and_the_last_status() {
        note_status("otlp/activity_status", 202);
        exported(
            "otlp/activity_status",
            &batch(&[7, 7, 8]),
            Duration::from_millis(5),
        );
        batch_failed(
            "otlp/activity_status",
            &batch(&[9]),
            "connection refused",
            false,
        );
        let r = recent().remove("otlp/activity_status").unwrap();
        let e = r.exports.back().unwrap();
        assert_eq!(e.spans, 3);
        assert!(e.all_listed);
        assert_eq!(e.trace_ids.len(), 2);
        assert!(e.concerns(&hex::encode([7u8; 16])));
        assert!(!e.concerns(&hex::encode([9u8; 16])));
        assert!(matches!(e.outcome, Outcome::Exported { status: 202, .. }));
        let f = r.failures.back().unwrap();
        assert!(f.concerns(&hex::encode([9u8; 16])));
    }

    #[test]
    fn a_huge_batch_lists_a_bounded_number_of_ids() {
        let ids: Vec<u8> = (0..=255).collect();
        let (listed, all) = trace_ids(batch(&ids).request());
        assert_eq!(listed.len(), MAX_TRACE_IDS);
        assert!(!all);
        // Repeated and interleaved ids are listed once, in order of appearance.
        let (listed, all) = trace_ids(batch(&[3, 3, 4, 3, 4, 5]).request());
        assert_eq!(listed, [[3u8; 16], [4; 16], [5; 16]].map(hex::encode));
        assert!(all);
    }

    #[test]
    fn a_failed_key_names_its_trace() {
        key_failed(
            "s3/activity_key",
            "p/abc123-17.json",
            None,
            "access denied",
            true,
        );
        let r = recent().remove("s3/activity_key").unwrap();
        assert!(r.failures[0].concerns("abc123"));
    }
}
