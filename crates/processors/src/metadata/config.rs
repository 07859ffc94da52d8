//! Config of the `metadata` processor.

use serde::Deserialize;
use tracecast_config::{FieldError, Validate};

use super::{CUSTOM_TRACE_ID_ATTRIBUTE, METADATA_PREFIX, SESSION_ID_ATTRIBUTE, USER_ID_ATTRIBUTE};

/// Where the gateway's request fields are read from. Every name is an attribute key looked
/// up on spans and on resources.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataProcessorConfig {
    /// Attribute holding the request's `trace` object (an OTLP map or a JSON-object string).
    pub trace_attribute: String,
    /// Attribute holding the request's `user`; written out as `user.id`.
    pub user_attribute: String,
    /// Attribute holding the request's `session_id`; written out as `session.id`.
    pub session_id_attribute: String,
    /// A span carrying any of these attributes is an LLM generation span (named by
    /// `trace.generation_name`).
    pub generation_attributes: Vec<String>,
}

impl Default for MetadataProcessorConfig {
    fn default() -> Self {
        Self {
            trace_attribute: "trace".into(),
            user_attribute: "user".into(),
            session_id_attribute: "session_id".into(),
            generation_attributes: vec![
                "gen_ai.operation.name".into(),
                "gen_ai.request.model".into(),
                "gen_ai.response.model".into(),
            ],
        }
    }
}

impl Validate for MetadataProcessorConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let outputs = [
            USER_ID_ATTRIBUTE,
            SESSION_ID_ATTRIBUTE,
            CUSTOM_TRACE_ID_ATTRIBUTE,
        ];
        let sources = [
            ("trace_attribute", &self.trace_attribute),
            ("user_attribute", &self.user_attribute),
            ("session_id_attribute", &self.session_id_attribute),
        ];
        for (i, (path, name)) in sources.iter().enumerate() {
            if name.is_empty() {
                errors.push(FieldError::new(*path, "must not be empty"));
                continue;
            }
            // An input name equal to an output name would make the processor consume its
            // own output and lose idempotence.
            if outputs.contains(&name.as_str()) || name.starts_with(METADATA_PREFIX) {
                errors.push(FieldError::new(
                    *path,
                    format!(
                        "{name:?} is an attribute this processor writes; pick the attribute \
                         your gateway sends (default {:?})",
                        ["trace", "user", "session_id"][i]
                    ),
                ));
            }
            if sources[..i].iter().any(|(_, other)| other == name) {
                errors.push(FieldError::new(
                    *path,
                    format!("{name:?} is already used by another *_attribute field"),
                ));
            }
        }
        for (i, name) in self.generation_attributes.iter().enumerate() {
            if name.is_empty() {
                errors.push(FieldError::new(
                    format!("generation_attributes[{i}]"),
                    "must not be empty",
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert!(MetadataProcessorConfig::default().validate().is_empty());
    }

    #[test]
    fn rejects_output_names_duplicates_and_empties() {
        let cfg = MetadataProcessorConfig {
            trace_attribute: "trace.metadata.x".into(),
            user_attribute: "user.id".into(),
            session_id_attribute: "".into(),
            generation_attributes: vec!["".into()],
        };
        let paths: Vec<String> = cfg.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            vec![
                "trace_attribute",
                "user_attribute",
                "session_id_attribute",
                "generation_attributes[0]"
            ]
        );
        let dup = MetadataProcessorConfig {
            user_attribute: "trace".into(),
            ..Default::default()
        };
        let errs = dup.validate();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.contains("already used"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<MetadataProcessorConfig>(r#"{"trace_attr": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `trace_attr`"), "{err}");
    }
}
