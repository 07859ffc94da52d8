//! `${env:NAME}` and `${env:NAME:-default}` expansion inside one scalar, as the
//! OpenTelemetry Collector does it: `$$` is a literal `$`, a `$` before anything else stays as
//! written, keys are never expanded (the caller only passes values).

use crate::positions::EnvUse;

/// The result of expanding one scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expansion {
    pub text: String,
    /// The scalar was exactly one `${env:...}` reference and nothing else.
    pub whole_ref: bool,
    /// Set variables whose values went into `text` (not defaults: those are file text).
    pub used: Vec<EnvUse>,
}

/// Expands every reference in `text`; returns every problem in it (unset variables, bad
/// syntax) rather than stopping at the first.
pub(crate) fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Expansion, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut used = Vec::new();
    let mut errors = Vec::new();
    let mut refs = 0usize;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_and_tail) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = body_and_tail.find('}') else {
            errors.push(format!(
                "unclosed reference `${{{body_and_tail}`: write ${{env:NAME}}, or $$ for a literal $"
            ));
            rest = "";
            break;
        };
        refs += 1;
        let body = &body_and_tail[..close];
        rest = &body_and_tail[close + 1..];
        match resolve(body, env) {
            Ok((value, from_env)) => {
                if let Some(name) = from_env {
                    used.push(EnvUse {
                        name,
                        value: value.clone(),
                    });
                }
                out.push_str(&value);
            }
            Err(e) => errors.push(e),
        }
    }
    out.push_str(rest);
    if !errors.is_empty() {
        return Err(errors);
    }
    let whole_ref = refs == 1
        && text.starts_with("${")
        && text.ends_with('}')
        && text[2..].find('}') == Some(text.len() - 3);
    Ok(Expansion {
        text: out,
        whole_ref,
        used,
    })
}

/// Resolves the inside of one `${...}`: the text, and the variable name when the text came
/// from the environment.
fn resolve(
    body: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Option<String>), String> {
    let Some(spec) = body.strip_prefix("env:") else {
        return Err(format!(
            "unsupported reference `${{{body}}}`: only ${{env:NAME}} and ${{env:NAME:-default}} \
             are expanded; write $$ for a literal $"
        ));
    };
    let (name, default) = match spec.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (spec, None),
    };
    if !valid_name(name) {
        return Err(format!(
            "invalid environment variable name {name:?} in `${{{body}}}`: use letters, digits \
             and '_', not starting with a digit"
        ));
    }
    match (env(name), default) {
        (Some(value), _) => Ok((value, Some(name.to_string()))),
        (None, Some(d)) => Ok((d.to_string(), None)),
        (None, None) => Err(format!(
            "environment variable {name} is not set; set it, or give a default with \
             ${{env:{name}:-value}}"
        )),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4318".into()),
            "TOKEN" => Some("s3cr3t".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> Expansion {
        expand(text, &env).unwrap()
    }

    #[test]
    fn expands_whole_and_embedded_references() {
        let e = ok("${env:PORT}");
        assert_eq!(e.text, "4318");
        assert!(e.whole_ref);
        assert_eq!(e.used[0].name, "PORT");
        let e = ok("Bearer ${env:TOKEN}");
        assert_eq!(e.text, "Bearer s3cr3t");
        assert!(!e.whole_ref);
        assert!(!ok("${env:PORT}${env:PORT}").whole_ref);
    }

    #[test]
    fn defaults_escapes_and_lone_dollars() {
        let e = ok("${env:MISSING:-10s}");
        assert_eq!(e.text, "10s");
        assert!(e.whole_ref);
        assert!(e.used.is_empty());
        assert_eq!(ok("${env:PORT:-1}").text, "4318");
        assert_eq!(ok("${env:MISSING:-}").text, "");
        assert_eq!(ok("a$$b $$${env:PORT}").text, "a$b $4318");
        assert_eq!(ok("pa$word $").text, "pa$word $");
        assert_eq!(ok("$${env:PORT}").text, "${env:PORT}");
    }

    #[test]
    fn reports_every_problem() {
        let errs = expand("${env:A} ${env:B} ${HOME} ${env:1X}", &env).unwrap_err();
        assert_eq!(errs.len(), 4);
        assert_eq!(
            errs[0],
            "environment variable A is not set; set it, or give a default with ${env:A:-value}"
        );
        assert!(errs[2].starts_with("unsupported reference `${HOME}`"));
        assert!(errs[3].starts_with("invalid environment variable name \"1X\""));
        assert!(expand("${env:A", &env).unwrap_err()[0].starts_with("unclosed reference"));
    }
}
