//! The contract every component config implements.

/// One problem in a component's config, relative to the component: `path` is the key path
/// inside the component (`headers.Authorization`, `api_keys[1].token`; empty for the whole
/// component). The loader prefixes the component's own path and adds file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Pure validation (no I/O): returns every problem at once. I/O checks belong to the
/// connection test.
pub trait Validate {
    fn validate(&self) -> Vec<FieldError>;
}
