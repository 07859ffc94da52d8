//! A pass over a protobuf `ExportTraceServiceRequest` on the wire, before decoding it:
//! counts its spans and estimates the memory the decoded request would take, without
//! allocating. Protobuf amplifies: an empty span is 2 bytes on the wire and a few hundred
//! in memory, so 16 MB of them (15 KB gzipped) would decode to gigabytes. The receiver
//! refuses such a request from these counts, before prost builds anything.
//!
//! The estimate adds, for every element of a repeated message field, the size of its
//! decoded struct (`size_of::<Span>()`, `size_of::<KeyValue>()`, ...), and the length of
//! every string and bytes field. Vectors' spare capacity and allocator overhead are not
//! counted, so the real heap can be up to about twice the estimate; unknown fields are
//! skipped (prost skips them too).

use std::mem::size_of;

use tracecast_core::proto::common::v1::{AnyValue, EntityRef, KeyValue};
use tracecast_core::proto::trace::v1::{span, ResourceSpans, ScopeSpans, Span};

/// prost's own recursion limit: a message nested deeper fails to decode anyway.
const MAX_DEPTH: usize = 100;

/// What a request holds, as far as its memory is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    pub spans: u64,
    /// Estimated bytes of the decoded request.
    pub decoded_size: u64,
}

/// Why the scan could not walk the body: it is not valid protobuf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

/// The messages the scan descends into; everything else is a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    ResourceSpans,
    Resource,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    EntityRef,
}

/// What a length-delimited field of a message is.
enum Field {
    /// A sub-message; `element` is the size its decoded struct adds (0 when it is held
    /// inline in its parent, like an optional field).
    Message(Kind, usize),
    /// A string or bytes value: its length is copied.
    Bytes,
    /// An element of a repeated string field: a `String` plus its bytes.
    RepeatedString,
    /// Unknown to the decoded type: skipped.
    Skip,
}

fn field(kind: Kind, number: u64) -> Field {
    use Field::{Bytes, Message, RepeatedString, Skip};
    match (kind, number) {
        (Kind::Request, 1) => Message(Kind::ResourceSpans, size_of::<ResourceSpans>()),
        (Kind::ResourceSpans, 1) => Message(Kind::Resource, 0),
        (Kind::ResourceSpans, 2) => Message(Kind::ScopeSpans, size_of::<ScopeSpans>()),
        (Kind::ResourceSpans, 3) => Bytes,
        (Kind::Resource, 1) => Message(Kind::KeyValue, size_of::<KeyValue>()),
        (Kind::Resource, 3) => Message(Kind::EntityRef, size_of::<EntityRef>()),
        (Kind::EntityRef, 1 | 2) => Bytes,
        (Kind::EntityRef, 3 | 4) => RepeatedString,
        (Kind::ScopeSpans, 1) => Message(Kind::Scope, 0),
        (Kind::ScopeSpans, 2) => Message(Kind::Span, size_of::<Span>()),
        (Kind::ScopeSpans, 3) => Bytes,
        (Kind::Scope, 1 | 2) => Bytes,
        (Kind::Scope, 3) => Message(Kind::KeyValue, size_of::<KeyValue>()),
        (Kind::Span, 1..=5) => Bytes,
        (Kind::Span, 9) => Message(Kind::KeyValue, size_of::<KeyValue>()),
        (Kind::Span, 11) => Message(Kind::Event, size_of::<span::Event>()),
        (Kind::Span, 13) => Message(Kind::Link, size_of::<span::Link>()),
        (Kind::Span, 15) => Message(Kind::Status, 0),
        (Kind::Event, 2) => Bytes,
        (Kind::Event, 3) => Message(Kind::KeyValue, size_of::<KeyValue>()),
        (Kind::Link, 1..=3) => Bytes,
        (Kind::Link, 4) => Message(Kind::KeyValue, size_of::<KeyValue>()),
        (Kind::Status, 2) => Bytes,
        (Kind::KeyValue, 1) => Bytes,
        (Kind::KeyValue, 2) => Message(Kind::AnyValue, 0),
        (Kind::AnyValue, 1 | 7) => Bytes,
        (Kind::AnyValue, 5) => Message(Kind::ArrayValue, 0),
        (Kind::AnyValue, 6) => Message(Kind::KeyValueList, 0),
        (Kind::ArrayValue, 1) => Message(Kind::AnyValue, size_of::<AnyValue>()),
        (Kind::KeyValueList, 1) => Message(Kind::KeyValue, size_of::<KeyValue>()),
        _ => Skip,
    }
}

