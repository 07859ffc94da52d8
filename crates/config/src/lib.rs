//! tracecast's YAML config model. (Being written.)

mod decode;
mod document;
mod env;
pub mod error;
mod graph;
mod load;
pub mod model;
pub mod positions;
mod service;
pub mod units;
pub mod validate;
mod yaml;

pub use error::{ConfigError, ConfigErrors};
pub use load::{load_file, load_str, load_str_with_env};
pub use model::{
    Config, LogFormat, LogsConfig, PipelineConfig, RawComponent, ServiceConfig, TelemetryConfig,
};
pub use units::{ByteSize, Duration};
pub use validate::{FieldError, Validate};
