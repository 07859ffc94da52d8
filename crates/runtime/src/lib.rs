//! tracecast's runtime: everything between the config file and the running components.
//! The binary (`crates/tracecast`) keeps the CLI, the admin endpoint, logging,
//! self-telemetry, signals and systemd notification.
//!
//! - `registry.rs`: the one place that lists every component type: one entry per type (YAML
//!   type, config decoded and validated, constructor; for exporters the dead-letter store),
//!   for every component kind; `registry/factory.rs`: the entry types and type-erased
//!   configs.
//! - `pipeline/`: receivers -> durable queues -> pipelines -> exporters (`mod.rs`: the
//!   service, start and shutdown; `apply.rs`: start and reload as prepare-then-switch steps;
//!   `fanout.rs`: the receivers' sink; `task.rs`: a pipeline's task, retries of failed
//!   entries; `quarantine.rs`: where poison entries go).
//! - `check.rs`: connection tests of every destination (`check`, start-up, reload).
//! - `taken.rs`: fingerprints of destinations that passed, so a taken config starts during
//!   an outage.
//! - `health.rs`: periodic readiness of destinations behind `/readyz` ([`health::Readiness`]).
//! - `memory.rs`: the memory limiter (`service.memory_limit`) and the counting allocator.
//! - `metrics.rs`: the runtime's metric families (queues, retries, quarantine).
//! - `queue_metrics.rs`: copies each pipeline queue's stats to `/metrics` every second.
//! - `fault.rs`: the test-only `fault` processor (`TRACECAST_TEST_COMPONENTS=1`).
//! - `default_config.yaml`: the embedded default config.

pub mod check;
pub mod fault;
pub mod health;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod queue_metrics;
pub mod registry;
pub mod taken;

use std::path::Path;

use tracecast_config::ConfigErrors;

pub use pipeline::Service;
pub use registry::ValidatedConfig;

/// The config `tracecast run` uses when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("default_config.yaml");

/// Loads and validates a config file, or the embedded default when `path` is `None`.
pub fn load_config(path: Option<&Path>) -> Result<ValidatedConfig, ConfigErrors> {
    let (config, problems) = match path {
        Some(p) => tracecast_config::load_file_with_problems(p)?,
        None => load_with_problems("<embedded default config>", DEFAULT_CONFIG)?,
    };
    registry::validate(config, problems)
}

/// Loads and validates a config given as text (`source` names it in errors).
pub fn load_config_str(source: &str, text: &str) -> Result<ValidatedConfig, ConfigErrors> {
    let (config, problems) = load_with_problems(source, text)?;
    registry::validate(config, problems)
}

fn load_with_problems(
    source: &str,
    text: &str,
) -> Result<(tracecast_config::Config, ConfigErrors), ConfigErrors> {
    tracecast_config::load_str_with_problems(source, text, &|name| std::env::var(name).ok())
}

/// The process-wide registry with every tracecast metric family, with
/// `tracecast_build_info{version}` set to 1 for this build.
pub fn metrics_registry() -> prometheus_client::registry::Registry {
    let mut registry = prometheus_client::registry::Registry::default();
    tracecast_core::metrics::register(&mut registry);
    metrics::register(&mut registry);
    tracecast_exporter_s3::metrics::register(&mut registry);
    tracecast_core::metrics::set_build_info(env!("CARGO_PKG_VERSION"));
    registry
}
