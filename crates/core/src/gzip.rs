//! The one gzip writer every exporter uses (the `otlp` exporter's request bodies, the `s3`
//! exporter's `.json.gz` trace files).

use std::io::Write;

/// The level used where no `compression_level` is configured (zlib's default).
pub const DEFAULT_LEVEL: u32 = 6;

/// `body` gzip-compressed at `level` (1 fastest ... 9 smallest; larger values count as 9).
/// Compressing into memory does not fail in practice; the error is passed on rather than
/// hidden.
pub fn compress(body: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::new(level.min(9)),
    );
    enc.write_all(body)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    #[test]
    fn round_trips() {
        let body = b"{\"resourceSpans\":[]}".repeat(20);
        let packed = super::compress(&body, 2).unwrap();
        assert!(packed.len() < body.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
