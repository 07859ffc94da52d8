//! Key paths (`service.pipelines.traces/axiom.exporters[0]`) and the index from each path to
//! where it was written, so that every error, including those found after the YAML became a
//! plain `serde_yaml::Value`, can name a line and column.

use std::collections::HashMap;

/// A 1-based line and column in the config text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// `base.key`, or `key` at the root.
pub(crate) fn join_key(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

/// `base[index]`.
pub(crate) fn join_index(base: &str, index: usize) -> String {
    format!("{base}[{index}]")
}

/// The path one level up: `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``.
///
/// Keys may contain `/` (component ids) but not `.`; a key holding a `.` still resolves to
/// some ancestor, which is good enough for a position.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        if let Some(open) = path.rfind('[') {
            return Some(&path[..open]);
        }
    }
    Some(path.rfind('.').map_or("", |dot| &path[..dot]))
}

/// One environment reference whose variable was set, kept so error messages can avoid
/// echoing the value (it may be a secret).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct EnvUse {
    pub name: String,
    pub value: String,
}

/// Shows the name only: a `{:?}` of a config must not print secrets from the environment.
impl std::fmt::Debug for EnvUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${{env:{}}}", self.name)
    }
}

/// What the index knows about one path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Where the key was written (absent for sequence items and the root).
    pub key: Option<Pos>,
    /// Where the value starts.
    pub value: Option<Pos>,
    /// Set variables expanded into this scalar.
    pub env: Vec<EnvUse>,
    /// The scalar was a plain (unquoted) `${env:X}` and nothing else, so its expansion was
    /// re-read as a YAML scalar and may have become a number or a boolean.
    pub whole_plain_ref: bool,
}

/// Path -> position and provenance, for every key and value in one config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    entries: HashMap<String, Entry>,
}

impl Positions {
    pub(crate) fn entry_mut(&mut self, path: &str) -> &mut Entry {
        self.entries.entry(path.to_string()).or_default()
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// The value's position at `path`, or the nearest ancestor's when the path was never
    /// written (a missing field, an index past the end).
    pub fn value_pos(&self, path: &str) -> Option<Pos> {
        self.find(path, |e| e.value.or(e.key))
    }

    /// The key's position at `path` (for unknown or duplicate keys), falling back like
    /// [`Positions::value_pos`].
    pub fn key_pos(&self, path: &str) -> Option<Pos> {
        self.find(path, |e| e.key.or(e.value))
    }

    fn find(&self, path: &str, pick: impl Fn(&Entry) -> Option<Pos>) -> Option<Pos> {
        let mut current = Some(path);
        while let Some(p) = current {
            if let Some(pos) = self.entries.get(p).and_then(&pick) {
                return Some(pos);
            }
            current = parent(p);
        }
        None
    }

    /// Every set variable expanded at `path`, under it, or above it, plus long values
    /// (8 characters or more, likely secrets) expanded anywhere: the values a message
    /// about `path` must not show.
    pub(crate) fn secrets_near(&self, path: &str) -> Vec<&EnvUse> {
        let mut out: Vec<&EnvUse> = Vec::new();
        for (p, entry) in &self.entries {
            let related = is_prefix_path(p, path) || is_prefix_path(path, p);
            for env in &entry.env {
                if (related || env.value.chars().count() >= 8)
                    && !out.iter().any(|o| o.value == env.value)
                {
                    out.push(env);
                }
            }
        }
        // Longest first, so a value that contains another is replaced whole.
        out.sort_by_key(|e| std::cmp::Reverse(e.value.len()));
        out
    }
}

/// Whether `prefix` is `path` or one of its ancestors.
fn is_prefix_path(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), Some(b'.' | b'[')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_prefixes() {
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a.otlp/x"), Some("a"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
        assert!(is_prefix_path("a.b", "a.b[0].c"));
        assert!(!is_prefix_path("a.b", "a.bc"));
    }

    #[test]
    fn falls_back_to_the_nearest_written_ancestor() {
        let mut p = Positions::default();
        p.entry_mut("a").key = Some(Pos { line: 1, column: 1 });
        p.entry_mut("a").value = Some(Pos { line: 2, column: 3 });
        assert_eq!(
            p.value_pos("a.missing[3]"),
            Some(Pos { line: 2, column: 3 })
        );
        assert_eq!(p.key_pos("a"), Some(Pos { line: 1, column: 1 }));
        assert_eq!(p.value_pos("b"), None);
    }
}
