//! Object keys: the `path_template` parser and the pure key builder.
//!
//! Keys are a pure function of the template, the variable values, the trace id and the trace
//! start (the "clock" is injected by passing the instant), so they are the same on every
//! replay of the same trace and can be tested without a store.

use std::fmt;

use sha2::{Digest, Sha256};
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

/// S3's limit on an object key, in UTF-8 bytes (the local folder store uses the same keys).
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest file or folder name local file systems accept (ext4, XFS, APFS, NTFS: 255 bytes),
/// applied to every segment of a key on every store, so a bucket can be mirrored to disk.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Longest trace id kept whole in a file name. Longer ids are shortened (see [`shorten`]);
/// the full id stays inside the file (`id`). 200 leaves room in a 255-byte name for
/// `-{unix seconds}`, the clash suffix and the extension.
pub const MAX_ID_BYTES: usize = 200;
/// Folder segments are cut to this length when the whole key would not fit otherwise.
const SHORT_SEGMENT_BYTES: usize = 64;
/// Hex digits of the SHA-256 of the full value that end a shortened value (64 bits: two
/// different long values practically never share a name; create-only writes make even that
/// harmless).
pub const HASH_HEX_DIGITS: usize = 16;
/// Room kept in a file name for the clash suffix `-<n>` (`n` is a `u32`).
const SUFFIX_RESERVE: usize = 11;

/// Renders the template's folder part for the instant `at` (UTC), sanitised: no empty
/// segments, no `.`/`..` segments, no leading `/`, no control characters, no segment longer
/// than [`MAX_SEGMENT_BYTES`] (longer ones are shortened with [`shorten`]). A variable value
/// never introduces a new folder level (`/` inside a value becomes `_`).
pub fn render_prefix(template: &PathTemplate, vars: KeyVars<'_>, at: OffsetDateTime) -> String {
    render_segments(template, vars, at).join("/")
}

fn render_segments(template: &PathTemplate, vars: KeyVars<'_>, at: OffsetDateTime) -> Vec<String> {
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
        .map(|seg| shorten(&seg, &seg, MAX_SEGMENT_BYTES))
        .collect()
}

/// The object key of a trace: `<rendered template>/{traceId}-{unix seconds of start}{ext}`,
/// at most [`MAX_KEY_BYTES`] long. `ext` is `.json` or `.json.gz`.
pub fn object_key(
    template: &PathTemplate,
    vars: KeyVars<'_>,
    trace_id: &str,
    start: OffsetDateTime,
    ext: &str,
) -> ObjectKey {
    object_key_within(template, vars, trace_id, start, ext, MAX_KEY_BYTES)
}

/// [`object_key`] for a store that adds its own prefix to every key (a bucket's base
/// folder): every name [`ObjectKey::nth`] returns is at most `max_key_bytes` long and no
/// segment is longer than [`MAX_SEGMENT_BYTES`].
///
/// Shortening, in order, each step only when needed (all deterministic, so a replay of the
/// same trace gets the same key):
/// 1. the trace id, sanitised, when longer than [`MAX_ID_BYTES`] (also less when
///    `max_key_bytes` is tiny);
/// 2. any folder segment longer than [`MAX_SEGMENT_BYTES`];
/// 3. when the whole key is still too long, every folder segment longer than 64 bytes;
/// 4. then the folder as a whole, as one segment.
pub fn object_key_within(
    template: &PathTemplate,
    vars: KeyVars<'_>,
    trace_id: &str,
    start: OffsetDateTime,
    ext: &str,
    max_key_bytes: usize,
) -> ObjectKey {
    let ext: String = {
        let clean = sanitize_value(ext);
        let cut = floor_char_boundary(&clean, 16);
        clean[..cut].to_string()
    };
    let ts = start.unix_timestamp().to_string();
    // `{id}-{ts}{-n}{ext}` must fit a segment and the key.
    let fixed = 1 + ts.len() + SUFFIX_RESERVE + ext.len();
    let id_budget = MAX_ID_BYTES
        .min(MAX_SEGMENT_BYTES.saturating_sub(fixed))
        .min(max_key_bytes.saturating_sub(fixed))
        .max(HASH_HEX_DIGITS);
    let clean_id = sanitize_value(trace_id);
    let mut stem = shorten(&clean_id, trace_id, id_budget);
    if stem.is_empty() || stem == "." {
        stem = "trace".into();
    }
    stem.push('-');
    stem.push_str(&ts);
    let name_max = stem.len() + SUFFIX_RESERVE + ext.len();
    let folder_budget = max_key_bytes.saturating_sub(name_max + 1);
    let folder = fit_folder(render_segments(template, vars, start), folder_budget);
    ObjectKey { folder, stem, ext }
}

