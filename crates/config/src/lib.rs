//! tracecast's YAML config model, in the OpenTelemetry Collector's shape: `receivers`,
//! `processors`, `exporters` (component bodies kept raw, decoded later by each component's
//! crate through [`Config::decode`]) and a typed `service` section. Loading reports every
//! problem at once, each with file, line, column and key path.
//!
//! Files, in the order a load runs through them:
//! - `load.rs`: [`load_file`], [`load_str`], [`load_str_with_env`]; top-level keys and
//!   component ids.
//! - `yaml.rs`: YAML text -> a tree that keeps positions and quoting (saphyr-parser events).
//! - `document.rs`: tree -> `serde_yaml::Value`, expanding `${env:...}`, indexing positions,
//!   catching duplicate keys and unsupported tags.
//! - `env.rs`: `${env:NAME}` / `${env:NAME:-default}` / `$$` expansion of one scalar.
//! - `positions.rs`: key paths (`service.pipelines.traces/axiom.exporters[0]`) -> line and
//!   column, and which values came from the environment.
//! - `service.rs`: the `service` section, decoded key by key.
//! - `graph.rs`: pipeline checks (references, duplicates, empty pipelines, no pipelines).
//! - `decode.rs`: typed decoding with `serde_path_to_error`, [`Config::decode`], and the
//!   scrubbing that keeps values from the environment out of every message.
//! - `model.rs`: [`Config`], [`RawComponent`], [`ServiceConfig`] and its parts.
//! - `error.rs`: [`ConfigError`] and [`ConfigErrors`].
//! - `units.rs`: [`Duration`] and [`ByteSize`] as written in config files.
//! - `validate.rs`: the [`Validate`] and [`ValidateInto`] contracts for component configs.
//! - `exporter.rs`: settings shared by every exporter (`retry_on_failure`, `compression`,
//!   `tls`, `timeout`, `dead_letter_dir`, `dead_letter_max_size`), one definition each.
//!
//! Env expansion follows the Collector: only values are expanded, never keys; a plain
//! (unquoted) scalar that is exactly one `${env:X}` is re-read as YAML, so `port: ${env:PORT}`
//! can be a number, while a quoted one (`"${env:X}"`) always stays a string.

mod decode;
mod document;
mod env;
mod error;
pub mod exporter;
mod graph;
mod load;
mod model;
mod positions;
mod service;
pub mod units;
pub mod validate;
mod yaml;

pub use error::{ConfigError, ConfigErrors};
pub use exporter::{ClientTls, Compression, RetryOnFailure, ValidClientTls};
pub use load::{
    load_file, load_file_with_problems, load_str, load_str_with_env, load_str_with_problems,
};
pub use model::{
    AdminConfig, Config, FsyncMode, LogFormat, LogsConfig, PipelineConfig, QuarantineConfig,
    QueueConfig, RawComponent, SelfTelemetryOtlpConfig, ServiceConfig, TelemetryConfig,
};
pub use units::{ByteSize, Duration};
pub use validate::{FieldError, Validate, ValidateInto};
