//! Turns the parsed tree ([`crate::yaml`]) into a `serde_yaml::Value` with every
//! `${env:...}` expanded, while recording each path's position ([`Positions`]) and
//! reporting duplicate keys, unsupported tags and unset variables, all of them at once.

use saphyr_parser::{ScalarStyle, Tag};
use serde_yaml::{Mapping, Number, Value};

use crate::env;
use crate::error::ConfigError;
use crate::positions::{join_index, join_key, Pos, Positions};
use crate::yaml::{Node, NodeKind};

/// An expanded document and what was found on the way.
pub(crate) struct Document {
    pub root: Value,
    pub positions: Positions,
    pub errors: Vec<ConfigError>,
}

pub(crate) fn build(
    file: &str,
    root: Option<&Node>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Document {
    let mut b = Builder {
        file,
        env,
        positions: Positions::default(),
        errors: Vec::new(),
    };
    let root = match root {
        Some(node) => {
            b.positions.entry_mut("").value = Some(node.pos);
            b.value(node, "")
        }
        None => Value::Null,
    };
    Document {
        root,
        positions: b.positions,
        errors: b.errors,
    }
}

struct Builder<'a> {
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    positions: Positions,
    errors: Vec<ConfigError>,
}

impl Builder<'_> {
    fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            line: Some(pos.line),
            column: Some(pos.column),
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn value(&mut self, node: &Node, path: &str) -> Value {
        match &node.kind {
            NodeKind::Scalar { text, style, tag } => {
                self.scalar(node.pos, path, text, *style, tag.as_ref())
            }
            NodeKind::Seq { items, tag } => {
                self.check_collection_tag(node.pos, path, tag.as_ref(), "seq");
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let item_path = join_index(path, i);
                    self.positions.entry_mut(&item_path).value = Some(item.pos);
                    out.push(self.value(item, &item_path));
                }
                Value::Sequence(out)
            }
            NodeKind::Map { entries, tag } => {
                self.check_collection_tag(node.pos, path, tag.as_ref(), "map");
                let mut out = Mapping::with_capacity(entries.len());
                for (key, value) in entries {
                    let NodeKind::Scalar { text: key_text, .. } = &key.kind else {
                        self.error(
                            key.pos,
                            path,
                            "keys must be plain strings, not lists or mappings",
                        );
                        continue;
                    };
                    let entry_path = join_key(path, key_text);
                    let key_value = Value::String(key_text.clone());
                    if out.contains_key(&key_value) {
                        let first = self
                            .positions
                            .get(&entry_path)
                            .and_then(|e| e.key)
                            .map_or(String::new(), |p| {
                                format!(" (first defined at line {})", p.line)
                            });
                        self.error(
                            key.pos,
                            &entry_path,
                            format!("duplicate key `{key_text}`{first}; keep one"),
                        );
                        continue;
                    }
                    // An empty value (`otlp:`) points at whatever follows; the key is the better place.
                    let value_pos = if is_empty_scalar(value) {
                        key.pos
                    } else {
                        value.pos
                    };
                    let entry = self.positions.entry_mut(&entry_path);
                    entry.key = Some(key.pos);
                    entry.value = Some(value_pos);
                    let v = self.value(value, &entry_path);
                    out.insert(key_value, v);
                }
                Value::Mapping(out)
            }
        }
    }

    fn check_collection_tag(&mut self, pos: Pos, path: &str, tag: Option<&Tag>, expected: &str) {
        if let Some(tag) = tag {
            if !(tag.is_yaml_core_schema() && tag.suffix == expected) {
                self.error(
                    pos,
                    path,
                    format!("YAML tag `{tag}` is not supported here; remove it"),
                );
            }
        }
    }

    fn scalar(
        &mut self,
        pos: Pos,
        path: &str,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
    ) -> Value {
        let plain = style == ScalarStyle::Plain;
        let expansion = if text.contains('$') {
            match env::expand(text, self.env) {
                Ok(e) => Some(e),
                Err(messages) => {
                    for m in messages {
                        self.error(pos, path, m);
                    }
                    return Value::Null;
                }
            }
        } else {
            None
        };
        let whole_plain_ref =
            plain && tag.is_none() && expansion.as_ref().is_some_and(|e| e.whole_ref);
        let expanded = match expansion {
            Some(e) => {
                let entry = self.positions.entry_mut(path);
                entry.env = e.used;
                entry.whole_plain_ref = whole_plain_ref && !entry.env.is_empty();
                Some(e.text)
            }
            None => None,
        };
        let text = expanded.as_deref().unwrap_or(text);
        let Some(tag) = tag else {
            return if !plain || (expanded.is_some() && !whole_plain_ref) {
                Value::String(text.to_string())
            } else if whole_plain_ref && text.is_empty() {
                // An empty variable means an empty string, not "no value".
                Value::String(String::new())
            } else {
                resolve_plain(text)
            };
        };
        if !tag.is_yaml_core_schema() {
            self.error(
                pos,
                path,
                format!("YAML tag `{tag}` is not supported; remove it"),
            );
            return Value::Null;
        }
        let resolved = resolve_plain(text);
        let fits = match tag.suffix.as_str() {
            "str" => return Value::String(text.to_string()),
            "null" => resolved.is_null(),
            "bool" => resolved.is_bool(),
            "int" => resolved.is_i64() || resolved.is_u64(),
            "float" => resolved.is_number(),
            _ => false,
        };
        if !fits {
            self.error(
                pos,
                path,
                format!("the value does not match its YAML tag `{tag}`"),
            );
            return Value::Null;
        }
        match (tag.suffix.as_str(), resolved) {
            ("float", Value::Number(n)) => n
                .as_f64()
                .map_or(Value::Null, |f| Value::Number(Number::from(f))),
            (_, v) => v,
        }
    }
}

