//! Leaf field parsers: how one JSON scalar becomes a proto scalar, with every tolerance the
//! proto3 JSON mapping (and real OTLP clients) need: integers as numbers or strings, doubles
//! as `"NaN"`/`"Infinity"`, enums as numbers or names, ids as hex, bytes as base64, and
//! `null` as the default value.

use base64::Engine;

use super::de::{Parse, Scalar};

/// Longest piece of an offending string quoted back in an error message.
const QUOTE_LIMIT: usize = 40;

fn got(value: &Scalar<'_>) -> String {
    match value {
        Scalar::Str(s) => format!("\"{}\"", truncate(s)),
        other => other.kind().to_owned(),
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(QUOTE_LIMIT) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// A `string` field.
#[derive(Clone, Copy)]
pub(super) struct Text;

impl Parse for Text {
    type Out = String;
    fn parse(self, value: Scalar<'_>) -> Result<String, String> {
        match value {
            Scalar::Str(s) => Ok(s.into_owned()),
            Scalar::Null => Ok(String::new()),
            other => Err(format!("expected a string, got {}", other.kind())),
        }
    }
}

/// A `bool` field.
#[derive(Clone, Copy)]
pub(super) struct Boolean;

impl Parse for Boolean {
    type Out = bool;
    fn parse(self, value: Scalar<'_>) -> Result<bool, String> {
        match value {
            Scalar::Bool(b) => Ok(b),
            Scalar::Null => Ok(false),
            other => Err(format!("expected true or false, got {}", got(&other))),
        }
    }
}

/// Any integer field; proto3 JSON allows numbers, strings and integral exponent forms.
fn integer(value: Scalar<'_>, min: i128, max: i128, type_name: &str) -> Result<i128, String> {
    let n = match &value {
        Scalar::Null => return Ok(0),
        Scalar::U64(v) => i128::from(*v),
        Scalar::I64(v) => i128::from(*v),
        Scalar::F64(f) => integral(*f).ok_or_else(|| format!("expected an integer, got {f}"))?,
        Scalar::Str(s) => match s.parse::<i128>() {
            Ok(n) => n,
            Err(_) => s
                .parse::<f64>()
                .ok()
                .and_then(integral)
                .ok_or_else(|| format!("expected an integer, got {}", got(&value)))?,
        },
        other => return Err(format!("expected an integer, got {}", other.kind())),
    };
    if n < min || n > max {
        return Err(format!("{n} is out of range for {type_name}"));
    }
    Ok(n)
}

fn integral(f: f64) -> Option<i128> {
    // `as` saturates; the range check after it rejects what saturated.
    (f.is_finite() && f.fract() == 0.0).then_some(f as i128)
}

macro_rules! int_parser {
    ($name:ident, $ty:ty, $proto:literal) => {
        #[doc = concat!("A `", $proto, "` field.")]
        #[derive(Clone, Copy)]
        pub(super) struct $name;

        impl Parse for $name {
            type Out = $ty;
            fn parse(self, value: Scalar<'_>) -> Result<$ty, String> {
                let n = integer(value, <$ty>::MIN.into(), <$ty>::MAX.into(), $proto)?;
                // In range by the check above.
                Ok(n as $ty)
            }
        }
    };
}

int_parser!(Uint64, u64, "uint64");
int_parser!(Int64, i64, "int64");
int_parser!(Uint32, u32, "uint32");
int_parser!(Int32, i32, "int32");

/// A `double` field: a number, or a string holding a number or `NaN`/`Infinity`/`-Infinity`.
#[derive(Clone, Copy)]
pub(super) struct Double;

impl Parse for Double {
    type Out = f64;
    fn parse(self, value: Scalar<'_>) -> Result<f64, String> {
        match &value {
            Scalar::Null => Ok(0.0),
            Scalar::F64(f) => Ok(*f),
            Scalar::U64(v) => Ok(*v as f64),
            Scalar::I64(v) => Ok(*v as f64),
            Scalar::Str(s) => match s.as_ref() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                s => s.parse::<f64>().map_err(|_| {
                    format!(
                        "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", got {}",
                        got(&value)
                    )
                }),
            },
            other => Err(format!("expected a number, got {}", other.kind())),
        }
    }
}

/// A `bytes` field: base64, standard or URL-safe alphabet, padded or not (proto3 JSON).
#[derive(Clone, Copy)]
pub(super) struct Base64;

impl Parse for Base64 {
    type Out = Vec<u8>;
    fn parse(self, value: Scalar<'_>) -> Result<Vec<u8>, String> {
        use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose};
        const CONFIG: general_purpose::GeneralPurposeConfig =
            general_purpose::GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::Indifferent);
        const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
        const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
        match value {
            Scalar::Null => Ok(Vec::new()),
            Scalar::Str(s) => {
                let engine = if s.contains(['-', '_']) {
                    &URL_SAFE
                } else {
                    &STANDARD
                };
                engine
                    .decode(s.as_bytes())
                    .map_err(|e| format!("expected base64, got {} ({e})", got(&Scalar::Str(s))))
            }
            other => Err(format!("expected a base64 string, got {}", other.kind())),
        }
    }
}

