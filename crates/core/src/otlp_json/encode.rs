//! OTLP/JSON writer: lowerCamelCase keys, hex ids, 64-bit integers as strings, enums as
//! numbers, default fields omitted, non-finite doubles as `"NaN"`/`"Infinity"`/`"-Infinity"`,
//! bytes as standard base64. Writes straight into a `Vec<u8>`: no intermediate tree.

use base64::Engine;

use crate::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use crate::proto::common::v1::{
    any_value, AnyValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use crate::proto::resource::v1::Resource;
use crate::proto::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};

/// Writes one JSON object; each setter skips its field when it holds the default.
struct ObjWriter<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> ObjWriter<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjWriter { out, empty: true }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn str(&mut self, name: &str, value: &str) {
        if !value.is_empty() {
            write_str(self.key(name), value);
        }
    }

    fn hex(&mut self, name: &str, value: &[u8]) {
        if !value.is_empty() {
            let out = self.key(name);
            out.push(b'"');
            write_hex(out, value);
            out.push(b'"');
        }
    }

    /// 64-bit integers are strings in OTLP/JSON (JavaScript numbers lose precision).
    fn int64_str(&mut self, name: &str, value: impl itoa::Integer + Default + PartialEq) {
        if value != Default::default() {
            let out = self.key(name);
            out.push(b'"');
            out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
            out.push(b'"');
        }
    }

    fn int32(&mut self, name: &str, value: impl itoa::Integer + Default + PartialEq) {
        if value != Default::default() {
            let out = self.key(name);
            out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        }
    }

    fn list<T>(&mut self, name: &str, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
        if items.is_empty() {
            return;
        }
        let out = self.key(name);
        out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write(out, item);
        }
        out.push(b']');
    }

    /// A message field is written when present, even if all its fields are defaults.
    fn msg<T>(&mut self, name: &str, value: Option<&T>, write: impl Fn(&mut Vec<u8>, &T)) {
        if let Some(value) = value {
            write(self.key(name), value);
        }
    }
}

pub(super) fn request(out: &mut Vec<u8>, req: &ExportTraceServiceRequest) {
    let mut w = ObjWriter::open(out);
    w.list("resourceSpans", &req.resource_spans, resource_spans);
    w.close();
}

pub(super) fn response(out: &mut Vec<u8>, resp: &ExportTraceServiceResponse) {
    let mut w = ObjWriter::open(out);
    w.msg(
        "partialSuccess",
        resp.partial_success.as_ref(),
        partial_success,
    );
    w.close();
}

fn partial_success(out: &mut Vec<u8>, p: &ExportTracePartialSuccess) {
    let mut w = ObjWriter::open(out);
    w.int64_str("rejectedSpans", p.rejected_spans);
    w.str("errorMessage", &p.error_message);
    w.close();
}

fn resource_spans(out: &mut Vec<u8>, rs: &ResourceSpans) {
    let mut w = ObjWriter::open(out);
    w.msg("resource", rs.resource.as_ref(), resource);
    w.list("scopeSpans", &rs.scope_spans, scope_spans);
    w.str("schemaUrl", &rs.schema_url);
    w.close();
}

fn resource(out: &mut Vec<u8>, r: &Resource) {
    let mut w = ObjWriter::open(out);
    w.list("attributes", &r.attributes, key_value);
    w.int32("droppedAttributesCount", r.dropped_attributes_count);
    w.list("entityRefs", &r.entity_refs, entity_ref);
    w.close();
}

