//! tracecast's own metrics over OTLP/HTTP (`service.telemetry.otlp`).
//!
//! The numbers already live in the prometheus-client families behind `/metrics`; rather
//! than count twice, every family becomes an OpenTelemetry observable instrument whose
//! callback reads the same registry. The SDK's periodic reader (its own thread) collects
//! them every `interval` and the OTLP exporter posts them straight to the configured
//! endpoint. The exporter uses reqwest's blocking client (opentelemetry-otlp's
//! `reqwest-blocking-client` feature, root Cargo.toml) because the periodic reader and the
//! batch span processor export from their own OS threads, where no Tokio runtime runs for
//! the async client. Nothing here touches tracecast's pipelines, so its own telemetry can
//! never feed back into the data it carries.
//!
//! Spans: with `traces_sampling_ratio` above 0, a tracer provider (ratio sampler, batch
//! span processor with the blocking client) is installed as the global one, and the
//! exporters trace each export operation (`tracecast.export`, `tracecast.s3.upload`) through
//! `opentelemetry::global` (a no-op without it). They go to `<endpoint>/v1/traces`, again
//! never through a pipeline.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tracecast_config::SelfTelemetryOtlpConfig;
use tracecast_core::CancellationToken;

use crate::admin;

/// Self-telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum SelfTelemetryError {
    #[error("service.telemetry.otlp.endpoint {endpoint:?}: {reason}")]
    Exporter { endpoint: String, reason: String },
}

/// Running self-telemetry; [`SelfTelemetry::shutdown`] exports a last time.
pub struct SelfTelemetry {
    provider: SdkMeterProvider,
    tracer_provider: Option<SdkTracerProvider>,
    stop_discovery: CancellationToken,
    discovery: tokio::task::JoinHandle<()>,
}

/// Longest wait before a family that just got its first sample gets an instrument.
const DISCOVERY_TICK: Duration = Duration::from_secs(1);

/// Starts exporting every tracecast metric family to `config.endpoint`.
pub fn start(config: &SelfTelemetryOtlpConfig) -> Result<SelfTelemetry, SelfTelemetryError> {
    let endpoint = metrics_url(&config.endpoint);
    let exporter = MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| SelfTelemetryError::Exporter {
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
    let reader = PeriodicReader::builder(exporter)
        .with_interval(config.interval.get())
        .build();
    let resource = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "tracecast"),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource.clone())
        .build();
    let tracer_provider = if config.traces_sampling_ratio > 0.0 {
        let url = signal_url(&config.endpoint, "traces");
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .with_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SelfTelemetryError::Exporter {
                endpoint: url,
                reason: e.to_string(),
            })?;
        let tracer_provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::TraceIdRatioBased(config.traces_sampling_ratio))
            .with_resource(resource)
            .build();
        opentelemetry::global::set_tracer_provider(tracer_provider.clone());
        Some(tracer_provider)
    } else {
        None
    };
    // prometheus-client encodes a family only once it has a sample, so families are
    // discovered as they appear (the SDK takes new instruments at any time).
    let instruments = Instruments {
        meter: provider.meter("tracecast"),
        snapshot: Arc::new(Snapshot::new(admin::registry())),
        registered: HashSet::new(),
    };
    let stop_discovery = CancellationToken::new();
    let discovery = tokio::spawn(discover(
        instruments,
        config.interval.get().min(DISCOVERY_TICK),
        stop_discovery.clone(),
    ));
    tracing::info!(endpoint = %endpoint, interval = %config.interval, "exporting tracecast's own metrics over OTLP");
    Ok(SelfTelemetry {
        provider,
        tracer_provider,
        stop_discovery,
        discovery,
    })
}

async fn discover(mut instruments: Instruments, tick: Duration, stop: CancellationToken) {
    loop {
        instruments.register_new();
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    // Families that appeared since the last tick still make the final export.
    instruments.register_new();
}

impl SelfTelemetry {
    /// Exports a final time and stops the reader thread (blocking work, off the runtime).
    pub async fn shutdown(self) {
        self.stop_discovery.cancel();
        let _ = self.discovery.await;
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!("self-telemetry: final export failed: {e}");
        }
        if let Some(tracer_provider) = self.tracer_provider {
            let done = tokio::task::spawn_blocking(move || tracer_provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                tracing::warn!("self-telemetry: final span export failed: {e}");
            }
        }
    }
}

