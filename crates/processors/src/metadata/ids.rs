//! Turning the request's `trace_id` / `parent_span_id` strings into OTLP ids.
//!
//! `trace_id`: 32 hex characters (any case, not all zero) are the OTLP trace id as is.
//! Any other string of at most [`MAX_CUSTOM_TRACE_ID_BYTES`] bytes maps to the first 16
//! bytes of `SHA-256("tracecast:" + string)`: stable across restarts and machines, so every
//! request naming the same id lands in the same trace. Longer strings are not used as an id.

use sha2::{Digest, Sha256};

/// Longest custom `trace_id` string used as an id (and kept on spans).
pub const MAX_CUSTOM_TRACE_ID_BYTES: usize = 256;

/// Prefix hashed in front of a custom trace id string (domain separation).
pub const TRACE_ID_HASH_PREFIX: &str = "tracecast:";

/// What a `trace_id` string means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceIdInput {
    /// 32 hex characters: used as the OTLP trace id.
    Hex([u8; 16]),
    /// Any other usable string: the derived id, and the string to keep on the spans.
    Custom([u8; 16], String),
    /// Empty or longer than [`MAX_CUSTOM_TRACE_ID_BYTES`]: not used.
    Unusable,
}

/// Classifies a `trace_id` string.
pub fn parse_trace_id(s: &str) -> TraceIdInput {
    if s.is_empty() || s.len() > MAX_CUSTOM_TRACE_ID_BYTES {
        return TraceIdInput::Unusable;
    }
    if let Some(id) = decode_hex::<16>(s) {
        return TraceIdInput::Hex(id);
    }
    TraceIdInput::Custom(derive_trace_id(s), s.to_string())
}

/// The stable 16-byte OTLP trace id for a custom trace id string.
pub fn derive_trace_id(s: &str) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(TRACE_ID_HASH_PREFIX.as_bytes())
        .chain_update(s.as_bytes())
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// A span id from 16 hex characters (not all zero, which OTLP calls invalid).
pub fn parse_span_id(s: &str) -> Option<[u8; 8]> {
    decode_hex::<8>(s)
}

/// Decodes exactly `2 * N` hex characters into a non-zero id.
fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    (out != [0u8; N]).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_used_as_is_in_lowercase() {
        let s = "0AF7651916CD43DD8448EB211C80319C";
        let TraceIdInput::Hex(id) = parse_trace_id(s) else {
            panic!("not hex")
        };
        assert_eq!(hex::encode(id), s.to_lowercase());
        assert_eq!(
            parse_trace_id(&"0".repeat(32)),
            TraceIdInput::Custom(derive_trace_id(&"0".repeat(32)), "0".repeat(32))
        );
    }

    #[test]
    fn custom_ids_hash_with_the_documented_prefix() {
        let TraceIdInput::Custom(id, original) = parse_trace_id("app_trace_001") else {
            panic!("not custom")
        };
        assert_eq!(original, "app_trace_001");
        let full = Sha256::digest(b"tracecast:app_trace_001");
        assert_eq!(&id[..], &full[..16]);
        assert_eq!(parse_trace_id(""), TraceIdInput::Unusable);
        assert_eq!(parse_trace_id(&"x".repeat(257)), TraceIdInput::Unusable);
        assert!(matches!(
            parse_trace_id(&"x".repeat(256)),
            TraceIdInput::Custom(..)
        ));
    }

    #[test]
    fn span_ids_need_16_hex_chars() {
        assert_eq!(
            parse_span_id("00f067aa0ba902b7"),
            Some([0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(parse_span_id("00f067aa0ba902b"), None);
        assert_eq!(parse_span_id("zzf067aa0ba902b7"), None);
        assert_eq!(parse_span_id("0000000000000000"), None);
    }
}
