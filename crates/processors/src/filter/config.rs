//! Config of the `filter` processor, and its validation into [`FilterRules`].
//!
//! `field`, `operator` and `logic` are read as plain strings and checked here, not by
//! serde, so that every bad rule of a file is reported at once with its key path
//! (`include[0].rules[2].operator`), not only the first.

use regex::Regex;
use serde::Deserialize;
use serde_json::Value as Json;
use tracecast_config::{FieldError, ValidateInto};

use super::rules::{Field, FilterRules, Group, Op, Rule, Scalar};

/// Which requests a destination receives. A request (the spans of one trace id in one
/// received batch) is kept when it matches any `include` group (or there is none) and no
/// `exclude` group.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterProcessorConfig {
    /// Groups of which at least one must match (none: every request).
    pub include: Vec<RuleGroupConfig>,
    /// Groups of which none may match.
    pub exclude: Vec<RuleGroupConfig>,
    /// Span or resource attribute read as `api_key_name` when the receiver did not
    /// authenticate the request with a named ingest key (as the S3 exporter's option of the
    /// same name). Unset: such requests have no `api_key_name`.
    pub api_key_name_attribute: Option<String>,
}

/// `{logic: and|or, rules: [...]}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleGroupConfig {
    /// `and` (every rule must hold; the default) or `or` (any rule).
    #[serde(default = "and")]
    pub logic: String,
    /// At least one rule.
    pub rules: Vec<RuleConfig>,
}

fn and() -> String {
    "and".to_string()
}

/// `{field, operator, value}`, or `{attribute: <key>, operator, value}` for any span
/// attribute.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// One of the request fields ([`FIELDS`]).
    pub field: Option<String>,
    /// A span (or resource) attribute key, instead of `field`.
    pub attribute: Option<String>,
    /// One of [`OPERATORS`].
    pub operator: String,
    /// What the field is compared with: a string, a number (`gt`, `lt`, `gte`, `lte`), a
    /// regular expression (`regex`); none for `exists` / `not_exists`.
    pub value: Option<Json>,
}

/// The request fields, as the gateway names them.
pub const FIELDS: &[(&str, Field)] = &[
    ("model", Field::Model),
    ("provider", Field::Provider),
    ("session_id", Field::SessionId),
    ("user_id", Field::UserId),
    ("api_key_name", Field::ApiKeyName),
    ("finish_reason", Field::FinishReason),
    ("input", Field::Input),
    ("output", Field::Output),
    ("total_cost", Field::TotalCost),
    ("total_tokens", Field::TotalTokens),
    ("prompt_tokens", Field::PromptTokens),
    ("completion_tokens", Field::CompletionTokens),
];

/// The operators, as the gateway names them.
pub const OPERATORS: &[&str] = &[
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "regex",
    "starts_with",
    "ends_with",
    "gt",
    "lt",
    "gte",
    "lte",
    "exists",
    "not_exists",
];