/// `http://host:4318` -> `http://host:4318/v1/metrics`; a URL with a path is kept as is.
/// The traces URL beside the metrics endpoint: `<base>/v1/traces` where `<base>` is the
/// endpoint without a trailing `/v1/metrics`, or its scheme and host when it has another path.
fn signal_url(endpoint: &str, signal: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if let Some(base) = trimmed.strip_suffix("/v1/metrics") {
        return format!("{base}/v1/{signal}");
    }
    let (scheme, rest) = trimmed.split_once("://").unwrap_or(("http", trimmed));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/v1/{signal}")
}

fn metrics_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    let after_scheme = trimmed.split_once("://").map_or(trimmed, |(_, rest)| rest);
    if after_scheme.contains('/') {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/metrics")
    }
}

/// One observable instrument per family found in the registry so far.
struct Instruments {
    meter: Meter,
    snapshot: Arc<Snapshot>,
    registered: HashSet<String>,
}

impl Instruments {
    fn register_new(&mut self) {
        for family in self.snapshot.families() {
            if self.registered.insert(family.name.clone()) {
                register(&self.meter, family, self.snapshot.clone());
            }
        }
    }
}

fn register(meter: &Meter, family: Family, snap: Arc<Snapshot>) {
    let name = family.name.clone();
    match family.kind {
        Kind::Counter => {
            meter
                .u64_observable_counter(family.name)
                .with_description(family.help)
                .with_callback(move |obs| {
                    for (attrs, v) in snap.samples(&name) {
                        obs.observe(v.max(0.0) as u64, &attrs);
                    }
                })
                .build();
        }
        Kind::Gauge => {
            meter
                .i64_observable_gauge(family.name)
                .with_description(family.help)
                .with_callback(move |obs| {
                    for (attrs, v) in snap.samples(&name) {
                        obs.observe(v as i64, &attrs);
                    }
                })
                .build();
        }
        // The OpenTelemetry API has no observable histogram (histograms are recorded
        // synchronously), so a histogram goes out as its `_count` and `_sum` counters:
        // enough for request rate and mean latency; the bucket series stay on `/metrics`.
        Kind::Histogram => {
            let count = format!("{name}_count");
            let count_snap = snap.clone();
            meter
                .u64_observable_counter(count.clone())
                .with_description(format!("{} (observations)", family.help))
                .with_callback(move |obs| {
                    for (attrs, v) in count_snap.samples(&count) {
                        obs.observe(v.max(0.0) as u64, &attrs);
                    }
                })
                .build();
            let sum = format!("{name}_sum");
            meter
                .f64_observable_counter(sum.clone())
                .with_description(format!("{} (sum of observed values)", family.help))
                .with_callback(move |obs| {
                    for (attrs, v) in snap.samples(&sum) {
                        obs.observe(v.max(0.0), &attrs);
                    }
                })
                .build();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone, PartialEq)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
}

type Samples = HashMap<String, Vec<(Vec<KeyValue>, f64)>>;

/// The registry's text encoding, parsed at most once per collection (each instrument's
/// callback asks for its own family within the same few milliseconds).
struct Snapshot {
    registry: Registry,
    cached: Mutex<Option<(Instant, Arc<Samples>)>>,
}

/// How long one parse serves callbacks: much shorter than any sensible export interval.
const SNAPSHOT_TTL: Duration = Duration::from_millis(500);

impl Snapshot {
    fn new(registry: Registry) -> Self {
        Self {
            registry,
            cached: Mutex::new(None),
        }
    }

    fn text(&self) -> String {
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &self.registry) {
            tracing::warn!("self-telemetry: encoding metrics failed: {e}");
        }
        text
    }

    fn families(&self) -> Vec<Family> {
        parse_families(&self.text())
    }

    fn samples(&self, family: &str) -> Vec<(Vec<KeyValue>, f64)> {
        let Ok(mut cached) = self.cached.lock() else {
            return Vec::new();
        };
        let fresh = match cached.as_ref() {
            Some((at, s)) if at.elapsed() < SNAPSHOT_TTL => s.clone(),
            _ => {
                let s = Arc::new(parse_samples(&self.text()));
                *cached = Some((Instant::now(), s.clone()));
                s
            }
        };
        fresh.get(family).cloned().unwrap_or_default()
    }
}

