//! The `tracecast` daemon: CLI, the component registry and the pipeline runtime.
//!
//! - `cli.rs`: the `run`, `validate`, `check` and `dead-letters` commands.
//! - `dead_letters.rs`: `dead-letters list | resend`: each exporter's dead-letter folder.
//! - `registry.rs`: YAML type -> typed config -> constructor, for every component.
//! - `pipeline/`: receivers -> durable queues -> pipelines -> exporters (`mod.rs`: the
//!   service, reload and shutdown; `fanout.rs`: the receivers' sink; `task.rs`: a pipeline's
//!   task, retries of failed entries; `quarantine.rs`: where poison entries go).
//! - `fault.rs`: the test-only `fault` processor (`TRACECAST_TEST_COMPONENTS=1`).
//! - `check.rs`: connection tests of every destination (`check`, start-up, reload).
//! - `taken.rs`: fingerprints of destinations that passed, so a taken config starts during
//!   an outage.
//! - `signals.rs`: SIGTERM/SIGINT/SIGHUP, one stream for the life of the process.
//! - `memory.rs`: the memory limiter (`service.memory_limit`).
//! - `logging.rs`: `tracing` set-up (text or JSON).
//! - `admin.rs`: the admin endpoint (`/metrics`, `/healthz`, `/readyz`).
//! - `health.rs`: periodic readiness check of destinations behind `/readyz` (real traffic,
//!   else the connection test).
//! - `queue_metrics.rs`: copies each pipeline queue's stats to `/metrics` every second.
//! - `self_telemetry.rs`: tracecast's own metrics over OTLP (`service.telemetry.otlp`).
//! - `sd_notify.rs`: systemd `READY=1` notification.
//! - `default_config.yaml`: the embedded default config.

pub mod admin;
pub mod check;
pub mod cli;
pub mod dead_letters;
pub mod fault;
pub mod health;
pub mod logging;
pub mod memory;
pub mod pipeline;
pub mod queue_metrics;
pub mod registry;
pub mod sd_notify;
pub mod self_telemetry;
pub mod signals;
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
