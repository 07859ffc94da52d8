//! Component ids: `type` or `type/name`, as in the OpenTelemetry Collector.

use std::fmt;
use std::sync::Arc;

/// The kind of a component; part of every error message about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    Receiver,
    Processor,
    Exporter,
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
        })
    }
}

/// A validated `type[/name]` id. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId(Arc<str>);

/// Why a string is not a component id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("component id is empty")]
    Empty,
    #[error("component id {0:?} has an empty type before '/'")]
    EmptyType(String),
    #[error("component id {0:?} has an empty name after '/'")]
    EmptyName(String),
    #[error("component id {0:?} may contain only letters, digits, '_', '-', '.' and one '/'")]
    BadChar(String),
}

impl ComponentId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        let (ty, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        if ty.is_empty() {
            return Err(IdError::EmptyType(s.to_string()));
        }
        if name == Some("") {
            return Err(IdError::EmptyName(s.to_string()));
        }
        let ok = |part: &str| {
            part.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if !ok(ty) || !name.is_none_or(ok) {
            return Err(IdError::BadChar(s.to_string()));
        }
        Ok(Self(Arc::from(s)))
    }

    /// The component type (`otlp` in `otlp/axiom`).
    pub fn type_name(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(t, _)| t)
    }

    /// The optional name (`axiom` in `otlp/axiom`).
    pub fn name(&self) -> Option<&str> {
        self.0.split_once('/').map(|(_, n)| n)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_type_and_name() {
        let id = ComponentId::parse("otlp/axiom").unwrap();
        assert_eq!(id.type_name(), "otlp");
        assert_eq!(id.name(), Some("axiom"));
        assert_eq!(ComponentId::parse("s3").unwrap().name(), None);
        assert!(matches!(
            ComponentId::parse("otlp/"),
            Err(IdError::EmptyName(_))
        ));
        assert!(matches!(
            ComponentId::parse("/x"),
            Err(IdError::EmptyType(_))
        ));
        assert!(matches!(
            ComponentId::parse("a b"),
            Err(IdError::BadChar(_))
        ));
        assert!(matches!(
            ComponentId::parse("a/b/c"),
            Err(IdError::BadChar(_))
        ));
    }
}