/// Joins `segments` into a folder of at most `budget` bytes (see [`object_key_within`]).
fn fit_folder(segments: Vec<String>, budget: usize) -> String {
    let joined = segments.join("/");
    if joined.len() <= budget {
        return joined;
    }
    let cut: Vec<String> = segments
        .iter()
        .map(|s| shorten(s, s, SHORT_SEGMENT_BYTES))
        .collect();
    let joined_cut = cut.join("/");
    if joined_cut.len() <= budget {
        return joined_cut;
    }
    if budget < HASH_HEX_DIGITS {
        return String::new();
    }
    let flat = joined.replace('/', "_");
    shorten(&flat, &flat, budget.min(SHORT_SEGMENT_BYTES))
}

/// `value` if it is at most `max` bytes, else a readable prefix of it (cut on a character
/// boundary), `-`, and the first [`HASH_HEX_DIGITS`] hex digits of SHA-256(`full`), where
/// `full` is the unsanitised value the name stands for. Two long values differing anywhere,
/// even in their last byte, get different names; the same value always the same name.
pub fn shorten(value: &str, full: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    let digest = hex::encode(Sha256::digest(full.as_bytes()));
    let hash = &digest[..HASH_HEX_DIGITS];
    if max <= HASH_HEX_DIGITS + 1 {
        return hash[..max.min(HASH_HEX_DIGITS)].to_string();
    }
    let keep = floor_char_boundary(value, max - HASH_HEX_DIGITS - 1);
    let prefix = value[..keep].trim_end_matches(['.', ' ']);
    if prefix.is_empty() {
        return hash.to_string();
    }
    format!("{prefix}-{hash}")
}

/// The largest index `<= max` that is a char boundary of `s` (never cuts inside a
/// multi-byte UTF-8 character).
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
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

/// Characters that are not controls but still make trouble in names: Unicode format
/// characters (bidi overrides that make a listing lie, zero-width characters) and
/// noncharacters (which S3's XML listings cannot carry).
fn is_invisible_or_nonchar(c: char) -> bool {
    let u = c as u32;
    matches!(u, 0xAD | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xFDD0..=0xFDEF)
        || u & 0xFFFE == 0xFFFE
}

