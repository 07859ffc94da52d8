//! Config of the `sampling` processor.

use serde::Deserialize;
use tracecast_config::{FieldError, Validate};

/// Smallest `ratio` accepted: the gateway's lowest sampling rate.
pub const MIN_RATIO: f64 = 0.0001;

/// Keeps a deterministic share of traces (or of sessions, or of users).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingProcessorConfig {
    /// Share kept, from 0.0001 to 1 (0.05 keeps 5%). Required: a sampling processor
    /// without a ratio would be a mistake, not a default.
    pub ratio: f64,
    /// What the decision is made on. Default `trace_id`.
    #[serde(default)]
    pub by: SampleBy,
}

/// The key a sampling decision is a function of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleBy {
    /// The OpenTelemetry consistent-probability rule on the trace id's randomness: agrees
    /// with upstream samplers at the same ratio.
    #[default]
    TraceId,
    /// The request's `session.id` (or the gateway's raw `session_id`): whole sessions are
    /// kept or dropped.
    SessionId,
    /// The request's `user.id` (or the gateway's raw `user`): whole users.
    UserId,
}

impl Validate for SamplingProcessorConfig {
    fn validate(&self) -> Vec<FieldError> {
        let r = self.ratio;
        if r.is_finite() && (MIN_RATIO..=1.0).contains(&r) {
            return Vec::new();
        }
        vec![FieldError::new(
            "ratio",
            format!("must be between 0.0001 and 1 (the share kept: 0.05 keeps 5%), got {r}"),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ratio: f64) -> SamplingProcessorConfig {
        SamplingProcessorConfig {
            ratio,
            by: SampleBy::TraceId,
        }
    }

    #[test]
    fn ratio_bounds_are_the_gateways() {
        for ok in [0.0001, 0.25, 1.0] {
            assert!(cfg(ok).validate().is_empty(), "{ok}");
        }
        for bad in [0.0, 0.00009, 1.01, -1.0, f64::NAN, f64::INFINITY] {
            let errs = cfg(bad).validate();
            assert_eq!(errs.len(), 1, "{bad}");
            assert_eq!(errs[0].path, "ratio");
        }
        assert_eq!(
            cfg(2.0).validate()[0].message,
            "must be between 0.0001 and 1 (the share kept: 0.05 keeps 5%), got 2"
        );
    }

    #[test]
    fn by_defaults_to_trace_id_and_unknown_keys_are_refused() {
        let c: SamplingProcessorConfig = serde_json::from_str(r#"{"ratio": 0.5}"#).unwrap();
        assert_eq!(c.by, SampleBy::TraceId);
        let c: SamplingProcessorConfig =
            serde_json::from_str(r#"{"ratio": 0.5, "by": "session_id"}"#).unwrap();
        assert_eq!(c.by, SampleBy::SessionId);
        let err = serde_json::from_str::<SamplingProcessorConfig>(r#"{"ratio": 1, "rate": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `rate`"), "{err}");
        let err = serde_json::from_str::<SamplingProcessorConfig>(r#"{"ratio": 1, "by": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `x`"), "{err}");
        assert!(serde_json::from_str::<SamplingProcessorConfig>("{}").is_err());
    }
}
