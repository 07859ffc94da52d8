//! Support for the end-to-end tests in `tests/`: where the built `tracecast` binary is.
//! Shared fakes and fixtures live in `tracecast-test-util`.

pub use tracecast_test_util::*;
