//! The contract every component config implements: [`Validate`] lists its problems, and
//! [`ValidateInto`] turns a valid config into the value its component is built from.

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

/// Validation of a config with nothing to parse: returns every problem at once. Such a
/// config is its own validated value (see the blanket [`ValidateInto`] impl).
pub trait Validate {
    fn validate(&self) -> Vec<FieldError>;
}

/// Validation that yields the value a component is built from: URLs, headers, regular
/// expressions, templates and TLS files parsed once, here, so that constructors take
/// [`ValidateInto::Validated`] and cannot fail on config (`tracecast validate` reports
/// what they would have). Configs with something to parse implement this trait instead of
/// [`Validate`]; the registry calls it once per component and keeps the result.
///
/// Validation is pure except for reading the files a config names (TLS certificates and
/// keys): an unreadable or malformed file is a config problem with a key path, not a
/// failure at start.
pub trait ValidateInto {
    /// The config with every value parsed.
    type Validated;

    /// The validated value, or every problem at once (paths relative to the component).
    fn validate_into(&self) -> Result<Self::Validated, Vec<FieldError>>;

    /// Every problem (empty when valid); for tests and callers that only check.
    fn problems(&self) -> Vec<FieldError> {
        self.validate_into().err().unwrap_or_default()
    }
}

/// A [`Validate`] config with nothing to parse is its own validated value.
impl<C: Validate + Clone> ValidateInto for C {
    type Validated = C;

    fn validate_into(&self) -> Result<C, Vec<FieldError>> {
        let problems = self.validate();
        if problems.is_empty() {
            Ok(self.clone())
        } else {
            Err(problems)
        }
    }
}