/// Families from `# TYPE` / `# HELP` lines: counters, gauges and histograms (tracecast has
/// no others; any other type would be skipped).
fn parse_families(text: &str) -> Vec<Family> {
    let mut help: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, h)) = rest.split_once(' ') {
                help.insert(name, h);
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let kind = match rest.split_once(' ') {
                Some((name, "counter")) => Some((name, Kind::Counter)),
                Some((name, "gauge")) => Some((name, Kind::Gauge)),
                Some((name, "histogram")) => Some((name, Kind::Histogram)),
                _ => None,
            };
            if let Some((name, kind)) = kind {
                out.push(Family {
                    name: name.to_string(),
                    help: help.get(name).copied().unwrap_or_default().to_string(),
                    kind,
                });
            }
        }
    }
    out
}

/// Samples by family name: `name_total{a="b"} 3` is filed under `name`.
fn parse_samples(text: &str) -> Samples {
    let mut out: Samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}').unwrap_or(rest))),
            None => (series, Vec::new()),
        };
        let family = name.strip_suffix("_total").unwrap_or(name);
        out.entry(family.to_string())
            .or_default()
            .push((labels, value));
    }
    out
}

/// `a="x",b="y\"z"` -> attributes (OpenMetrics escapes `\\`, `\"` and `\n`).
fn parse_labels(s: &str) -> Vec<KeyValue> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push(KeyValue::new(
            key.trim_start_matches(',').to_string(),
            value,
        ));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_sits_beside_the_metrics_url() {
        assert_eq!(
            signal_url("http://c:4318", "traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            signal_url("http://c:4318/v1/metrics", "traces"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            signal_url("https://c/custom/path", "traces"),
            "https://c/v1/traces"
        );
    }

    #[test]
    fn metrics_url_appends_the_signal_path_only_to_a_base_url() {
        assert_eq!(
            metrics_url("http://c:4318"),
            "http://c:4318/v1/metrics".to_string()
        );
        assert_eq!(metrics_url("http://c:4318/"), "http://c:4318/v1/metrics");
        assert_eq!(
            metrics_url("https://c/otlp/v1/metrics"),
            "https://c/otlp/v1/metrics"
        );
    }

    #[test]
    fn parses_families_and_labelled_samples() {
        let text = "# HELP tracecast_x Spans x\n# TYPE tracecast_x counter\n\
                    tracecast_x_total{component=\"otlp\",reason=\"a \\\"b\\\"\"} 7\n\
                    # HELP tracecast_q Queue\n# TYPE tracecast_q gauge\ntracecast_q 3\n# EOF\n";
        let families = parse_families(text);
        assert_eq!(
            families,
            vec![
                Family {
                    name: "tracecast_x".into(),
                    help: "Spans x".into(),
                    kind: Kind::Counter
                },
                Family {
                    name: "tracecast_q".into(),
                    help: "Queue".into(),
                    kind: Kind::Gauge
                },
            ]
        );
        let samples = parse_samples(text);
        assert_eq!(
            samples["tracecast_x"],
            vec![(
                vec![
                    KeyValue::new("component", "otlp"),
                    KeyValue::new("reason", "a \"b\"")
                ],
                7.0
            )]
        );
        assert_eq!(samples["tracecast_q"], vec![(vec![], 3.0)]);
    }

    #[test]
    fn every_family_of_the_registry_is_mapped_including_histograms() {
        use tracecast_core::metrics;
        let c = metrics::component("otlp/st_map");
        metrics::observe_request("otlp/st_map", Duration::from_millis(3));
        metrics::observe_request("otlp/st_map", Duration::from_millis(5));
        metrics::DEAD_LETTERS.get_or_create(&c).inc();
        tracecast_exporter_s3::metrics::S3_TRACES_HELD
            .get_or_create(&c)
            .set(2);
        tracecast_runtime::metrics::QUEUE_ENTRIES
            .get_or_create(&metrics::pipeline("st_map"))
            .set(1);
        let snapshot = Snapshot::new(admin::registry());
        let text = snapshot.text();
        let families = parse_families(&text);
        assert_eq!(
            families.len(),
            text.lines().filter(|l| l.starts_with("# TYPE ")).count(),
            "a family type self-telemetry does not map: {text}"
        );
        let hist = "tracecast_exporter_request_duration_seconds";
        assert!(families
            .iter()
            .any(|f| f.name == hist && f.kind == Kind::Histogram));
        assert!(families.iter().any(|f| f.name == "tracecast_build_info"));
        let attrs = vec![KeyValue::new("component", "otlp/st_map")];
        assert_eq!(
            snapshot.samples(&format!("{hist}_count")),
            vec![(attrs.clone(), 2.0)]
        );
        let sum = snapshot.samples(&format!("{hist}_sum"));
        assert_eq!(sum.len(), 1);
        assert!((sum[0].1 - 0.008).abs() < 1e-9, "{sum:?}");
    }
}