fn names<T>(list: &[(&str, T)]) -> String {
    list.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// How a value is described in an error.
fn describe(v: &Json) -> String {
    match v {
        Json::String(s) => format!("the string {s:?}"),
        Json::Number(n) => format!("the number {n}"),
        Json::Bool(b) => format!("the boolean {b}"),
        Json::Null => "null".to_string(),
        Json::Array(_) => "a list".to_string(),
        Json::Object(_) => "a map".to_string(),
    }
}

/// A regex error's own words, on one line (the library's message draws the pattern with a
/// caret over several lines).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default().trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

impl ValidateInto for FilterProcessorConfig {
    type Validated = FilterRules;

    /// Checks every group and rule and compiles them (regular expressions included), or
    /// returns every problem with its key path.
    fn validate_into(&self) -> Result<FilterRules, Vec<FieldError>> {
        let mut errors = Vec::new();
        let include = compile_groups("include", &self.include, &mut errors);
        let exclude = compile_groups("exclude", &self.exclude, &mut errors);
        if self
            .api_key_name_attribute
            .as_deref()
            .is_some_and(str::is_empty)
        {
            errors.push(FieldError::new(
                "api_key_name_attribute",
                "must not be empty (leave it out to read the ingest key name only)",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(FilterRules {
            include,
            exclude,
            api_key_name_attribute: self.api_key_name_attribute.clone(),
        })
    }
}

fn compile_groups(
    list: &str,
    groups: &[RuleGroupConfig],
    errors: &mut Vec<FieldError>,
) -> Vec<Group> {
    let mut out = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let path = format!("{list}[{g}]");
        let any = match group.logic.as_str() {
            "and" => false,
            "or" => true,
            other => {
                errors.push(FieldError::new(
                    format!("{path}.logic"),
                    format!("unknown logic {other:?}; use and (every rule) or or (any rule)"),
                ));
                false
            }
        };
        if group.rules.is_empty() {
            errors.push(FieldError::new(
                format!("{path}.rules"),
                "a group needs at least one rule",
            ));
        }
        let rules: Vec<Rule> = group
            .rules
            .iter()
            .enumerate()
            .filter_map(|(r, rule)| compile_rule(&format!("{path}.rules[{r}]"), rule, errors))
            .collect();
        out.push(Group { any, rules });
    }
    out
}

/// What a field holds, for type checks.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Number,
    /// Any attribute value: text or number.
    Any,
}

fn compile_rule(path: &str, rule: &RuleConfig, errors: &mut Vec<FieldError>) -> Option<Rule> {
    let before = errors.len();
    let at = |key: &str| format!("{path}.{key}");
    let field = match (&rule.field, &rule.attribute) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                path,
                "a rule names either field or attribute, not both",
            ));
            None
        }
        (None, None) => {
            errors.push(FieldError::new(
                path,
                format!(
                    "a rule needs field (one of {}) or attribute: <span attribute key>",
                    names(FIELDS)
                ),
            ));
            None
        }
        (None, Some(key)) if key.is_empty() => {
            errors.push(FieldError::new(at("attribute"), "must not be empty"));
            None
        }
        (None, Some(key)) => Some(Field::Attribute(key.clone())),
        (Some(name), None) => match FIELDS.iter().find(|(n, _)| n == name) {
            Some((_, f)) => Some(f.clone()),
            None => {
                errors.push(FieldError::new(
                    at("field"),
                    format!(
                        "unknown field {name:?}; known fields: {} (or attribute: <key> for any span attribute)",
                        names(FIELDS)
                    ),
                ));
                None
            }
        },
    };
    let operator = rule.operator.as_str();
    if !OPERATORS.contains(&operator) {
        errors.push(FieldError::new(
            at("operator"),
            format!(
                "unknown operator {operator:?}; known operators: {}",
                OPERATORS.join(", ")
            ),
        ));
    }
    let field = field?;
    if errors.len() > before {
        return None;
    }
    let kind = match field {
        Field::TotalCost | Field::TotalTokens | Field::PromptTokens | Field::CompletionTokens => {
            Kind::Number
        }
        Field::Attribute(_) => Kind::Any,
        _ => Kind::Text,
    };
    let name = match &field {
        Field::Attribute(key) => format!("attribute {key:?}"),
        other => FIELDS
            .iter()
            .find(|(_, f)| f == other)
            .map_or_else(String::new, |(n, _)| n.to_string()),
    };
    let value_path = at("value");
    let mut problem = |message: String| {
        errors.push(FieldError::new(value_path.clone(), message));
        None
    };
    let value = rule.value.as_ref().filter(|v| !v.is_null());
    let op = match operator {
        "exists" | "not_exists" => {
            if let Some(v) = value {
                return problem(format!(
                    "operator {operator} takes no value, got {}",
                    describe(v)
                ));
            }
            if operator == "exists" {
                Op::Exists
            } else {
                Op::NotExists
            }
        }
        _ => {
            let Some(v) = value else {
                return problem(format!("operator {operator} needs a value"));
            };
            match operator {
                "equals" | "not_equals" => {
                    let scalar = match (kind, v) {
                        (Kind::Number, Json::Number(n)) => match n.as_f64() {
                            Some(f) => Scalar::Number(f),
                            None => return problem(format!("{n} is not a usable number")),
                        },
                        (Kind::Number, other) => {
                            return problem(format!(
                                "{name} is a number: operator {operator} needs a number, got {}",
                                describe(other)
                            ))
                        }
                        (_, Json::String(s)) => Scalar::Text(s.clone()),
                        (_, Json::Number(n)) => match n.as_f64() {
                            Some(f) => Scalar::Number(f),
                            None => return problem(format!("{n} is not a usable number")),
                        },
                        (_, Json::Bool(b)) => Scalar::Bool(*b),
                        (_, other) => {
                            return problem(format!(
                                "operator {operator} needs a string or a number, got {}",
                                describe(other)
                            ))
                        }
                    };
                    if operator == "equals" {
                        Op::Equals(scalar)
                    } else {
                        Op::NotEquals(scalar)
                    }
                }
                "gt" | "lt" | "gte" | "lte" => {
                    if kind == Kind::Text {
                        return problem(format!(
                            "operator {operator} compares numbers, and {name} is text; numeric \
                             fields: total_cost, total_tokens, prompt_tokens, completion_tokens \
                             (or an attribute)"
                        ));
                    }
                    let n = match v {
                        Json::Number(n) => n.as_f64(),
                        _ => None,
                    };
                    let Some(n) = n else {
                        return problem(format!(
                            "operator {operator} needs a number, got {}",
                            describe(v)
                        ));
                    };
                    match operator {
                        "gt" => Op::Gt(n),
                        "lt" => Op::Lt(n),
                        "gte" => Op::Gte(n),
                        _ => Op::Lte(n),
                    }
                }
                _ => {
                    // contains, not_contains, regex, starts_with, ends_with: text operators.
                    if kind == Kind::Number {
                        return problem(format!(
                            "operator {operator} compares text, and {name} is a number; use \
                             equals, not_equals, gt, lt, gte or lte"
                        ));
                    }
                    let Json::String(s) = v else {
                        return problem(format!(
                            "operator {operator} needs a string, got {}",
                            describe(v)
                        ));
                    };
                    match operator {
                        "regex" => match Regex::new(s) {
                            Ok(re) => Op::Regex(re),
                            Err(e) => {
                                return problem(format!(
                                    "{s:?} is not a valid regular expression: {}",
                                    regex_reason(&e)
                                ))
                            }
                        },
                        "contains" => Op::Contains(s.clone()),
                        "not_contains" => Op::NotContains(s.clone()),
                        "starts_with" => Op::StartsWith(s.clone()),
                        _ => Op::EndsWith(s.clone()),
                    }
                }
            }
        }
    };
    Some(Rule { field, op })
}
