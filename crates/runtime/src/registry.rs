//! The one place that lists every component type: YAML type name -> typed config ->
//! constructor. Adding a component means adding one arm to each enum below, its name to the
//! `*_TYPES` list, and a minimal valid body as `<kind>_<type>.yaml` in its crate's
//! `testdata/` (`tests/registry.rs` validates and builds every listed type from it).

use std::collections::BTreeMap;
use std::sync::Arc;

use tracecast_config::{Config, ConfigErrors, RawComponent};
use tracecast_core::{BatchSink, ComponentId, Exporter, Processor, Receiver};
use tracecast_exporter_otlp::{OtlpExporter, OtlpExporterConfig};
use tracecast_exporter_s3::{S3Exporter, S3ExporterConfig};
use tracecast_processors::{
    BatchProcessor, BatchProcessorConfig, MetadataProcessor, MetadataProcessorConfig,
    PrivacyProcessor, PrivacyProcessorConfig,
};
use tracecast_receiver_otlp::{OtlpReceiver, OtlpReceiverConfig};

/// Receiver types tracecast knows.
pub const RECEIVER_TYPES: &[&str] = &["otlp"];
/// Processor types tracecast knows.
pub const PROCESSOR_TYPES: &[&str] = &["metadata", "privacy", "batch"];
/// Exporter types tracecast knows.
pub const EXPORTER_TYPES: &[&str] = &["otlp", "s3"];

/// A receiver's validated config.
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverConfig {
    Otlp(OtlpReceiverConfig),
}

/// A processor's validated config.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorConfig {
    Metadata(MetadataProcessorConfig),
    Privacy(PrivacyProcessorConfig),
    Batch(BatchProcessorConfig),
    /// Test only (`TRACECAST_TEST_COMPONENTS=1`): see [`crate::fault`].
    Fault(crate::fault::FaultProcessorConfig),
}

/// An exporter's validated config.
#[derive(Debug, Clone, PartialEq)]
pub enum ExporterConfig {
    Otlp(OtlpExporterConfig),
    S3(S3ExporterConfig),
}

/// A config whose every component body decoded and validated.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    pub raw: Config,
    pub receivers: BTreeMap<ComponentId, ReceiverConfig>,
    pub processors: BTreeMap<ComponentId, ProcessorConfig>,
    pub exporters: BTreeMap<ComponentId, ExporterConfig>,
}

fn unknown_type(config: &Config, raw: &RawComponent, known: &[&str]) -> ConfigErrors {
    config.error_at(
        raw,
        format!(
            "unknown {} type {:?}; known types: {}",
            raw.kind,
            raw.id.type_name(),
            known.join(", ")
        ),
    )
}

