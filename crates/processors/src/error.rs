//! Why a processor could not be built.

use tracecast_config::FieldError;

/// A processor's config was not usable. The registry validates configs before building, so
/// seeing this at build time means a config skipped validation; the message still says
/// exactly what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The config failed [`tracecast_config::Validate`].
    #[error("processor {component}: invalid config: {}", describe(.problems))]
    InvalidConfig {
        component: String,
        problems: Vec<FieldError>,
    },
    /// A regular expression in the config does not compile.
    #[error(
        "processor {component}: {path}: {pattern:?} is not a valid regular expression: {source}"
    )]
    BadPattern {
        component: String,
        path: String,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
}

fn describe(problems: &[FieldError]) -> String {
    problems
        .iter()
        .map(|p| {
            if p.path.is_empty() {
                p.message.clone()
            } else {
                format!("{}: {}", p.path, p.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs `validate` and turns problems into [`ProcessorError::InvalidConfig`].
pub(crate) fn check(
    component: &tracecast_core::ComponentId,
    cfg: &impl tracecast_config::Validate,
) -> Result<(), ProcessorError> {
    let problems = cfg.validate();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ProcessorError::InvalidConfig {
            component: component.to_string(),
            problems,
        })
    }
}
