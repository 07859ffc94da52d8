//! Object keys: the `path_template` parser and the pure key builder.
//!
//! Keys are a pure function of the template, the variable values, the trace id and the trace
//! start (the "clock" is injected by passing the instant), so they are the same on every
//! replay of the same trace and can be tested without a store.

use std::fmt;

use time::OffsetDateTime;

/// A variable of `path_template`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Prefix,
    Date,
    Year,
    Month,
    Day,
    Hour,
    ApiKeyName,
}

/// The variable names accepted in `{...}`, in the order error messages list them.
pub const VARIABLES: &[&str] = &[
    "prefix",
    "date",
    "year",
    "month",
    "day",
    "hour",
    "apiKeyName",
];

impl Var {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "prefix" => Var::Prefix,
            "date" => Var::Date,
            "year" => Var::Year,
            "month" => Var::Month,
            "day" => Var::Day,
            "hour" => Var::Hour,
            "apiKeyName" => Var::ApiKeyName,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A parsed `path_template` such as `openrouter-traces/{date}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    parts: Vec<Part>,
}

/// Why a `path_template` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("path_template is empty: use e.g. openrouter-traces/{{date}}")]
    Empty,
    #[error("unknown variable {{{name}}}: the variables are {}", VARIABLES.iter().map(|v| format!("{{{v}}}")).collect::<Vec<_>>().join(", "))]
    UnknownVariable { name: String },
    #[error("unclosed '{{' at byte {at}: variables are written like {{date}}")]
    Unclosed { at: usize },
    #[error("'..' is not allowed in path_template (object keys never climb out of their folder)")]
    DotDot,
    #[error("control characters are not allowed in path_template")]
    ControlChar,
}

impl PathTemplate {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        if source.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        if source.chars().any(char::is_control) {
            return Err(TemplateError::ControlChar);
        }
        if source.split('/').any(|seg| seg.trim() == "..") {
            return Err(TemplateError::DotDot);
        }
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or(TemplateError::Unclosed { at: offset + open })?;
            let name = &rest[open + 1..open + close];
            let var = Var::parse(name).ok_or_else(|| TemplateError::UnknownVariable {
                name: name.to_string(),
            })?;
            parts.push(Part::Var(var));
            offset += open + close + 1;
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// Whether the template uses `{apiKeyName}` (keys then differ per ingest key).
    pub fn uses(&self, var: Var) -> bool {
        self.parts.contains(&Part::Var(var))
    }
}

impl Default for PathTemplate {
    fn default() -> Self {
        Self {
            parts: vec![
                Part::Literal("openrouter-traces/".into()),
                Part::Var(Var::Date),
            ],
        }
    }
}

/// Values for the non-time variables.
#[derive(Debug, Clone, Copy)]
pub struct KeyVars<'a> {
    /// The configured `prefix`.
    pub prefix: &'a str,
    /// The ingest key name (already resolved; `default` when unknown).
    pub api_key_name: &'a str,
}

/// Renders the template's folder part for the instant `at` (UTC), sanitised: no empty
/// segments, no `.`/`..` segments, no leading `/`, no control characters. A variable value
/// never introduces a new folder level (`/` inside a value becomes `_`).
pub fn render_prefix(template: &PathTemplate, vars: KeyVars<'_>, at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let mut out = String::new();
    for part in &template.parts {
        match part {
            Part::Literal(s) => out.push_str(s),
            Part::Var(v) => {
                let value = match v {
                    Var::Prefix => vars.prefix.to_string(),
                    Var::ApiKeyName => vars.api_key_name.to_string(),
                    Var::Date => format!(
                        "{:04}-{:02}-{:02}",
                        at.year(),
                        u8::from(at.month()),
                        at.day()
                    ),
                    Var::Year => format!("{:04}", at.year()),
                    Var::Month => format!("{:02}", u8::from(at.month())),
                    Var::Day => format!("{:02}", at.day()),
                    Var::Hour => format!("{:02}", at.hour()),
                };
                out.push_str(&sanitize_value(&value));
            }
        }
    }
    out.split('/')
        .map(|seg| seg.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|seg| !seg.is_empty() && seg != "." && seg != "..")
        .collect::<Vec<_>>()
        .join("/")
}

/// The object key of a trace: `<rendered template>/{traceId}-{unix seconds of start}{ext}`.
/// `ext` is `.json` or `.json.gz`.
pub fn object_key(
    template: &PathTemplate,
    vars: KeyVars<'_>,
    trace_id: &str,
    start: OffsetDateTime,
    ext: &str,
) -> ObjectKey {
    let folder = render_prefix(template, vars, start);
    let mut stem = sanitize_value(trace_id);
    if stem.is_empty() || stem == "." {
        stem = "trace".into();
    }
    stem.push('-');
    stem.push_str(&start.unix_timestamp().to_string());
    ObjectKey {
        folder,
        stem,
        ext: ext.to_string(),
    }
}

/// A key split so that a clash can get a distinct name (`-2`, `-3`, ...) before the extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub folder: String,
    pub stem: String,
    pub ext: String,
}

impl ObjectKey {
    /// The key for attempt `n` (1 = the plain name, 2 = `-2`, ...).
    pub fn nth(&self, n: u32) -> String {
        let name = if n <= 1 {
            format!("{}{}", self.stem, self.ext)
        } else {
            format!("{}-{n}{}", self.stem, self.ext)
        };
        if self.folder.is_empty() {
            name
        } else {
            format!("{}/{name}", self.folder)
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.nth(1))
    }
}

/// Makes one value safe inside a key segment: control characters dropped, `/` and `\`
/// replaced by `_`, `..` replaced by `_`, surrounding whitespace trimmed.
pub fn sanitize_value(value: &str) -> String {
    let cleaned: String = value
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect();
    let mut out = cleaned.replace("..", "_");
    while out.contains("..") {
        out = out.replace("..", "_");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const VARS: KeyVars<'static> = KeyVars {
        prefix: "production",
        api_key_name: "team-a",
    };

    fn key(template: &str) -> String {
        let t = PathTemplate::parse(template).unwrap();
        object_key(&t, VARS, "abc123", datetime!(2024-01-15 09:40 UTC), ".json").nth(1)
    }

    #[test]
    fn renders_every_variable() {
        assert_eq!(
            key("openrouter-traces/{date}"),
            "openrouter-traces/2024-01-15/abc123-1705311600.json"
        );
        assert_eq!(
            key("traces/{year}/{month}/{day}/{hour}"),
            "traces/2024/01/15/09/abc123-1705311600.json"
        );
        assert_eq!(
            key("{prefix}/{apiKeyName}/{date}"),
            "production/team-a/2024-01-15/abc123-1705311600.json"
        );
    }

    #[test]
    fn sanitises_values_and_segments() {
        let t = PathTemplate::parse("/{prefix}//{apiKeyName}/").unwrap();
        let vars = KeyVars {
            prefix: "../etc",
            api_key_name: "a/b\u{0}c",
        };
        let k = object_key(&t, vars, "x/../y", datetime!(2024-01-15 0:00 UTC), ".json");
        assert_eq!(k.nth(1), "__etc/a_bc/x___y-1705276800.json");
        assert_eq!(k.nth(2), "__etc/a_bc/x___y-1705276800-2.json");
        let empty = KeyVars {
            prefix: "",
            api_key_name: "default",
        };
        let t = PathTemplate::parse("{prefix}/{date}").unwrap();
        assert_eq!(
            object_key(&t, empty, "t", datetime!(2024-01-15 0:00 UTC), ".json.gz").nth(1),
            "2024-01-15/t-1705276800.json.gz"
        );
    }

    #[test]
    fn rejects_bad_templates() {
        assert_eq!(PathTemplate::parse(" "), Err(TemplateError::Empty));
        assert_eq!(
            PathTemplate::parse("t/{week}"),
            Err(TemplateError::UnknownVariable {
                name: "week".into()
            })
        );
        assert_eq!(
            PathTemplate::parse("t/{date"),
            Err(TemplateError::Unclosed { at: 2 })
        );
        assert_eq!(PathTemplate::parse("a/../b"), Err(TemplateError::DotDot));
        assert_eq!(
            PathTemplate::parse("openrouter-traces/{date}").unwrap(),
            PathTemplate::default()
        );
    }
}
