//! tracecast's YAML config model. (Being written.)
//!
//! - `units.rs`: [`Duration`] and [`ByteSize`] as written in config files.
//! - `validate.rs`: the [`Validate`] contract for component configs.

pub mod units;
pub mod validate;

pub use units::{ByteSize, Duration};
pub use validate::{FieldError, Validate};