fn entity_ref(out: &mut Vec<u8>, e: &EntityRef) {
    let mut w = ObjWriter::open(out);
    w.str("schemaUrl", &e.schema_url);
    w.str("type", &e.r#type);
    w.list("idKeys", &e.id_keys, |o, s| write_str(o, s));
    w.list("descriptionKeys", &e.description_keys, |o, s| {
        write_str(o, s)
    });
    w.close();
}

fn scope_spans(out: &mut Vec<u8>, ss: &ScopeSpans) {
    let mut w = ObjWriter::open(out);
    w.msg("scope", ss.scope.as_ref(), scope);
    w.list("spans", &ss.spans, span);
    w.str("schemaUrl", &ss.schema_url);
    w.close();
}

fn scope(out: &mut Vec<u8>, s: &InstrumentationScope) {
    let mut w = ObjWriter::open(out);
    w.str("name", &s.name);
    w.str("version", &s.version);
    w.list("attributes", &s.attributes, key_value);
    w.int32("droppedAttributesCount", s.dropped_attributes_count);
    w.close();
}

fn span(out: &mut Vec<u8>, s: &Span) {
    let mut w = ObjWriter::open(out);
    w.hex("traceId", &s.trace_id);
    w.hex("spanId", &s.span_id);
    w.str("traceState", &s.trace_state);
    w.hex("parentSpanId", &s.parent_span_id);
    w.int32("flags", s.flags);
    w.str("name", &s.name);
    w.int32("kind", s.kind);
    w.int64_str("startTimeUnixNano", s.start_time_unix_nano);
    w.int64_str("endTimeUnixNano", s.end_time_unix_nano);
    w.list("attributes", &s.attributes, key_value);
    w.int32("droppedAttributesCount", s.dropped_attributes_count);
    w.list("events", &s.events, event);
    w.int32("droppedEventsCount", s.dropped_events_count);
    w.list("links", &s.links, link);
    w.int32("droppedLinksCount", s.dropped_links_count);
    w.msg("status", s.status.as_ref(), status);
    w.close();
}

fn event(out: &mut Vec<u8>, e: &span::Event) {
    let mut w = ObjWriter::open(out);
    w.int64_str("timeUnixNano", e.time_unix_nano);
    w.str("name", &e.name);
    w.list("attributes", &e.attributes, key_value);
    w.int32("droppedAttributesCount", e.dropped_attributes_count);
    w.close();
}

fn link(out: &mut Vec<u8>, l: &span::Link) {
    let mut w = ObjWriter::open(out);
    w.hex("traceId", &l.trace_id);
    w.hex("spanId", &l.span_id);
    w.str("traceState", &l.trace_state);
    w.list("attributes", &l.attributes, key_value);
    w.int32("droppedAttributesCount", l.dropped_attributes_count);
    w.int32("flags", l.flags);
    w.close();
}

fn status(out: &mut Vec<u8>, s: &Status) {
    let mut w = ObjWriter::open(out);
    w.str("message", &s.message);
    w.int32("code", s.code);
    w.close();
}

fn key_value(out: &mut Vec<u8>, kv: &KeyValue) {
    let mut w = ObjWriter::open(out);
    // Written even when empty: some backends require the key.
    write_str(w.key("key"), &kv.key);
    w.msg("value", kv.value.as_ref(), any_value);
    w.int32("keyStrindex", kv.key_strindex);
    w.close();
}

fn kvlist(out: &mut Vec<u8>, l: &KeyValueList) {
    let mut w = ObjWriter::open(out);
    w.list("values", &l.values, key_value);
    w.close();
}

fn any_value(out: &mut Vec<u8>, v: &AnyValue) {
    use any_value::Value;
    let mut w = ObjWriter::open(out);
    // A set oneof member is written even when it holds its type's default.
    match &v.value {
        None => {}
        Some(Value::StringValue(s)) => write_str(w.key("stringValue"), s),
        Some(Value::BoolValue(b)) => {
            let text: &[u8] = if *b { b"true" } else { b"false" };
            w.key("boolValue").extend_from_slice(text);
        }
        Some(Value::IntValue(i)) => {
            let out = w.key("intValue");
            out.push(b'"');
            out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes());
            out.push(b'"');
        }
        Some(Value::DoubleValue(d)) => write_double(w.key("doubleValue"), *d),
        Some(Value::ArrayValue(a)) => {
            let mut inner = ObjWriter::open(w.key("arrayValue"));
            inner.list("values", &a.values, any_value);
            inner.close();
        }
        Some(Value::KvlistValue(l)) => kvlist(w.key("kvlistValue"), l),
        Some(Value::BytesValue(b)) => {
            let out = w.key("bytesValue");
            out.push(b'"');
            // Bytes values are rare in traces; one temporary string is fine.
            let text = base64::engine::general_purpose::STANDARD.encode(b);
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        Some(Value::StringValueStrindex(i)) => {
            w.key("stringValueStrindex")
                .extend_from_slice(itoa::Buffer::new().format(*i).as_bytes());
        }
    }
    w.close();
}

fn write_double(out: &mut Vec<u8>, d: f64) {
    if d.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if d.is_infinite() {
        let text: &[u8] = if d > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        };
        out.extend_from_slice(text);
    } else {
        out.extend_from_slice(zmij::Buffer::new().format_finite(d).as_bytes());
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
}

/// Writes `s` as a JSON string, copying runs that need no escaping in one go (message
/// text in gateway spans is long and mostly plain).
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}
