//! Request bodies: each batch is encoded once and compressed once, then the same bytes are
//! sent on every attempt.

use bytes::Bytes;
use prost::Message;
use tracecast_core::{ExportTraceServiceRequest, TraceBatch};

use crate::config::{Compression, Encoding};

/// `Content-Type` of a body in `encoding`.
pub fn content_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Json => "application/json",
        Encoding::Protobuf => "application/x-protobuf",
    }
}

/// `Content-Encoding` for `compression`, if any.
pub fn content_encoding(compression: Compression) -> Option<&'static str> {
    match compression {
        Compression::Gzip => Some("gzip"),
        Compression::Zstd => Some("zstd"),
        Compression::None => None,
    }
}

/// The uncompressed body of `batch`. Protobuf reuses the bytes the receiver got when no
/// processor changed the batch.
pub fn encode_batch(batch: &TraceBatch, encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Protobuf => batch.to_protobuf(),
        Encoding::Json => Bytes::from(tracecast_core::otlp_json::encode_request(batch.request())),
    }
}

/// The uncompressed body of a bare request (the connection test's empty request).
pub fn encode_request(request: &ExportTraceServiceRequest, encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Protobuf => Bytes::from(request.encode_to_vec()),
        Encoding::Json => Bytes::from(tracecast_core::otlp_json::encode_request(request)),
    }
}

/// Compresses a body. (Compressing into memory does not fail in practice; the error is
/// passed on rather than hidden.)
pub fn compress(body: Bytes, compression: Compression, level: u32) -> std::io::Result<Bytes> {
    match compression {
        Compression::None => Ok(body),
        Compression::Gzip => tracecast_core::gzip::compress(&body, level).map(Bytes::from),
        // Pure-Rust encoder (no C build); its fastest level is zstd's level 1.
        Compression::Zstd => Ok(Bytes::from(ruzstd::encoding::compress_to_vec(
            &body[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_round_trips() {
        let body = Bytes::from_static(b"{\"resourceSpans\":[]}");
        let packed = compress(body.clone(), Compression::Gzip, 2).unwrap();
        assert_ne!(packed, body);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
        assert_eq!(compress(body.clone(), Compression::None, 2).unwrap(), body);
    }

    #[test]
    fn zstd_round_trips() {
        let body = Bytes::from(b"{\"resourceSpans\":[]}".repeat(100));
        let packed = compress(body.clone(), Compression::Zstd, 2).unwrap();
        assert!(packed.len() < body.len() / 10, "{} bytes", packed.len());
        let mut out = Vec::new();
        ruzstd::decoding::StreamingDecoder::new(&packed[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
        assert_eq!(content_encoding(Compression::Zstd), Some("zstd"));
    }
}