/// Decodes and validates every component, reporting all problems at once: `problems` are
/// those the loader already found (graph, service), merged with the components' own.
pub fn validate(config: Config, problems: ConfigErrors) -> Result<ValidatedConfig, ConfigErrors> {
    let mut errors = problems.0;
    let loader_problems = errors.len();
    let mut receivers = BTreeMap::new();
    for (id, raw) in &config.receivers {
        let decoded = match raw.id.type_name() {
            "otlp" => config.decode(raw).map(ReceiverConfig::Otlp),
            _ => Err(unknown_type(&config, raw, RECEIVER_TYPES)),
        };
        match decoded {
            Ok(c) => {
                receivers.insert(id.clone(), c);
            }
            Err(e) => errors.extend(e.0),
        }
    }
    let mut processors = BTreeMap::new();
    for (id, raw) in &config.processors {
        let decoded = match raw.id.type_name() {
            "metadata" => config.decode(raw).map(ProcessorConfig::Metadata),
            "privacy" => config.decode(raw).map(ProcessorConfig::Privacy),
            "batch" => config.decode(raw).map(ProcessorConfig::Batch),
            "fault" if crate::fault::enabled() => config.decode(raw).map(ProcessorConfig::Fault),
            _ => Err(unknown_type(&config, raw, PROCESSOR_TYPES)),
        };
        match decoded {
            Ok(c) => {
                processors.insert(id.clone(), c);
            }
            Err(e) => errors.extend(e.0),
        }
    }
    let mut exporters = BTreeMap::new();
    for (id, raw) in &config.exporters {
        let decoded = match raw.id.type_name() {
            "otlp" => config.decode(raw).map(ExporterConfig::Otlp),
            "s3" => config.decode(raw).map(ExporterConfig::S3),
            _ => Err(unknown_type(&config, raw, EXPORTER_TYPES)),
        };
        match decoded {
            Ok(c) => {
                exporters.insert(id.clone(), c);
            }
            Err(e) => errors.extend(e.0),
        }
    }
    for problem in queue_options(&config.service.queue).problems() {
        let key = match problem.path.as_str() {
            "max_bytes" => "max_size",
            "segment_bytes" => "segment_size",
            other => other,
        };
        errors.push(config.error_at_path(&format!("service.queue.{key}"), problem.message));
    }
    // A value the loader already reported (an unset `${env:X}`, say) also fails its typed
    // decode; one message per key is enough.
    let reported: std::collections::BTreeSet<String> = errors[..loader_problems]
        .iter()
        .map(|e| e.path.clone())
        .collect();
    let mut i = 0;
    errors.retain(|e| {
        i += 1;
        i <= loader_problems || !reported.contains(&e.path)
    });
    if !errors.is_empty() {
        return Err(ConfigErrors::sorted(errors));
    }
    Ok(ValidatedConfig {
        raw: config,
        receivers,
        processors,
        exporters,
    })
}

/// Builds a fresh processor instance (each pipeline gets its own, as in the Collector).
pub fn build_processor(
    id: &ComponentId,
    config: &ProcessorConfig,
) -> anyhow::Result<Box<dyn Processor>> {
    Ok(match config {
        ProcessorConfig::Metadata(c) => Box::new(MetadataProcessor::new(id.clone(), c.clone())?),
        ProcessorConfig::Privacy(c) => Box::new(PrivacyProcessor::new(id.clone(), c.clone())?),
        ProcessorConfig::Batch(c) => Box::new(BatchProcessor::new(id.clone(), c.clone())),
        ProcessorConfig::Fault(c) => Box::new(crate::fault::FaultProcessor(c.clone())),
    })
}

/// Builds an exporter.
pub fn build_exporter(
    id: &ComponentId,
    config: &ExporterConfig,
) -> anyhow::Result<Box<dyn Exporter>> {
    Ok(match config {
        ExporterConfig::Otlp(c) => Box::new(OtlpExporter::new(id.clone(), c.clone())?),
        ExporterConfig::S3(c) => Box::new(S3Exporter::new(id.clone(), c)?),
    })
}

/// Builds a receiver feeding `sink`.
pub fn build_receiver(
    id: &ComponentId,
    config: &ReceiverConfig,
    sink: Arc<dyn BatchSink>,
) -> Box<dyn Receiver> {
    match config {
        ReceiverConfig::Otlp(c) => Box::new(OtlpReceiver::new(id.clone(), c.clone(), sink)),
    }
}

/// The durable queue options for `service.queue`.
pub fn queue_options(cfg: &tracecast_config::QueueConfig) -> tracecast_queue::QueueOptions {
    use tracecast_config::FsyncMode;
    let fsync = match cfg.fsync {
        FsyncMode::Always => tracecast_queue::FsyncPolicy::Always,
        FsyncMode::Interval => tracecast_queue::FsyncPolicy::Interval(cfg.fsync_interval.get()),
        FsyncMode::Never => tracecast_queue::FsyncPolicy::Never,
    };
    tracecast_queue::QueueOptions {
        fsync,
        max_bytes: cfg.max_size.get(),
        segment_bytes: cfg.segment_size.get(),
        cursor_interval: cfg.cursor_interval.get(),
    }
}
