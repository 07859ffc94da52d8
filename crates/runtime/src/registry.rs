//! The one place that lists every component type: one entry per type, giving its YAML type
//! name, its config type, its constructor and, for exporters, its dead-letter store
//! (folder, list, resend). [`validate`], the `build_*` functions, the connection tests
//! (`check.rs`) and `tracecast dead-letters` all go through these entries; nothing else
//! names a component type.
//!
//! Validate once, build from the validated value: [`validate`] decodes each body into its
//! config type and validates it once ([`tracecast_config::ValidateInto`]) into the value
//! its constructor takes (parsed URLs, headers, regexes, templates, TLS files). Entries'
//! `build` closures receive that value, so a processor cannot fail to build and an
//! exporter fails only on I/O (setting up a client, creating a folder), never on config.
//!
//! Adding a component type: write its crate (a config type implementing
//! `serde::Deserialize` and either [`tracecast_config::ValidateInto`], when something must
//! be parsed, or [`tracecast_config::Validate`], when the config is its own validated
//! value; and a type implementing [`Receiver`], [`Processor`] or [`Exporter`] whose
//! constructor takes the validated value), add ONE entry to [`RECEIVERS`], [`PROCESSORS`]
//! or [`EXPORTERS`] below, and put a minimal valid body in its crate as
//! `testdata/<kind>_<type>.yaml` (`crates/tracecast/tests/registry.rs` validates and builds
//! every listed type from it). `factory.rs` holds the entry types and the type-erased
//! configs they produce.

mod aliases;
mod factory;

use std::collections::BTreeMap;
use std::sync::Arc;

use tracecast_config::{Config, ConfigErrors, RawComponent};
use tracecast_core::dead_letter::ListedLetter;
use tracecast_core::{BatchSink, ComponentId, Exporter, Processor, Receiver};
use tracecast_exporter_otlp::{dead_letter as otlp_dl, OtlpExporter, OtlpExporterConfig};
use tracecast_exporter_s3::{upload as s3_dl, S3Exporter, S3ExporterConfig};
use tracecast_processors::{
    BatchProcessor, BatchProcessorConfig, FilterProcessor, FilterProcessorConfig,
    MetadataProcessor, MetadataProcessorConfig, PrivacyProcessor, PrivacyProcessorConfig,
    SamplingProcessor, SamplingProcessorConfig,
};
use tracecast_receiver_otlp::{OtlpReceiver, OtlpReceiverConfig};

use crate::fault::{FaultProcessor, FaultProcessorConfig};
pub use aliases::notes as alias_notes;
pub use factory::{
    BoxError, DeadLetters, ExporterConfig, ExporterEntry, Factory, ProcessorConfig, ProcessorEntry,
    ReceiverConfig, ReceiverEntry,
};

/// Every receiver type.
pub static RECEIVERS: &[&dyn Factory<Config = ReceiverConfig>] =
    &[&ReceiverEntry::<OtlpReceiverConfig> {
        type_name: "otlp",
        build: |id, config, sink| Box::new(OtlpReceiver::new(id.clone(), config.clone(), sink)),
    }];

/// Every processor type.
pub static PROCESSORS: &[&dyn Factory<Config = ProcessorConfig>] = &[
    &ProcessorEntry::<MetadataProcessorConfig> {
        type_name: "metadata",
        test_only: false,
        build: |id, config| Box::new(MetadataProcessor::new(id.clone(), config.clone())),
    },
    &ProcessorEntry::<PrivacyProcessorConfig> {
        type_name: "privacy",
        test_only: false,
        build: |id, config| Box::new(PrivacyProcessor::new(id.clone(), config.clone())),
    },
    &ProcessorEntry::<BatchProcessorConfig> {
        type_name: "batch",
        test_only: false,
        build: |id, config| Box::new(BatchProcessor::new(id.clone(), config.clone())),
    },
    &ProcessorEntry::<SamplingProcessorConfig> {
        type_name: "sampling",
        test_only: false,
        build: |id, config| Box::new(SamplingProcessor::new(id.clone(), config)),
    },
    &ProcessorEntry::<FilterProcessorConfig> {
        type_name: "filter",
        test_only: false,
        build: |id, config| Box::new(FilterProcessor::new(id.clone(), config.clone())),
    },
    // Only with `TRACECAST_TEST_COMPONENTS=1`: see [`crate::fault`].
    &ProcessorEntry::<FaultProcessorConfig> {
        type_name: "fault",
        test_only: true,
        build: |_, config| Box::new(FaultProcessor(config.clone())),
    },
];

/// Every exporter type.
pub static EXPORTERS: &[&dyn Factory<Config = ExporterConfig>] = &[
    &ExporterEntry::<OtlpExporterConfig> {
        type_name: "otlp",
        build: |id, config| Ok(Box::new(OtlpExporter::new(id.clone(), config)?)),
        dead_letters: DeadLetters {
            dir: |id, config| otlp_dl::effective_dir(id, &config.config),
            list: |dir| {
                let letters = otlp_dl::list(dir)?.into_iter().map(|b| ListedLetter {
                    file: b.path,
                    spans: b.spans,
                    reason: b.reason,
                });
                Ok(letters.collect())
            },
            resend: |id, config, stop| {
                Box::pin(async move {
                    Ok(tracecast_exporter_otlp::resend::resend(&id, &config, &stop).await?)
                })
            },
        },
    },
    &ExporterEntry::<S3ExporterConfig> {
        type_name: "s3",
        build: |id, config| Ok(Box::new(S3Exporter::new(id.clone(), config)?)),
        dead_letters: DeadLetters {
            dir: |id, config| s3_dl::dead_letter_dir(id, &config.config),
            list: |dir| {
                let letters = s3_dl::list_dead_letters(dir)?
                    .into_iter()
                    .map(|t| ListedLetter {
                        file: t.path,
                        spans: None,
                        reason: t.reason,
                    });
                Ok(letters.collect())
            },
            resend: |id, config, stop| {
                Box::pin(async move { Ok(s3_dl::resend_dead_letters(&id, &config, &stop).await?) })
            },
        },
    },
];