/// Counts the spans of the `ExportTraceServiceRequest` in `body` and estimates its
/// decoded size. Linear in the body, no allocation.
pub fn scan(body: &[u8]) -> Result<Shape, WireError> {
    let mut shape = Shape {
        spans: 0,
        decoded_size: size_of::<tracecast_core::ExportTraceServiceRequest>() as u64,
    };
    walk(Kind::Request, body, 0, 0, &mut shape)?;
    Ok(shape)
}

fn walk(
    kind: Kind,
    body: &[u8],
    offset: usize,
    depth: usize,
    shape: &mut Shape,
) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError(format!(
            "messages nest deeper than {MAX_DEPTH} levels (at byte {offset})"
        )));
    }
    let mut pos = 0usize;
    while pos < body.len() {
        let at = offset + pos;
        let key = varint(body, &mut pos).ok_or_else(|| truncated(at))?;
        let number = key >> 3;
        if number == 0 {
            return Err(WireError(format!("field number 0 at byte {at}")));
        }
        match key & 7 {
            0 => {
                varint(body, &mut pos).ok_or_else(|| truncated(at))?;
            }
            1 => pos = skip(body, pos, 8).ok_or_else(|| truncated(at))?,
            5 => pos = skip(body, pos, 4).ok_or_else(|| truncated(at))?,
            2 => {
                let len = varint(body, &mut pos).ok_or_else(|| truncated(at))?;
                let start = pos;
                pos = usize::try_from(len)
                    .ok()
                    .and_then(|len| skip(body, start, len))
                    .ok_or_else(|| truncated(at))?;
                let value = &body[start..pos];
                match field(kind, number) {
                    Field::Message(child, element) => {
                        shape.decoded_size += element as u64;
                        if child == Kind::Span {
                            shape.spans += 1;
                        }
                        walk(child, value, offset + start, depth + 1, shape)?;
                    }
                    Field::Bytes => shape.decoded_size += value.len() as u64,
                    Field::RepeatedString => {
                        shape.decoded_size += (size_of::<String>() + value.len()) as u64
                    }
                    Field::Skip => {}
                }
            }
            // A group: OTLP never uses one, but prost skips unknown groups, so the scan
            // does too (found by fuzzing: refusing it turned a valid request into a 400).
            3 => skip_group(body, &mut pos, number, offset, depth)?,
            wire => {
                // 4 (an end-group without its start) is malformed; 6 and 7 do not exist.
                return Err(WireError(format!(
                    "unsupported wire type {wire} for field {number} at byte {at}"
                )));
            }
        }
    }
    Ok(())
}

/// Skips an unknown group's fields up to its end-group tag (field `number`), nested groups
/// included (at most [`MAX_DEPTH`] deep).
fn skip_group(
    body: &[u8],
    pos: &mut usize,
    number: u64,
    offset: usize,
    depth: usize,
) -> Result<(), WireError> {
    if depth + 1 > MAX_DEPTH {
        return Err(WireError(format!(
            "groups nest deeper than {MAX_DEPTH} levels (at byte {})",
            offset + *pos
        )));
    }
    loop {
        let at = offset + *pos;
        let key = varint(body, pos).ok_or_else(|| truncated(at))?;
        let inner = key >> 3;
        match key & 7 {
            0 => {
                varint(body, pos).ok_or_else(|| truncated(at))?;
            }
            1 => *pos = skip(body, *pos, 8).ok_or_else(|| truncated(at))?,
            5 => *pos = skip(body, *pos, 4).ok_or_else(|| truncated(at))?,
            2 => {
                let len = varint(body, pos).ok_or_else(|| truncated(at))?;
                *pos = usize::try_from(len)
                    .ok()
                    .and_then(|len| skip(body, *pos, len))
                    .ok_or_else(|| truncated(at))?;
            }
            3 => skip_group(body, pos, inner, offset, depth + 1)?,
            4 if inner == number => return Ok(()),
            wire => {
                let message =
                    format!("unexpected wire type {wire} for field {inner} inside group {number}");
                return Err(WireError(format!("{message} at byte {at}")));
            }
        }
    }
}

