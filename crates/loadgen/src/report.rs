//! The run's report: a human table, or one JSON object (`--json`) for scripts.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::generate::RunResult;
use crate::sink::SinkStats;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
}

/// What the sink received during the run (after draining).
#[derive(Debug, Clone, Serialize)]
pub struct SinkDelta {
    pub requests: u64,
    pub spans: u64,
    /// Accepted by the target but not (yet) at the sink; negative if the sink got more.
    pub lost_spans: i64,
    pub bytes: u64,
    pub decoded_bytes: u64,
    pub bytes_per_span: Option<f64>,
    pub bad_requests: u64,
}

impl SinkDelta {
    /// The difference between two snapshots, against the spans the target accepted.
    pub fn between(before: SinkStats, after: SinkStats, accepted_spans: u64) -> Self {
        let spans = after.spans.saturating_sub(before.spans);
        let bytes = after.bytes.saturating_sub(before.bytes);
        Self {
            requests: after.requests.saturating_sub(before.requests),
            spans,
            lost_spans: accepted_spans as i64 - spans as i64,
            bytes,
            decoded_bytes: after.decoded_bytes.saturating_sub(before.decoded_bytes),
            bytes_per_span: (spans > 0).then(|| bytes as f64 / spans as f64),
            bad_requests: after.bad_requests.saturating_sub(before.bad_requests),
        }
    }
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub encoding: String,
    pub gzip: bool,
    pub spans_per_request: usize,
    /// Size of one request body on the wire.
    pub body_bytes: usize,
    pub connections: usize,
    /// Asked rate in spans/s; `None` = as fast as possible.
    pub rate: Option<f64>,
    pub elapsed_s: f64,
    pub requests: u64,
    pub accepted_requests: u64,
    pub accepted_spans: u64,
    pub accepted_spans_per_s: f64,
    pub sent_mib_per_s: f64,
    pub latency_ms: Latency,
    /// Non-2xx answers by status code.
    pub refused: BTreeMap<u16, u64>,
    pub transport_errors: BTreeMap<String, u64>,
    pub sink: Option<SinkDelta>,
    /// CPU seconds the generator itself used (to see whether it, not the target, limited
    /// the run); Linux only.
    pub generator_cpu_s: Option<f64>,
}

/// CPU seconds (user + system) used by this process so far, from `/proc/self/stat`.
pub fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every mainstream Linux configuration.
    Some((utime + stime) / 100.0)
}

/// Fixed facts of the run, for the report.
pub struct RunInfo {
    pub target: String,
    pub encoding: String,
    pub gzip: bool,
    pub spans_per_request: usize,
    pub body_bytes: usize,
    pub connections: usize,
    pub rate: Option<f64>,
}

impl Report {
    pub fn new(info: RunInfo, result: &RunResult, sink: Option<SinkDelta>) -> Self {
        let secs = result.elapsed.as_secs_f64().max(1e-9);
        Self {
            target: info.target,
            encoding: info.encoding,
            gzip: info.gzip,
            spans_per_request: info.spans_per_request,
            body_bytes: info.body_bytes,
            connections: info.connections,
            rate: info.rate,
            elapsed_s: result.elapsed.as_secs_f64(),
            requests: result.requests,
            accepted_requests: result.accepted_requests,
            accepted_spans: result.accepted_spans,
            accepted_spans_per_s: result.accepted_spans as f64 / secs,
            sent_mib_per_s: result.bytes_sent as f64 / secs / (1024.0 * 1024.0),
            latency_ms: Latency {
                p50: result.latency_ms(0.5),
                p90: result.latency_ms(0.9),
                p99: result.latency_ms(0.99),
                p999: result.latency_ms(0.999),
                max: result.latency_ms(1.0),
            },
            refused: result
                .statuses
                .iter()
                .filter(|(code, _)| !(200..300).contains(*code))
                .map(|(k, v)| (*k, *v))
                .collect(),
            transport_errors: result.transport_errors.clone(),
            sink,
            generator_cpu_s: own_cpu_seconds(),
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
        let rate = self.rate.map_or("as fast as possible".to_string(), |r| {
            format!("{r:.0} spans/s")
        });
        let mut s = String::new();
        let _ = writeln!(s, "target            {}", self.target);
        let _ = writeln!(
            s,
            "payload           {} {}, {} spans/request, {} bytes/request",
            self.encoding,
            if self.gzip { "gzip" } else { "uncompressed" },
            self.spans_per_request,
            self.body_bytes
        );
        let _ = writeln!(
            s,
            "load              {rate}, {} connection(s)",
            self.connections
        );
        let _ = writeln!(
            s,
            "duration          {:.2} s, {} requests",
            self.elapsed_s, self.requests
        );
        let _ = writeln!(
            s,
            "accepted          {} spans ({:.0} spans/s, {:.1} MiB/s sent)",
            self.accepted_spans, self.accepted_spans_per_s, self.sent_mib_per_s
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "latency           p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        );
        if self.refused.is_empty() {
            let _ = writeln!(s, "refused           none");
        }
        for (code, n) in &self.refused {
            let _ = writeln!(s, "refused           HTTP {code}: {n}");
        }
        for (kind, n) in &self.transport_errors {
            let _ = writeln!(s, "transport error   {kind}: {n}");
        }
        if let Some(cpu) = self.generator_cpu_s {
            let _ = writeln!(
                s,
                "generator CPU     {cpu:.2} s ({:.0}% of one core)",
                cpu / self.elapsed_s.max(1e-9) * 100.0
            );
        }
        if let Some(k) = &self.sink {
            let _ = writeln!(
                s,
                "sink received     {} spans in {} requests, {} bytes ({} bytes/span), lost {}",
                k.spans,
                k.requests,
                k.bytes,
                k.bytes_per_span.map_or("-".into(), |b| format!("{b:.1}")),
                k.lost_spans
            );
            if k.bad_requests > 0 {
                let _ = writeln!(s, "sink bad requests {}", k.bad_requests);
            }
        }
        s
    }
}