/// The receiver types a config may use.
pub fn receiver_types() -> Vec<&'static str> {
    listed(RECEIVERS)
}

/// The processor types a config may use (test-only ones aside).
pub fn processor_types() -> Vec<&'static str> {
    listed(PROCESSORS)
}

/// The exporter types a config may use.
pub fn exporter_types() -> Vec<&'static str> {
    listed(EXPORTERS)
}

fn listed<C>(entries: &[&dyn Factory<Config = C>]) -> Vec<&'static str> {
    entries
        .iter()
        .filter(|e| !e.test_only())
        .map(|e| e.type_name())
        .collect()
}

/// A config whose every component body decoded and validated.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    pub raw: Config,
    pub receivers: BTreeMap<ComponentId, ReceiverConfig>,
    pub processors: BTreeMap<ComponentId, ProcessorConfig>,
    pub exporters: BTreeMap<ComponentId, ExporterConfig>,
}

/// Decodes every component of one section through its type's entry; problems go to
/// `errors` (an unknown type names the known ones).
fn decode_section<C>(
    config: &Config,
    section: &BTreeMap<ComponentId, RawComponent>,
    entries: &'static [&'static dyn Factory<Config = C>],
    errors: &mut Vec<tracecast_config::ConfigError>,
) -> BTreeMap<ComponentId, C> {
    let mut decoded = BTreeMap::new();
    for (id, raw) in section {
        // A Collector name (`otlp_http`) decodes as its tracecast type, body translated.
        let (type_name, raw) = aliases::resolve(raw);
        let entry = entries
            .iter()
            .find(|e| e.type_name() == type_name && (!e.test_only() || crate::fault::enabled()));
        let result = match entry {
            Some(entry) => entry.decode(config, &raw),
            None => Err(config.error_at(
                &raw,
                format!(
                    "unknown {} type {:?}; known types: {}",
                    raw.kind,
                    raw.id.type_name(),
                    listed(entries).join(", ")
                ),
            )),
        };
        match result {
            Ok(c) => {
                decoded.insert(id.clone(), c);
            }
            Err(e) => errors.extend(e.0),
        }
    }
    decoded
}

/// Decodes and validates every component, reporting all problems at once: `problems` are
/// those the loader already found (graph, service), merged with the components' own.
pub fn validate(config: Config, problems: ConfigErrors) -> Result<ValidatedConfig, ConfigErrors> {
    let mut errors = problems.0;
    let loader_problems = errors.len();
    let receivers = decode_section(&config, &config.receivers, RECEIVERS, &mut errors);
    let processors = decode_section(&config, &config.processors, PROCESSORS, &mut errors);
    let exporters = decode_section(&config, &config.exporters, EXPORTERS, &mut errors);
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

/// Why an exporter could not be built from its validated config (a client that cannot be
/// set up, a folder that cannot be created; never a config problem): the exporter's own
/// error, with its message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub BoxError);

/// Builds a fresh processor instance (each pipeline gets its own, as in the Collector);
/// a validated config always builds.
pub fn build_processor(id: &ComponentId, config: &ProcessorConfig) -> Box<dyn Processor> {
    config.build(id)
}

/// Builds an exporter (not started).
pub fn build_exporter(
    id: &ComponentId,
    config: &ExporterConfig,
) -> Result<Box<dyn Exporter>, BuildError> {
    config.build(id).map_err(BuildError)
}

/// Builds a receiver feeding `sink` (nothing is bound yet).
pub fn build_receiver(
    id: &ComponentId,
    config: &ReceiverConfig,
    sink: Arc<dyn BatchSink>,
) -> Box<dyn Receiver> {
    config.build(id, sink)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn all<C>(entries: &[&dyn Factory<Config = C>]) -> Vec<&'static str> {
        entries.iter().map(|e| e.type_name()).collect()
    }

    #[test]
    fn each_type_is_registered_exactly_once() {
        for (kind, names) in [
            ("receiver", all(RECEIVERS)),
            ("processor", all(PROCESSORS)),
            ("exporter", all(EXPORTERS)),
        ] {
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), names.len(), "{kind} types: {names:?}");
        }
        assert_eq!(receiver_types(), ["otlp"]);
        assert_eq!(
            processor_types(),
            ["metadata", "privacy", "batch", "sampling", "filter"]
        );
        assert_eq!(exporter_types(), ["otlp", "s3"]);
    }

    #[test]
    fn an_unknown_type_lists_the_known_ones() {
        let yaml = "receivers:\n  otlp:\n  kafka:\nprocessors:\n  sample:\n\
                    exporters:\n  otlp:\n    endpoint: http://127.0.0.1:4318/v1/traces\n  \
                    loki:\nservice:\n  admin: {endpoint: \"\"}\n  pipelines:\n    traces:\n      \
                    receivers: [otlp]\n      exporters: [otlp]\n";
        let errors = crate::load_config_str("unknown.yaml", yaml)
            .expect_err("unknown types must be refused")
            .to_string();
        for expected in [
            "unknown receiver type \"kafka\"; known types: otlp",
            "unknown processor type \"sample\"; known types: metadata, privacy, batch, sampling, filter",
            "unknown exporter type \"loki\"; known types: otlp, s3",
        ] {
            assert!(errors.contains(expected), "{expected:?} not in:\n{errors}");
        }
    }
}
