//! The compiled rules of the `filter` processor, and how one rule is evaluated on the
//! values a request has for its field.
//!
//! A field may have several values in one request (a model per generation, a user id on
//! several spans, an attribute on several spans, each content attribute's text). A positive
//! operator (`equals`, `contains`, `regex`, `starts_with`, `ends_with`, `gt`, `lt`, `gte`,
//! `lte`) holds when any value satisfies it; `not_equals` and `not_contains` hold when
//! none satisfies their positive form. A request without the field satisfies no rule but
//! `not_exists`.

use std::borrow::Cow;

use regex::Regex;
use tracecast_core::proto::common::v1::any_value::Value;
use tracecast_core::proto::common::v1::AnyValue;

/// A request field a rule reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Model,
    Provider,
    SessionId,
    UserId,
    ApiKeyName,
    FinishReason,
    Input,
    Output,
    TotalCost,
    TotalTokens,
    PromptTokens,
    CompletionTokens,
    /// Any span (or resource) attribute.
    Attribute(String),
}

/// A rule's comparison value for `equals` / `not_equals`.
#[derive(Debug, Clone)]
pub enum Scalar {
    Text(String),
    Number(f64),
    Bool(bool),
}

/// An operator with its (type-checked, compiled) value.
#[derive(Debug, Clone)]
pub enum Op {
    Equals(Scalar),
    NotEquals(Scalar),
    Contains(String),
    NotContains(String),
    Regex(Regex),
    StartsWith(String),
    EndsWith(String),
    Gt(f64),
    Lt(f64),
    Gte(f64),
    Lte(f64),
    Exists,
    NotExists,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub field: Field,
    pub op: Op,
}

/// `and` (every rule) or `or` (`any`).
#[derive(Debug, Clone)]
pub struct Group {
    pub any: bool,
    pub rules: Vec<Rule>,
}

/// A validated `filter` config: what [`super::FilterProcessor`] is built from.
#[derive(Debug, Clone)]
pub struct FilterRules {
    pub include: Vec<Group>,
    pub exclude: Vec<Group>,
    pub api_key_name_attribute: Option<String>,
}

/// One value of a field in a request.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    Text(Cow<'a, str>),
    Number(f64),
    Bool(bool),
    /// A value that is present but no scalar: bytes, an empty value, a map or list nested
    /// deeper than [`crate::attrs::MAX_FLATTEN_DEPTH`]. Only `exists` (and the negative
    /// operators) see it.
    Other,
}

impl Item<'_> {
    fn text(&self) -> Cow<'_, str> {
        match self {
            Item::Text(s) => Cow::Borrowed(s),
            Item::Number(n) => Cow::Owned(number_text(*n)),
            Item::Bool(b) => Cow::Owned(b.to_string()),
            Item::Other => Cow::Borrowed(""),
        }
    }

    /// As a number: numbers, and strings that read as finite numbers.
    fn number(&self) -> Option<f64> {
        match self {
            Item::Number(n) => Some(*n),
            Item::Text(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
            Item::Bool(_) | Item::Other => None,
        }
    }

    fn equals(&self, scalar: &Scalar) -> bool {
        match (self, scalar) {
            (Item::Other, _) => false,
            (Item::Bool(a), Scalar::Bool(b)) => a == b,
            (_, Scalar::Number(n)) => self.number() == Some(*n),
            (_, Scalar::Text(s)) => self.text() == *s,
            (_, Scalar::Bool(b)) => self.text() == b.to_string(),
        }
    }
}

/// Integral numbers print without a fraction (`200`, not `200.0`), as users write them.
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Pushes the scalar leaves of an OTLP value (array elements and map values included).
/// A value with no scalar in it (an empty list or map) still counts as present.
pub fn push_items<'a>(v: &'a AnyValue, out: &mut Vec<Item<'a>>) {
    let before = out.len();
    push_at(v, 0, out);
    if out.len() == before {
        out.push(Item::Other);
    }
}

fn push_at<'a>(v: &'a AnyValue, depth: usize, out: &mut Vec<Item<'a>>) {
    match &v.value {
        Some(Value::StringValue(s)) => out.push(Item::Text(Cow::Borrowed(s))),
        Some(Value::IntValue(i)) => out.push(Item::Number(*i as f64)),
        Some(Value::DoubleValue(d)) => out.push(Item::Number(*d)),
        Some(Value::BoolValue(b)) => out.push(Item::Bool(*b)),
        Some(Value::ArrayValue(a)) if depth < crate::attrs::MAX_FLATTEN_DEPTH => {
            for item in &a.values {
                push_at(item, depth + 1, out);
            }
        }
        Some(Value::KvlistValue(l)) if depth < crate::attrs::MAX_FLATTEN_DEPTH => {
            for kv in &l.values {
                if let Some(item) = &kv.value {
                    push_at(item, depth + 1, out);
                }
            }
        }
        _ => out.push(Item::Other),
    }
}

impl Op {
    /// Whether the rule holds for a field with these values (empty: the field is absent).
    pub fn holds(&self, items: &[Item<'_>]) -> bool {
        match self {
            Op::Exists => !items.is_empty(),
            Op::NotExists => items.is_empty(),
            _ if items.is_empty() => false,
            Op::NotEquals(s) => !items.iter().any(|i| i.equals(s)),
            Op::NotContains(s) => !items.iter().any(|i| i.text().contains(s.as_str())),
            _ => items.iter().any(|i| self.holds_for(i)),
        }
    }

    fn holds_for(&self, item: &Item<'_>) -> bool {
        let num = |f: &dyn Fn(f64) -> bool| item.number().is_some_and(f);
        if matches!(item, Item::Other) {
            return false;
        }
        match self {
            Op::Equals(s) => item.equals(s),
            Op::Contains(s) => item.text().contains(s.as_str()),
            Op::Regex(re) => re.is_match(&item.text()),
            Op::StartsWith(s) => item.text().starts_with(s.as_str()),
            Op::EndsWith(s) => item.text().ends_with(s.as_str()),
            Op::Gt(n) => num(&|v| v > *n),
            Op::Lt(n) => num(&|v| v < *n),
            Op::Gte(n) => num(&|v| v >= *n),
            Op::Lte(n) => num(&|v| v <= *n),
            Op::NotEquals(_) | Op::NotContains(_) | Op::Exists | Op::NotExists => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_written() {
        assert_eq!(number_text(200.0), "200");
        assert_eq!(number_text(0.5), "0.5");
        assert!(Item::Number(200.0).equals(&Scalar::Text("200".into())));
        assert!(Item::Text("0.50".into()).equals(&Scalar::Number(0.5)));
    }
}
