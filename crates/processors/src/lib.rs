//! tracecast's processors: `metadata` (namespacing the gateway's request fields), `privacy`
//! (Privacy Mode: removing prompt and completion content), `sampling` and `filter` (what a
//! destination receives) and `batch` (size/time batching).
//! Each implements [`tracecast_core::Processor`] and has its own config struct.
//!
//! Files:
//! - `metadata/mod.rs`: [`MetadataProcessor`] and the mapping table (module docs).
//! - `metadata/config.rs`: [`MetadataProcessorConfig`].
//! - `metadata/fields.rs`: reading `trace` / `user` / `session_id` out of attributes.
//! - `metadata/ids.rs`: custom `trace_id` and `parent_span_id` strings to OTLP ids.
//! - `privacy/mod.rs`: [`PrivacyProcessor`]: what is removed, where, and the marker.
//! - `privacy/config.rs`: [`PrivacyProcessorConfig`] (extra keys/patterns, allow-list mode)
//!   and its validated form with the patterns compiled.
//! - `privacy/conventions.rs`: the content keys of every known convention, and the keys
//!   that are always kept.
//! - `sampling/mod.rs`: [`SamplingProcessor`]: deterministic sampling by trace, session or
//!   user, and where kept spans record the ratio.
//! - `sampling/config.rs`: [`SamplingProcessorConfig`].
//! - `sampling/tracestate.rs`: the OpenTelemetry consistent-probability values (randomness,
//!   threshold, `ot=th`) and the W3C `tracestate` entry holding them.
//! - `filter/mod.rs`: [`FilterProcessor`]: keeping or dropping whole requests by rule groups.
//! - `filter/config.rs`: [`FilterProcessorConfig`], validated and compiled into
//!   [`FilterRules`] (every bad rule reported with its key path).
//! - `filter/rules.rs`: compiled rules and operators, several values per field.
//! - `filter/request.rs`: the request fields rules read (model, tokens, costs, content
//!   text through `tracecast_core::genai::request_text`, ...).
//! - `retain.rs`: dropping spans on purpose: counting, empty batches settled.
//! - `batch.rs`: [`BatchProcessor`] and [`BatchProcessorConfig`].
//! - `attrs.rs`: helpers over OTLP `AnyValue` / `KeyValue` lists.
//! - `warn.rs`: counted, rate-limited warnings for bad input.
//!
//! Pipelines should run `metadata` before `batch` (a request's spans are then still
//! together) and may put `privacy` before or after `metadata`: the two commute (the output
//! has the same attributes either way; only their order within a list may differ, which
//! OTLP gives no meaning).

pub mod attrs;
pub mod batch;
pub mod filter;
pub mod metadata;
pub mod privacy;
mod retain;
pub mod sampling;
pub mod warn;

pub use batch::{BatchProcessor, BatchProcessorConfig};
pub use filter::{FilterProcessor, FilterProcessorConfig, FilterRules};
pub use metadata::{MetadataProcessor, MetadataProcessorConfig};
pub use privacy::{PrivacyProcessor, PrivacyProcessorConfig, ValidPrivacyProcessorConfig};
pub use sampling::{SamplingProcessor, SamplingProcessorConfig};
