//! The OpenTelemetry consistent-probability sampling values (W3C Trace Context level 2
//! randomness), and the `ot` entry of a W3C `tracestate` that carries them.
//!
//! - Randomness `R`: 56 bits, the rightmost 7 bytes of the trace id, or the explicit
//!   `rv` sub-key of the `ot` entry (14 hex digits) when present.
//! - Rejection threshold `T`: 56 bits; a span is kept when `R >= T`. For a ratio `p`,
//!   `T = 2^56 - round(p * 2^56)`, so `T = 0` keeps everything.
//! - `th`: `T` as 14 hex digits with trailing zeros removed (`0` for `T = 0`), written
//!   into `ot=th:...` so that downstream samplers and backends know the adjusted count.
//!
//! Parsing never fails: a `tracestate` that cannot be read is treated as carrying no
//! values, and rewriting keeps every other entry as it was.

/// 2^56: the randomness and threshold domain.
pub const MAX: u64 = 1 << 56;

/// Hex digits of a full randomness or threshold value.
const DIGITS: usize = 14;

/// The rejection threshold for `ratio` (0 < ratio <= 1).
pub fn threshold(ratio: f64) -> u64 {
    // Multiplying by a power of two is exact in binary floating point; the rounding is the
    // only approximation, and the same one OpenTelemetry's reference code makes.
    let kept = (ratio * MAX as f64).round();
    MAX - (kept as u64).min(MAX)
}

/// The ratio a threshold stands for.
pub fn ratio_of(threshold: u64) -> f64 {
    (MAX - threshold.min(MAX)) as f64 / MAX as f64
}

/// `th` sub-key value for `threshold`.
pub fn encode_threshold(threshold: u64) -> String {
    if threshold == 0 {
        return "0".to_string();
    }
    let full = format!("{:014x}", threshold.min(MAX - 1));
    full.trim_end_matches('0').to_string()
}

/// The randomness of a trace id: its rightmost 56 bits for a 16-byte id. Ids of any other
/// length (custom ids some receivers let through) are hashed first, so they still give a
/// stable, evenly spread value.
pub fn trace_id_randomness(trace_id: &[u8]) -> u64 {
    if trace_id.len() == 16 {
        let mut bytes = [0u8; 8];
        bytes[1..].copy_from_slice(&trace_id[9..16]);
        u64::from_be_bytes(bytes)
    } else {
        hashed_randomness(trace_id)
    }
}

/// 56 bits of SHA-256 of `key`: the randomness of a session or user id. A fixed function
/// (not std's per-process randomized hasher), so every node and every restart agrees.
pub fn hashed_randomness(key: &[u8]) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key);
    let mut bytes = [0u8; 8];
    bytes[1..].copy_from_slice(&digest[..7]);
    u64::from_be_bytes(bytes)
}

/// The value of the `ot` member of a `tracestate`, if any.
fn ot_value(tracestate: &str) -> Option<&str> {
    tracestate
        .split(',')
        .map(str::trim)
        .find_map(|member| member.strip_prefix("ot="))
}

/// The value of sub-key `key` in an `ot` value (`th:c;rv:...`).
fn ot_sub<'a>(ot: &'a str, key: &str) -> Option<&'a str> {
    ot.split(';').find_map(|kv| {
        let (k, v) = kv.split_once(':')?;
        (k == key).then_some(v)
    })
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The explicit randomness (`ot=rv:` followed by exactly 14 hex digits), if present.
pub fn explicit_randomness(tracestate: &str) -> Option<u64> {
    let rv = ot_sub(ot_value(tracestate)?, "rv")?;
    if rv.len() != DIGITS || !is_hex(rv) {
        return None;
    }
    u64::from_str_radix(rv, 16).ok()
}

/// The threshold already recorded (`ot=th:`, 1 to 14 hex digits), if present.
pub fn recorded_threshold(tracestate: &str) -> Option<u64> {
    let th = ot_sub(ot_value(tracestate)?, "th")?;
    if th.is_empty() || th.len() > DIGITS || !is_hex(th) {
        return None;
    }
    let value = u64::from_str_radix(th, 16).ok()?;
    Some(value << (4 * (DIGITS - th.len())))
}

/// `tracestate` with `ot=th:<threshold>` set: the `ot` member's other sub-keys are kept,
/// and the member moves to the front (W3C: an updated member goes first); every other
/// member stays as it was.
pub fn with_threshold(tracestate: &str, threshold: u64) -> String {
    let th = format!("th:{}", encode_threshold(threshold));
    let mut ot = th.clone();
    let mut others = Vec::new();
    for member in tracestate.split(',').map(str::trim) {
        if member.is_empty() {
            continue;
        }
        match member.strip_prefix("ot=") {
            Some(value) => {
                let subs: Vec<&str> = value
                    .split(';')
                    .filter(|kv| !kv.is_empty() && !kv.starts_with("th:"))
                    .collect();
                ot = std::iter::once(th.as_str())
                    .chain(subs)
                    .collect::<Vec<_>>()
                    .join(";");
            }
            None => others.push(member),
        }
    }
    let mut out = format!("ot={ot}");
    for member in others {
        out.push(',');
        out.push_str(member);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_match_the_opentelemetry_examples() {
        // From the OpenTelemetry sampling spec: 100% -> th:0, 50% -> th:8, 25% -> th:c,
        // 10% -> th:e666666666666 (rounded at full precision).
        assert_eq!(encode_threshold(threshold(1.0)), "0");
        assert_eq!(encode_threshold(threshold(0.5)), "8");
        assert_eq!(encode_threshold(threshold(0.25)), "c");
        assert_eq!(encode_threshold(threshold(0.1)), "e6666666666666");
        assert_eq!(ratio_of(threshold(0.25)), 0.25);
        assert_eq!(ratio_of(threshold(0.1)), 0.1);
    }

    #[test]
    fn trace_id_randomness_is_the_rightmost_56_bits() {
        let id = hex::decode("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(trace_id_randomness(&id), 0xce929d0e0e4736);
        // Odd-length ids are hashed, never index out of range.
        assert!(trace_id_randomness(b"short") < MAX);
        assert!(trace_id_randomness(&[]) < MAX);
    }

    #[test]
    fn ot_values_are_read_and_bad_ones_ignored() {
        let ts = "vendor=x, ot=th:c;rv:00112233445566 ,other=y";
        assert_eq!(explicit_randomness(ts), Some(0x00112233445566));
        assert_eq!(recorded_threshold(ts), Some(0xc0000000000000));
        for bad in [
            "ot=rv:0011",
            "ot=rv:zz112233445566",
            "rv:00112233445566",
            "",
            ",",
        ] {
            assert_eq!(explicit_randomness(bad), None, "{bad}");
        }
        for bad in ["ot=th:", "ot=th:123456789012345", "ot=th:g"] {
            assert_eq!(recorded_threshold(bad), None, "{bad}");
        }
    }

    #[test]
    fn with_threshold_replaces_th_keeps_the_rest_and_moves_ot_first() {
        assert_eq!(with_threshold("", threshold(0.25)), "ot=th:c");
        assert_eq!(
            with_threshold("a=1,ot=th:8;rv:00112233445566;x:y", threshold(0.25)),
            "ot=th:c;rv:00112233445566;x:y,a=1"
        );
        assert_eq!(with_threshold(" a=1 , b=2 ", 0), "ot=th:0,a=1,b=2");
    }
}