/// A trace id (16 bytes) or span id (8 bytes): hex, either case; `""` is the empty id.
#[derive(Clone, Copy)]
pub(super) struct HexId(pub(super) usize);

impl Parse for HexId {
    type Out = Vec<u8>;
    fn parse(self, value: Scalar<'_>) -> Result<Vec<u8>, String> {
        let want = self.0 * 2;
        let s = match value {
            Scalar::Null => return Ok(Vec::new()),
            Scalar::Str(s) => s,
            other => {
                return Err(format!(
                    "expected a string of {want} hex characters, got {}",
                    other.kind()
                ))
            }
        };
        if s.is_empty() {
            return Ok(Vec::new());
        }
        if s.len() != want {
            let mut msg = format!("expected {want} hex characters, got {}", s.chars().count());
            if base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .is_ok_and(|b| b.len() == self.0)
            {
                msg.push_str(" (this looks like base64; OTLP/JSON ids are hex)");
            }
            return Err(msg);
        }
        let mut out = vec![0u8; self.0];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(|_| {
            let (at, bad) = s
                .char_indices()
                .find(|(_, c)| !c.is_ascii_hexdigit())
                .unwrap_or((0, '?'));
            format!("expected {want} hex characters, found {bad:?} at position {at}")
        })?;
        Ok(out)
    }
}

/// An enum field: its number, or its name as written in the .proto (e.g. `SPAN_KIND_SERVER`).
/// `names[i]` is the name of value `i`. Unknown numbers are kept (proto3 enums are open).
#[derive(Clone, Copy)]
pub(super) struct Enum {
    pub(super) type_name: &'static str,
    pub(super) names: &'static [&'static str],
}

impl Parse for Enum {
    type Out = i32;
    fn parse(self, value: Scalar<'_>) -> Result<i32, String> {
        if let Scalar::Str(s) = &value {
            if let Some(i) = self.names.iter().position(|n| *n == s.as_ref()) {
                // The tables are a handful of entries long.
                return Ok(i as i32);
            }
            if s.parse::<i32>().is_err() {
                return Err(format!(
                    "unknown {} {}; expected a number or one of {}",
                    self.type_name,
                    got(&value),
                    self.names.join(", ")
                ));
            }
        }
        Int32.parse(value)
    }
}

pub(super) const SPAN_KIND: Enum = Enum {
    type_name: "SpanKind",
    names: &[
        "SPAN_KIND_UNSPECIFIED",
        "SPAN_KIND_INTERNAL",
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
    ],
};

pub(super) const STATUS_CODE: Enum = Enum {
    type_name: "StatusCode",
    names: &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"],
};
