//! The `tracecast` daemon: the command line and what only a process has (admin endpoint,
//! logging, signals, self-telemetry, systemd). The runtime (registry, pipelines, queues,
//! connection tests, readiness) is the `tracecast-runtime` crate, re-exported here.
//!
//! - `cli.rs`: the `run`, `validate`, `check`, `dead-letters` and `send-test-trace` commands.
//! - `dead_letters.rs`: `dead-letters list | resend`: each exporter's dead-letter folder and
//!   each pipeline's quarantine.
//! - `signals.rs`: SIGTERM/SIGINT/SIGHUP, one stream for the life of the process.
//! - `logging.rs`: `tracing` set-up (text or JSON).
//! - `admin.rs`: the admin endpoint (`/metrics`, `/healthz`, `/readyz`, the status page and
//!   its actions).
//! - `status/`: the status page's data, HTML and the test trace (`send-test-trace`).
//! - `self_telemetry.rs`: tracecast's own metrics over OTLP (`service.telemetry.otlp`).
//! - `sd_notify.rs`: systemd `READY=1` notification.

pub mod admin;
pub mod cli;
pub mod dead_letters;
pub mod logging;
pub mod sd_notify;
pub mod self_telemetry;
pub mod signals;
pub mod status;

pub use tracecast_runtime::{
    check, fault, health, load_config, load_config_str, memory, pipeline, queue_metrics, registry,
    taken, Service, ValidatedConfig, DEFAULT_CONFIG,
};
