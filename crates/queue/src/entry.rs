//! Entry framing: a batch's context stored with its protobuf bytes, so a replayed entry
//! rebuilds the same `TraceBatch` (receiver, ingest key name, receive time).
//!
//! ```text
//! version u8 = 1 | received_at: secs u64 LE, nanos u32 LE (since the Unix epoch)
//! | receiver: len u32 LE, UTF-8 | api_key_name: flag u8 (0 none, 1 some) [, len u32 LE, UTF-8]
//! | protobuf ExportTraceServiceRequest (the rest)
//! ```

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tracecast_core::BatchContext;

use crate::error::QueueError;

const ENTRY_VERSION: u8 = 1;

/// Frames a batch's context and its protobuf bytes into one queue entry.
pub fn encode_entry(ctx: &BatchContext, protobuf: &[u8]) -> Bytes {
    let key = ctx.api_key_name.as_deref();
    let mut b =
        BytesMut::with_capacity(32 + ctx.receiver.len() + key.map_or(0, str::len) + protobuf.len());
    b.put_u8(ENTRY_VERSION);
    // A clock before 1970 is recorded as the epoch: the time only names files and logs.
    let since = ctx
        .received_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    b.put_u64_le(since.as_secs());
    b.put_u32_le(since.subsec_nanos());
    put_str(&mut b, &ctx.receiver);
    match key {
        Some(k) => {
            b.put_u8(1);
            put_str(&mut b, k);
        }
        None => b.put_u8(0),
    }
    b.put_slice(protobuf);
    b.freeze()
}

/// Reads an entry written by [`encode_entry`]; the protobuf part shares the entry's memory.
pub fn decode_entry(bytes: &Bytes) -> Result<(BatchContext, Bytes), QueueError> {
    let mut r = bytes.clone();
    let version = get_u8(&mut r, "version")?;
    if version != ENTRY_VERSION {
        return Err(QueueError::BadEntry(format!(
            "entry format version {version}, this build reads {ENTRY_VERSION}"
        )));
    }
    need(&r, 12, "receive time")?;
    let secs = r.get_u64_le();
    let nanos = r.get_u32_le();
    if nanos >= 1_000_000_000 {
        return Err(QueueError::BadEntry(format!(
            "receive time has {nanos} nanoseconds"
        )));
    }
    let received_at = UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(|| QueueError::BadEntry("receive time out of range".into()))?;
    let receiver = get_str(&mut r, "receiver")?;
    let api_key_name = match get_u8(&mut r, "api key flag")? {
        0 => None,
        1 => Some(get_str(&mut r, "api key name")?),
        other => {
            return Err(QueueError::BadEntry(format!(
                "api key flag is {other}, expected 0 or 1"
            )))
        }
    };
    let ctx = BatchContext {
        receiver,
        api_key_name,
        received_at,
    };
    Ok((ctx, r))
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Receiver ids and key names are short; a string over 4 GiB cannot reach here (the
    // receiver's body limit is far below), but stay within the u32 the format allows.
    let s = &s.as_bytes()[..s.len().min(u32::MAX as usize)];
    b.put_u32_le(s.len() as u32);
    b.put_slice(s);
}

fn need(r: &Bytes, n: usize, what: &str) -> Result<(), QueueError> {
    if r.remaining() < n {
        return Err(QueueError::BadEntry(format!(
            "entry ends inside its {what} ({} of {n} bytes)",
            r.remaining()
        )));
    }
    Ok(())
}

fn get_u8(r: &mut Bytes, what: &str) -> Result<u8, QueueError> {
    need(r, 1, what)?;
    Ok(r.get_u8())
}

fn get_str(r: &mut Bytes, what: &str) -> Result<Arc<str>, QueueError> {
    need(r, 4, what)?;
    let len = r.get_u32_le() as usize;
    need(r, len, what)?;
    let raw = r.split_to(len);
    std::str::from_utf8(&raw)
        .map(Arc::from)
        .map_err(|_| QueueError::BadEntry(format!("{what} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_and_protobuf_round_trip() {
        let mut ctx = BatchContext::new("otlp/edge");
        ctx.api_key_name = Some("gateway-eu".into());
        let entry = encode_entry(&ctx, b"\x0a\x02hi");
        let (back, proto) = decode_entry(&entry).unwrap();
        assert_eq!(back, ctx);
        assert_eq!(&proto[..], b"\x0a\x02hi");

        let plain = BatchContext::new("otlp");
        let (back, proto) = decode_entry(&encode_entry(&plain, b"")).unwrap();
        assert_eq!(back, plain);
        assert!(proto.is_empty());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut ctx = BatchContext::new("otlp");
        ctx.api_key_name = Some("k".into());
        let entry = encode_entry(&ctx, b"");
        for cut in 0..entry.len() {
            let err = decode_entry(&entry.slice(..cut)).unwrap_err();
            assert!(matches!(err, QueueError::BadEntry(_)), "{err}");
        }
        let mut bad = entry.to_vec();
        bad[0] = 9;
        assert!(decode_entry(&Bytes::from(bad))
            .unwrap_err()
            .to_string()
            .contains("version 9"));
    }
}