/// Makes one value safe inside a key segment: control characters, Unicode format characters
/// and noncharacters dropped, `/` and `\` replaced by `_`, other whitespace than a plain space
/// replaced by `_`, `..` replaced by `_`, surrounding whitespace trimmed. Everything else
/// (including multi-byte UTF-8) is kept.
pub fn sanitize_value(value: &str) -> String {
    let cleaned: String = value
        .trim()
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_or_nonchar(*c))
        .map(|c| {
            if c == '/' || c == '\\' || (c.is_whitespace() && c != ' ') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut out = cleaned.replace("..", "_");
    while out.contains("..") {
        out = out.replace("..", "_");
    }
    out
}

/// The folder every key of `template` starts with, whatever the trace: the literal text and
/// `{prefix}` up to the last `/` before the first variable that varies per trace (date,
/// hour, ingest key). `openrouter-traces/{date}` -> `openrouter-traces`;
/// `{prefix}/llm/{date}` with prefix `prod` -> `prod/llm`; `{apiKeyName}/{date}` -> `` (the
/// bucket root). The connection probe lives under it, beside the trace folders, not in one.
pub fn fixed_folder(template: &PathTemplate, prefix: &str) -> String {
    let mut fixed = String::new();
    let mut varies = false;
    for part in &template.parts {
        match part {
            Part::Literal(s) => fixed.push_str(s),
            Part::Var(Var::Prefix) => fixed.push_str(&sanitize_value(prefix)),
            Part::Var(_) => {
                varies = true;
                break;
            }
        }
    }
    let folder = if varies {
        fixed.rsplit_once('/').map_or("", |(folder, _)| folder)
    } else {
        fixed.as_str()
    };
    folder
        .split('/')
        .map(|seg| seg.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|seg| !seg.is_empty() && seg != "." && seg != "..")
        .map(|seg| shorten(&seg, &seg, MAX_SEGMENT_BYTES))
        .collect::<Vec<_>>()
        .join("/")
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

    /// Every name of `k` (also with a clash suffix) fits the limits.
    fn assert_fits(k: &ObjectKey, max_key: usize) {
        for n in [1, 2, 1000, u32::MAX] {
            let name = k.nth(n);
            assert!(
                name.len() <= max_key,
                "{} bytes > {max_key}: {name}",
                name.len()
            );
            for seg in name.split('/') {
                assert!(!seg.is_empty() && seg != "." && seg != "..", "{name}");
                assert!(seg.len() <= MAX_SEGMENT_BYTES, "{} bytes: {seg}", seg.len());
                assert!(!seg.chars().any(char::is_control), "{seg:?}");
            }
        }
    }

    fn key_for(id: &str) -> ObjectKey {
        object_key(
            &PathTemplate::default(),
            VARS,
            id,
            datetime!(2024-01-15 09:40 UTC),
            ".json",
        )
    }

    #[test]
    fn ids_up_to_200_bytes_are_kept_whole() {
        let id = "a".repeat(MAX_ID_BYTES);
        let k = key_for(&id);
        assert_eq!(k.stem, format!("{id}-1705311600"));
        assert_fits(&k, MAX_KEY_BYTES);
    }

    #[test]
    fn long_ids_are_shortened_to_a_prefix_and_a_hash_of_the_full_id() {
        for len in [240, 2_000, 100_000] {
            let id = "x".repeat(len);
            let k = key_for(&id);
            assert_fits(&k, MAX_KEY_BYTES);
            let digest = hex::encode(Sha256::digest(id.as_bytes()));
            let expected_tail = format!("-{}-1705311600", &digest[..HASH_HEX_DIGITS]);
            assert!(k.stem.ends_with(&expected_tail), "{}", k.stem);
            assert!(k.stem.starts_with(&"x".repeat(150)), "{}", k.stem);
            assert_eq!(k.stem.len(), MAX_ID_BYTES + "-1705311600".len());
            assert_eq!(k, key_for(&id), "deterministic");
        }
        let gz = object_key(
            &PathTemplate::default(),
            VARS,
            &"y".repeat(240),
            datetime!(2024-01-15 09:40 UTC),
            ".json.gz",
        );
        assert_fits(&gz, MAX_KEY_BYTES);
    }

    #[test]
    fn long_ids_differing_only_at_the_end_get_different_names() {
        let a = format!("{}a", "t".repeat(1_999));
        let b = format!("{}b", "t".repeat(1_999));
        assert_ne!(key_for(&a).nth(1), key_for(&b).nth(1));
        let a = format!("{}a", "t".repeat(239));
        let b = format!("{}b", "t".repeat(239));
        assert_ne!(key_for(&a).nth(1), key_for(&b).nth(1));
    }

    #[test]
    fn multi_byte_ids_are_never_cut_inside_a_character() {
        for ch in ["é", "日", "😀"] {
            let id = ch.repeat(400);
            let k = key_for(&id);
            assert_fits(&k, MAX_KEY_BYTES);
            let (readable, _) = k.stem.split_once('-').unwrap();
            assert!(!readable.is_empty());
            assert!(readable.chars().all(|c| c.to_string() == ch), "{readable}");
        }
        // An id mixing 1- and 4-byte characters around the cut.
        let mixed: String = (0..300)
            .map(|i| if i % 3 == 0 { '😀' } else { 'a' })
            .collect();
        assert_fits(&key_for(&mixed), MAX_KEY_BYTES);
        // A short multi-byte id stays as it is.
        assert_eq!(key_for("trace-日本").stem, "trace-日本-1705311600");
    }

    #[test]
    fn unsafe_characters_never_make_new_folders_or_hidden_names() {
        let ids = [
            "../../etc/passwd".to_string(),
            "a/b/c".into(),
            "nul\u{0}byte".into(),
            "back\\slash".into(),
            "line\r\nbreak\ttab".into(),
            "rtl\u{202E}gnp.exe".into(),
            "zero\u{200B}width\u{FEFF}".into(),
            "non\u{FFFF}char".into(),
            "wide\u{3000}space".into(),
            "..".into(),
            "/".into(),
            "\u{0}\u{1}".into(),
            format!("{}/..", "../".repeat(700)),
        ];
        for id in &ids {
            let k = key_for(id);
            assert_fits(&k, MAX_KEY_BYTES);
            let name = k.nth(1);
            assert_eq!(
                name.matches('/').count(),
                2,
                "only the template's folders: {name}"
            );
            assert!(name.starts_with("openrouter-traces/2024-01-15/"), "{name}");
            let file = name.rsplit('/').next().unwrap();
            assert!(!file.contains(".."), "{file}");
            for bad in [
                '\u{202E}', '\u{200B}', '\u{FEFF}', '\u{FFFF}', '\u{3000}', '\\',
            ] {
                assert!(!file.contains(bad), "{file:?}");
            }
        }
        assert_eq!(key_for("a/b/c").stem, "a_b_c-1705311600");
        assert_eq!(key_for("nul\u{0}byte").stem, "nulbyte-1705311600");
        assert_eq!(key_for("\u{0}\u{1}").stem, "trace-1705311600");
    }

    #[test]
    fn long_variable_values_and_small_budgets_still_fit() {
        let long = "k".repeat(2_000);
        let vars = KeyVars {
            prefix: &long,
            api_key_name: &long,
        };
        let t = PathTemplate::parse("{prefix}/{apiKeyName}/{date}").unwrap();
        let at = datetime!(2024-01-15 09:40 UTC);
        let k = object_key(&t, vars, &"i".repeat(2_000), at, ".json.gz");
        assert_fits(&k, MAX_KEY_BYTES);
        assert!(k.folder.ends_with("/2024-01-15"), "{}", k.folder);
        // A bucket base folder leaves less room for the key.
        for budget in [300, 120, 80] {
            let k = object_key_within(&t, vars, &"i".repeat(2_000), at, ".json", budget);
            assert_fits(&k, budget);
        }
        // Many long segments: the folder is folded into one.
        let t = PathTemplate::parse(&"{prefix}/".repeat(20)).unwrap();
        let k = object_key(&t, vars, "id", at, ".json");
        assert_fits(&k, MAX_KEY_BYTES);
        assert_eq!(k, object_key(&t, vars, "id", at, ".json"));
        // The probe folder keeps every segment within the file-system limit too.
        for seg in render_prefix(&t, vars, at).split('/') {
            assert!(seg.len() <= MAX_SEGMENT_BYTES);
        }
    }

    #[test]
    fn shorten_keeps_short_values_and_hashes_the_full_value() {
        assert_eq!(shorten("abc", "abc", 3), "abc");
        let s = shorten("abcdefghijklmnopqrstuvwxyz0123456789", "FULL", 30);
        assert!(s.len() <= 30, "{s}");
        assert_eq!(s.len(), 30);
        assert!(s.starts_with("abcdefghijklm-"), "{s}");
        assert_eq!(
            s,
            shorten("abcdefghijklmnopqrstuvwxyz0123456789", "FULL", 30)
        );
        assert_ne!(
            s,
            shorten("abcdefghijklmnopqrstuvwxyz0123456789", "OTHER", 30)
        );
        assert_eq!(shorten(&"z".repeat(40), "z", 10).len(), 10);
    }
}