fn truncated(at: usize) -> WireError {
    WireError(format!(
        "field at byte {at} is truncated or its length runs past the end of its message"
    ))
}

/// The position after `len` more bytes from `pos`, if the body has them.
fn skip(body: &[u8], pos: usize, len: usize) -> Option<usize> {
    let end = pos.checked_add(len)?;
    (end <= body.len()).then_some(end)
}

fn varint(body: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *body.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None // more than 10 bytes: not a varint
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tracecast_core::proto::common::v1::{any_value::Value, ArrayValue};
    use tracecast_core::ExportTraceServiceRequest;

    fn attr(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn counts_spans_and_sizes_every_level() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "chat".into(),
            attributes: vec![
                attr("k", Value::StringValue("abc".into())),
                attr(
                    "list",
                    Value::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(Value::IntValue(1)),
                        }],
                    }),
                ),
            ],
            events: vec![span::Event {
                name: "e".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone(), span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let shape = scan(&request.encode_to_vec()).unwrap();
        assert_eq!(shape.spans, 2);
        let per_span = size_of::<Span>()
            + 16
            + 8
            + 4
            + 2 * size_of::<KeyValue>()
            + 1
            + 3
            + 4
            + size_of::<AnyValue>()
            + size_of::<span::Event>()
            + 1;
        let expected = size_of::<ExportTraceServiceRequest>()
            + size_of::<ResourceSpans>()
            + size_of::<ScopeSpans>()
            + 2 * per_span;
        assert_eq!(shape.decoded_size, expected as u64);
    }

    #[test]
    fn empty_span_bomb_is_counted_without_decoding() {
        // One ResourceSpans > one ScopeSpans > 1,000,000 empty spans (`0x12 0x00` each).
        let spans = [0x12u8, 0x00].repeat(1_000_000);
        let mut scope = vec![0x12];
        put_varint(&mut scope, spans.len() as u64);
        scope.extend_from_slice(&spans);
        let mut body = vec![0x0a];
        put_varint(&mut body, scope.len() as u64);
        body.extend_from_slice(&scope);
        let shape = scan(&body).unwrap();
        assert_eq!(shape.spans, 1_000_000);
        assert!(shape.decoded_size > 1_000_000 * size_of::<Span>() as u64);
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn malformed_wire_is_reported_with_its_offset() {
        assert_eq!(
            scan(&[0x0a, 0xff, 0xff, 0xff, 0x01, 0x02]),
            Err(WireError(
                "field at byte 0 is truncated or its length runs past the end of its message"
                    .into()
            ))
        );
        // An unknown group is skipped like prost skips it; one that never ends is truncated.
        assert_eq!(scan(&[0x7b, 0x08, 0x01, 0x7c]).unwrap().spans, 0);
        assert!(scan(&[0x0b]).unwrap_err().0.contains("truncated"));
        assert!(scan(&[0x0c]).unwrap_err().0.contains("wire type 4"));
        assert!(scan(&[0x00, 0x00])
            .unwrap_err()
            .0
            .contains("field number 0"));
        // Nesting past prost's limit: kvlist in kvlist in ...
        let mut value: Vec<u8> = Vec::new();
        for _ in 0..60 {
            // KeyValue{2: AnyValue{6: KeyValueList{1: KeyValue{...}}}}
            let mut kvl = vec![0x0a];
            put_varint(&mut kvl, value.len() as u64);
            kvl.extend_from_slice(&value);
            let mut any = vec![0x32];
            put_varint(&mut any, kvl.len() as u64);
            any.extend_from_slice(&kvl);
            let mut kv = vec![0x12];
            put_varint(&mut kv, any.len() as u64);
            kv.extend_from_slice(&any);
            value = kv;
        }
        let span_attr = {
            let mut s = vec![0x4a];
            put_varint(&mut s, value.len() as u64);
            s.extend_from_slice(&value);
            s
        };
        let wrap = |tag: u8, inner: &[u8]| {
            let mut out = vec![tag];
            put_varint(&mut out, inner.len() as u64);
            out.extend_from_slice(inner);
            out
        };
        let body = wrap(0x0a, &wrap(0x12, &wrap(0x12, &span_attr)));
        assert!(scan(&body).unwrap_err().0.contains("deeper than 100"));
        assert!(ExportTraceServiceRequest::decode(&body[..]).is_err());
    }
}