fn is_empty_scalar(node: &Node) -> bool {
    matches!(&node.kind, NodeKind::Scalar { text, style: ScalarStyle::Plain, tag: None } if text.is_empty())
}

/// YAML 1.2 core-schema resolution of a plain scalar, matching serde_yaml's: null, booleans,
/// integers (decimal, `0x`, `0o`, `0b`), finite floats and `.inf`/`.nan`, else a string.
pub(crate) fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Number(f64::INFINITY.into())
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Number(f64::NEG_INFINITY.into()),
        ".nan" | ".NaN" | ".NAN" => return Value::Number(f64::NAN.into()),
        _ => {}
    }
    if let Some(n) = parse_int(text) {
        return Value::Number(n);
    }
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let leading_zero =
        digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit());
    let looks_numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if looks_numeric && !leading_zero {
        if let Ok(f) = text.parse::<f64>() {
            if f.is_finite() {
                return Value::Number(f.into());
            }
        }
    }
    Value::String(text.to_string())
}

fn parse_int(text: &str) -> Option<Number> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(d) = unsigned.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = unsigned.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = unsigned.strip_prefix("0b") {
        (2, d)
    } else {
        if unsigned.len() > 1 && unsigned.starts_with('0') {
            return None; // `0123` stays a string, as in serde_yaml
        }
        (10, unsigned)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        if magnitude == 0 {
            return Some(Number::from(0i64));
        }
        let n = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Number::from(n))
    } else {
        Some(Number::from(magnitude))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_serde_yaml() {
        for text in [
            "",
            "~",
            "null",
            "true",
            "False",
            "0",
            "-12",
            "+7",
            "0x1F",
            "0o17",
            "0b101",
            "1.5",
            "-2e3",
            ".inf",
            "0123",
            "1_000",
            "10s",
            "16MiB",
            "127.0.0.1:4318",
            "-0x10",
            "nan",
            "inf",
            "-9223372036854775808",
            ".5",
            "1.",
        ] {
            let expected: Value = serde_yaml::from_str(text).unwrap();
            assert_eq!(resolve_plain(text), expected, "{text:?}");
        }
        assert!(matches!(resolve_plain(".nan"), Value::Number(n) if n.as_f64().unwrap().is_nan()));
    }
}
