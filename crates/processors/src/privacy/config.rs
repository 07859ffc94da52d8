//! Config of the `privacy` processor.

use std::collections::HashSet;

use regex::{Regex, RegexSet};
use serde::Deserialize;
use tracecast_config::{FieldError, ValidateInto};

use super::conventions::{DEFAULT_ALLOW_KEYS, DEFAULT_ALLOW_PATTERNS};

/// Privacy Mode. The built-in conventions always apply; these fields add to them or, in
/// allow-list mode, make the processor keep only what is listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyProcessorConfig {
    /// More attribute keys to remove (exact names), for in-house content attributes.
    pub extra_keys: Vec<String>,
    /// More attribute keys to remove, as regular expressions (unanchored unless you anchor them
    /// with `^...$`). These also apply to keys Privacy Mode normally keeps.
    pub extra_patterns: Vec<String>,
    /// More span event names whose events are dropped whole.
    pub extra_events: Vec<String>,
    /// Strict mode: remove every attribute that is not in `allow_keys` / `allow_patterns`
    /// (content keys are removed even if listed).
    pub allow_list_mode: bool,
    /// Keys kept in allow-list mode. Setting it replaces the default list.
    pub allow_keys: Vec<String>,
    /// Regular expressions of keys kept in allow-list mode. Setting it replaces the default list.
    pub allow_patterns: Vec<String>,
}

impl Default for PrivacyProcessorConfig {
    fn default() -> Self {
        Self {
            extra_keys: Vec::new(),
            extra_patterns: Vec::new(),
            extra_events: Vec::new(),
            allow_list_mode: false,
            allow_keys: DEFAULT_ALLOW_KEYS.iter().map(|s| s.to_string()).collect(),
            allow_patterns: DEFAULT_ALLOW_PATTERNS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// A validated `privacy` config: the configured keys as sets and the patterns compiled,
/// what [`super::PrivacyProcessor::new`] takes.
#[derive(Debug, Clone)]
pub struct ValidPrivacyProcessorConfig {
    pub(super) extra_keys: HashSet<String>,
    pub(super) extra_patterns: RegexSet,
    pub(super) extra_events: Vec<String>,
    /// Allow-list mode: keys and patterns kept.
    pub(super) allow: Option<(HashSet<String>, RegexSet)>,
}

impl ValidateInto for PrivacyProcessorConfig {
    type Validated = ValidPrivacyProcessorConfig;

    fn validate_into(&self) -> Result<ValidPrivacyProcessorConfig, Vec<FieldError>> {
        let mut errors = Vec::new();
        for (field, list) in [
            ("extra_keys", &self.extra_keys),
            ("extra_events", &self.extra_events),
            ("allow_keys", &self.allow_keys),
        ] {
            for (i, key) in list.iter().enumerate() {
                if key.is_empty() {
                    errors.push(FieldError::new(
                        format!("{field}[{i}]"),
                        "must not be empty",
                    ));
                }
            }
        }
        let extra_patterns = compile("extra_patterns", &self.extra_patterns, &mut errors);
        let allow_patterns = compile("allow_patterns", &self.allow_patterns, &mut errors);
        match (extra_patterns, allow_patterns) {
            (Some(extra_patterns), Some(allow_patterns)) if errors.is_empty() => {
                Ok(ValidPrivacyProcessorConfig {
                    extra_keys: self.extra_keys.iter().cloned().collect(),
                    extra_patterns,
                    extra_events: self.extra_events.clone(),
                    allow: self
                        .allow_list_mode
                        .then(|| (self.allow_keys.iter().cloned().collect(), allow_patterns)),
                })
            }
            _ => Err(errors),
        }
    }
}

/// Compiles one list of patterns into a set; each bad pattern is reported at its index.
fn compile(field: &str, list: &[String], errors: &mut Vec<FieldError>) -> Option<RegexSet> {
    let before = errors.len();
    for (i, pattern) in list.iter().enumerate() {
        if pattern.is_empty() {
            errors.push(FieldError::new(
                format!("{field}[{i}]"),
                "must not be empty (an empty pattern matches every key)",
            ));
        } else if let Err(e) = Regex::new(pattern) {
            errors.push(FieldError::new(
                format!("{field}[{i}]"),
                format!("{pattern:?} is not a valid regular expression: {e}"),
            ));
        }
    }
    if errors.len() > before {
        return None;
    }
    // Each pattern compiles alone; together they may still pass the size limit.
    RegexSet::new(list)
        .map_err(|e| {
            errors.push(FieldError::new(
                field,
                format!("the patterns together: {e}"),
            ))
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_lists_the_default_allow_list() {
        let cfg = PrivacyProcessorConfig::default();
        assert!(cfg.problems().is_empty());
        assert!(cfg.allow_keys.iter().any(|k| k == "gen_ai.request.model"));
    }

    #[test]
    fn reports_every_bad_pattern_with_its_path() {
        let cfg = PrivacyProcessorConfig {
            extra_keys: vec!["".into()],
            extra_patterns: vec!["ok".into(), "(".into()],
            allow_patterns: vec!["".into()],
            ..Default::default()
        };
        let errs = cfg.problems();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["extra_keys[0]", "extra_patterns[1]", "allow_patterns[0]"]
        );
        assert!(errs[1].message.contains("not a valid regular expression"));
    }

    #[test]
    fn yaml_like_input_with_unknown_field_is_rejected() {
        let err = serde_json::from_str::<PrivacyProcessorConfig>(r#"{"allowlist": true}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `allowlist`"), "{err}");
    }
}
