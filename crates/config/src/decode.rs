//! Typed decoding of one part of the config with errors that carry file, line, column and
//! the full key path, and the one place where messages are scrubbed of values that came
//! from the environment (they may be secrets).

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

use crate::error::{ConfigError, ConfigErrors};
use crate::model::{Config, RawComponent};
use crate::positions::{join_index, join_key, Positions};
use crate::validate::{FieldError, Validate, ValidateInto};

/// Collects errors for one file, positioned from the index and scrubbed of env values.
pub(crate) struct Reporter<'a> {
    pub file: &'a str,
    pub positions: &'a Positions,
    pub errors: Vec<ConfigError>,
}

/// Which position an error points at.
#[derive(Clone, Copy)]
pub(crate) enum At {
    /// The value (wrong type, bad value).
    Value,
    /// The key (unknown or duplicate keys, a whole component).
    Key,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a str, positions: &'a Positions) -> Self {
        Self {
            file,
            positions,
            errors: Vec::new(),
        }
    }

    pub fn push(&mut self, at: At, path: &str, message: impl Into<String>) {
        self.errors.push(make_error(
            self.file,
            self.positions,
            at,
            path,
            message.into(),
        ));
    }

    /// Decodes `value` (found at `path`) as `T`, recording the error if it fails.
    pub fn decode<T: DeserializeOwned>(&mut self, value: &Value, path: &str) -> Option<T> {
        match decode_value(self.file, self.positions, value, path) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }
}

pub(crate) fn make_error(
    file: &str,
    positions: &Positions,
    at: At,
    path: &str,
    message: String,
) -> ConfigError {
    let pos = match at {
        At::Value => positions.value_pos(path),
        At::Key => positions.key_pos(path),
    };
    ConfigError {
        file: file.to_string(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        path: path.to_string(),
        message: scrub(positions, path, message),
    }
}

/// Decodes `value`, found at `path`, as `T`; the error names the exact failing path inside.
pub(crate) fn decode_value<T: DeserializeOwned>(
    file: &str,
    positions: &Positions,
    value: &Value,
    path: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut full = path.to_string();
        for segment in e.path().iter() {
            match segment {
                Segment::Map { key } => full = join_key(&full, key),
                Segment::Seq { index } => full = join_index(&full, *index),
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        let message = e.inner().to_string();
        let mut at = At::Value;
        if let Some(field) = unknown_field(&message) {
            at = At::Key;
            if !full.ends_with(field) {
                full = join_key(&full, field);
            }
        }
        make_error(file, positions, at, &full, message)
    })
}

/// The key named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

/// Replaces values that came from the environment with "(the value of ${env:NAME})".
///
/// serde quotes strings as `"..."` or `` `...` ``; those forms are replaced. If a value of
/// four characters or more still appears unquoted, the whole message is withheld: shorter
/// values are not secrets and would otherwise collide with ordinary words.
fn scrub(positions: &Positions, path: &str, mut message: String) -> String {
    let secrets = positions.secrets_near(path);
    for env in &secrets {
        if env.value.is_empty() {
            continue;
        }
        let label = format!("(the value of ${{env:{}}})", env.name);
        message = message.replace(&format!("{:?}", env.value), &label);
        message = message.replace(&format!("`{}`", env.value), &label);
        if env.value.chars().count() >= 4 && message.contains(env.value.as_str()) {
            return format!(
                "the value of ${{env:{}}} is not valid here (values from the environment are never \
                 shown; check the variable)",
                env.name
            );
        }
    }
    // A plain `${env:X}` holding `123` or `true` became a number or boolean; say how to
    // keep it a string.
    if message.starts_with("invalid type") && message.contains("expected a string") {
        if let Some(entry) = positions.get(path).filter(|e| e.whole_plain_ref) {
            if let Some(env) = entry.env.first() {
                message.push_str(&format!(
                    "; to keep ${{env:{}}} a string, quote it: \"${{env:{}}}\"",
                    env.name, env.name
                ));
            }
        }
    }
    message
}

/// `base` + a path relative to it (`api_keys[1].token`, `[0]`, or empty).
fn join_relative(base: &str, relative: &str) -> String {
    if relative.is_empty() {
        base.to_string()
    } else if relative.starts_with('[') {
        format!("{base}{relative}")
    } else {
        join_key(base, relative)
    }
}

impl Config {
    /// Decodes one component's body as its typed config `T` and runs `T`'s validation.
    ///
    /// Errors carry file:line:col and the full key path (`exporters.otlp/axiom.timeout`);
    /// validation problems are all reported, not just the first.
    pub fn decode<T: DeserializeOwned + Validate>(
        &self,
        raw: &RawComponent,
    ) -> Result<T, ConfigErrors> {
        let value: T = decode_value(&self.source, &self.positions, &raw.body, &raw.path)?;
        let problems = value.validate();
        if problems.is_empty() {
            return Ok(value);
        }
        Err(self.problems_at(raw, problems))
    }

    /// Decodes one component's body as `T` and validates it once into the value its
    /// component is built from ([`ValidateInto`]); returns both (the typed config is kept
    /// to compare on reload and to show). Errors as for [`Config::decode`].
    pub fn decode_validated<T: DeserializeOwned + ValidateInto>(
        &self,
        raw: &RawComponent,
    ) -> Result<(T, T::Validated), ConfigErrors> {
        let value: T = decode_value(&self.source, &self.positions, &raw.body, &raw.path)?;
        match value.validate_into() {
            Ok(validated) => Ok((value, validated)),
            Err(problems) => Err(self.problems_at(raw, problems)),
        }
    }

    /// A component's validation problems as positioned errors below its path.
    fn problems_at(&self, raw: &RawComponent, problems: Vec<FieldError>) -> ConfigErrors {
        let errors = problems
            .into_iter()
            .map(|p| {
                let path = join_relative(&raw.path, &p.path);
                make_error(&self.source, &self.positions, At::Value, &path, p.message)
            })
            .collect();
        ConfigErrors::sorted(errors)
    }

    /// An error about a whole component (an unknown type, say), pointing at its key.
    pub fn error_at(&self, raw: &RawComponent, message: impl Into<String>) -> ConfigErrors {
        self.error_at_path(&raw.path, message).into()
    }

    /// An error about any key path in this config (`service.pipelines.traces`), positioned
    /// at the nearest written key and scrubbed of environment values like every other.
    pub fn error_at_path(&self, path: &str, message: impl Into<String>) -> ConfigError {
        make_error(&self.source, &self.positions, At::Key, path, message.into())
    }
}
