//! Hand-written cases: each decode tolerance, each error message, and the encoder's exact
//! output. Real-client fixtures and round trips live in `crates/core/tests/otlp_json.rs`.

use super::*;
use crate::proto::collector::trace::v1::ExportTracePartialSuccess;
use crate::proto::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList};
use crate::proto::trace::v1::Span;

/// A request holding `span` at `resourceSpans[0].scopeSpans[0].spans[0]`.
fn with_span(span: &str) -> String {
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}"#)
}

fn span_of(body: &str) -> Span {
    let req = decode_request(body.as_bytes()).unwrap();
    req.resource_spans[0].scope_spans[0].spans[0].clone()
}

/// The value of the first attribute of a span whose attribute value is `value`.
fn value_of(value: &str) -> Option<Value> {
    let span = span_of(&with_span(&format!(
        r#"{{"attributes":[{{"key":"k","value":{value}}}]}}"#
    )));
    span.attributes[0].value.clone().unwrap().value
}

fn err(body: &str) -> String {
    decode_request(body.as_bytes()).unwrap_err().to_string()
}

fn span_err(span: &str) -> String {
    err(&with_span(span))
}

const TID: &str = "5b8efff798038103d269b633813fc60c";
const SID: &str = "eee19b7ec3c1b174";

#[test]
fn snake_case_names_equal_camel_case() {
    let camel = with_span(&format!(
        r#"{{"traceId":"{TID}","spanId":"{SID}","parentSpanId":"{SID}","traceState":"a=b",
        "startTimeUnixNano":"1","endTimeUnixNano":"2","droppedAttributesCount":1,
        "droppedEventsCount":2,"droppedLinksCount":3,
        "events":[{{"timeUnixNano":"5","droppedAttributesCount":4}}],
        "links":[{{"traceId":"{TID}","spanId":"{SID}","traceState":"x","droppedAttributesCount":6}}],
        "attributes":[{{"key":"k","value":{{"stringValue":"v"}}}}]}}"#
    ));
    let snake = with_span(&format!(
        r#"{{"trace_id":"{TID}","span_id":"{SID}","parent_span_id":"{SID}","trace_state":"a=b",
        "start_time_unix_nano":"1","end_time_unix_nano":"2","dropped_attributes_count":1,
        "dropped_events_count":2,"dropped_links_count":3,
        "events":[{{"time_unix_nano":"5","dropped_attributes_count":4}}],
        "links":[{{"trace_id":"{TID}","span_id":"{SID}","trace_state":"x","dropped_attributes_count":6}}],
        "attributes":[{{"key":"k","value":{{"string_value":"v"}}}}]}}"#
    ))
    .replace("resourceSpans", "resource_spans")
    .replace("scopeSpans", "scope_spans");
    let a = decode_request(camel.as_bytes()).unwrap();
    assert_eq!(a, decode_request(snake.as_bytes()).unwrap());
    let span = &a.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.dropped_links_count, 3);
    assert_eq!(span.links[0].dropped_attributes_count, 6);
}

#[test]
fn ids_are_hex_in_either_case_and_empty_means_empty() {
    let span = span_of(&with_span(&format!(
        r#"{{"traceId":"{}","spanId":"{SID}","parentSpanId":""}}"#,
        TID.to_uppercase()
    )));
    assert_eq!(hex::encode(&span.trace_id), TID);
    assert_eq!(hex::encode(&span.span_id), SID);
    assert!(span.parent_span_id.is_empty());
}

#[test]
fn integers_as_numbers_strings_and_integral_exponents() {
    let span = span_of(&with_span(
        r#"{"startTimeUnixNano":1700000000000000000,"endTimeUnixNano":"18446744073709551615",
        "flags":"257","droppedAttributesCount":"3","droppedEventsCount":2.0,"kind":"2"}"#,
    ));
    assert_eq!(span.start_time_unix_nano, 1_700_000_000_000_000_000);
    assert_eq!(span.end_time_unix_nano, u64::MAX);
    assert_eq!(span.flags, 257);
    assert_eq!(span.dropped_attributes_count, 3);
    assert_eq!(span.dropped_events_count, 2);
    assert_eq!(span.kind, 2);
    assert_eq!(
        value_of(r#"{"intValue":"-42"}"#),
        Some(Value::IntValue(-42))
    );
    assert_eq!(value_of(r#"{"intValue":-42}"#), Some(Value::IntValue(-42)));
    assert_eq!(
        value_of(r#"{"intValue":"1e3"}"#),
        Some(Value::IntValue(1000))
    );
}

#[test]
fn enums_as_numbers_or_names() {
    let span = span_of(&with_span(
        r#"{"kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR","message":"m"}}"#,
    ));
    assert_eq!(span.kind, 2);
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    // Unknown numbers are kept: proto3 enums are open.
    assert_eq!(span_of(&with_span(r#"{"kind":9}"#)).kind, 9);
}

#[test]
fn doubles_as_numbers_and_special_strings() {
    let double = |json: &str| match value_of(json) {
        Some(Value::DoubleValue(d)) => d,
        other => panic!("not a double: {other:?}"),
    };
    assert!(double(r#"{"doubleValue":"NaN"}"#).is_nan());
    assert_eq!(double(r#"{"doubleValue":"Infinity"}"#), f64::INFINITY);
    assert_eq!(double(r#"{"doubleValue":"-Infinity"}"#), f64::NEG_INFINITY);
    assert_eq!(double(r#"{"doubleValue":0.0125}"#), 0.0125);
    assert_eq!(double(r#"{"doubleValue":3}"#), 3.0);
    assert_eq!(double(r#"{"doubleValue":"-1.5e2"}"#), -150.0);
}

#[test]
fn bytes_as_standard_or_url_safe_base64_padded_or_not() {
    let want = Some(Value::BytesValue(vec![0xde, 0xad, 0xbe, 0xef, 0xfb]));
    assert_eq!(value_of(r#"{"bytesValue":"3q2+7/s="}"#), want);
    assert_eq!(value_of(r#"{"bytesValue":"3q2+7/s"}"#), want);
    assert_eq!(value_of(r#"{"bytesValue":"3q2-7_s="}"#), want);
}

#[test]
fn empty_containers_and_empty_any_value() {
    let empty_array = Some(Value::ArrayValue(ArrayValue { values: vec![] }));
    assert_eq!(value_of(r#"{"arrayValue":{}}"#), empty_array);
    assert_eq!(value_of(r#"{"arrayValue":{"values":null}}"#), empty_array);
    assert_eq!(
        value_of(r#"{"kvlistValue":{}}"#),
        Some(Value::KvlistValue(KeyValueList { values: vec![] }))
    );
    assert_eq!(value_of("{}"), None);
    // A null oneof member is "not set"; a later member still counts.
    assert_eq!(value_of(r#"{"stringValue":null}"#), None);
    assert_eq!(
        value_of(r#"{"intValue":null,"boolValue":false}"#),
        Some(Value::BoolValue(false))
    );
    assert_eq!(
        value_of(r#"{"stringValue":""}"#),
        Some(Value::StringValue(String::new()))
    );
}

#[test]
fn null_means_default_for_every_kind_of_field() {
    let span = span_of(&with_span(
        r#"{"traceId":null,"name":null,"kind":null,"flags":null,"startTimeUnixNano":null,
        "attributes":null,"events":[null],"status":null,"links":null}"#,
    ));
    assert_eq!(span.name, "");
    assert!(span.trace_id.is_empty() && span.attributes.is_empty());
    assert_eq!(span.events, vec![Default::default()]);
    assert_eq!(span.status, None);
    let req = decode_request(br#"{"resourceSpans":[{"resource":null,"scopeSpans":null}]}"#);
    assert_eq!(req.unwrap().resource_spans[0].resource, None);
    let kv = span_of(&with_span(r#"{"attributes":[{"key":"k","value":null}]}"#)).attributes;
    assert_eq!(kv[0].value, None);
    let req = decode_request(br#"{"resourceSpans":null}"#).unwrap();
    assert!(req.resource_spans.is_empty());
}

#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let body = format!(
        r#"{{"future":{{"a":[1,{{"b":null}}]}},"resourceSpans":[{{"x":1,"scopeSpans":[{{"spans":[
        {{"traceId":"{TID}","newField":[[]],"attributes":[{{"key":"k","value":{{"stringValue":"v","later":1}},"y":2}}]}}
        ]}}]}}]}}"#
    );
    let span = span_of(&body);
    assert_eq!(hex::encode(&span.trace_id), TID);
    assert_eq!(span.attributes.len(), 1);
}

#[test]
fn nested_values_and_escapes() {
    let v = value_of(
        r#"{"kvlistValue":{"values":[{"key":"q\"\u00e9","value":{"arrayValue":{"values":[{"stringValue":"a\nb"},{}]}}}]}}"#,
    );
    let want = Value::KvlistValue(KeyValueList {
        values: vec![KeyValue {
            key: "q\"é".into(),
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(Value::StringValue("a\nb".into())),
                        },
                        AnyValue { value: None },
                    ],
                })),
            }),
            key_strindex: 0,
        }],
    });
    assert_eq!(v, Some(want));
}

fn nested_arrays(levels: usize) -> String {
    let mut v = r#"{"intValue":1}"#.to_owned();
    for _ in 1..levels {
        v = format!(r#"{{"arrayValue":{{"values":[{v}]}}}}"#);
    }
    with_span(&format!(r#"{{"attributes":[{{"key":"k","value":{v}}}]}}"#))
}

#[test]
fn value_depth_is_bounded_with_a_path() {
    assert!(decode_request(nested_arrays(MAX_VALUE_DEPTH as usize).as_bytes()).is_ok());
    let e = err(&nested_arrays(MAX_VALUE_DEPTH as usize + 1));
    assert!(
        e.starts_with("resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.arrayValue.values[0].arrayValue"),
        "{e}"
    );
    assert!(
        e.ends_with("values[0]: attribute values nest deeper than 24 levels"),
        "{e}"
    );
    // Deep nesting where nothing is decoded is skipped without recursing: no stack overflow.
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let body = format!(r#"{{"x":{deep},"resourceSpans":[]}}"#);
    assert!(decode_request(body.as_bytes()).is_ok());
    assert_eq!(
        span_err(&format!(r#"{{"name":{deep}}}"#)),
        "resourceSpans[0].scopeSpans[0].spans[0].name: expected a string, got an array"
    );
}

#[test]
fn invalid_json_names_line_and_column() {
    assert_eq!(
        err(""),
        "$: invalid JSON: EOF while parsing a value at line 1 column 0"
    );
    assert_eq!(
        err("{\"resourceSpans\": [\n  {\"scopeSpans\": [}]}"),
        "resourceSpans[0].scopeSpans[0]: invalid JSON: expected value at line 2 column 19"
    );
    assert_eq!(
        err(r#"{"resourceSpans": ["#),
        "resourceSpans[0]: invalid JSON: EOF while parsing a list at line 1 column 19"
    );
    assert_eq!(
        err("{} x"),
        "$: invalid JSON: trailing characters at line 1 column 4"
    );
    assert_eq!(
        span_err(r#"{"name":"abc}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].name: invalid JSON: EOF while parsing a string at line 1 column 62"
    );
}

#[test]
fn top_level_must_be_an_object() {
    assert_eq!(err("[]"), "$: expected a JSON object, got an array");
    assert_eq!(err("null"), "$: expected a JSON object, got null");
    assert_eq!(err("42"), "$: expected a JSON object, got a number");
    assert_eq!(err(r#""x""#), "$: expected a JSON object, got a string");
}

#[test]
fn wrong_types_name_the_path() {
    assert_eq!(
        err(r#"{"resourceSpans":{}}"#),
        "resourceSpans: expected an array, got an object"
    );
    assert_eq!(
        err(r#"{"resourceSpans":[{"scopeSpans":[{"spans":"x"}]}]}"#),
        "resourceSpans[0].scopeSpans[0].spans: expected an array, got a string"
    );
    assert_eq!(
        err(r#"{"resourceSpans":[{"resource":[]}]}"#),
        "resourceSpans[0].resource: expected an object, got an array"
    );
    assert_eq!(
        span_err(r#"{"name":5}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].name: expected a string, got a number"
    );
    assert_eq!(
        span_err(r#"{"kind":true}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].kind: expected an integer, got a boolean"
    );
    assert_eq!(
        span_err(r#"{"startTimeUnixNano":"soon"}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano: expected an integer, got \"soon\""
    );
    assert_eq!(
        span_err(r#"{"attributes":[{"key":"k","value":{"boolValue":"true"}}]}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.boolValue: expected true or false, got \"true\""
    );
    assert_eq!(
        span_err(r#"{"events":[{},{"attributes":[{"key":7}]}]}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].events[1].attributes[0].key: expected a string, got a number"
    );
}

#[test]
fn out_of_range_and_malformed_scalars() {
    assert_eq!(
        span_err(r#"{"droppedAttributesCount":-1}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].droppedAttributesCount: -1 is out of range for uint32"
    );
    assert_eq!(
        span_err(r#"{"flags":"4294967296"}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].flags: 4294967296 is out of range for uint32"
    );
    assert_eq!(
        span_err(r#"{"kind":"SPAN_KIND_BOGUS"}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].kind: unknown SpanKind \"SPAN_KIND_BOGUS\"; expected a number or one of SPAN_KIND_UNSPECIFIED, SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SPAN_KIND_CLIENT, SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER"
    );
    assert_eq!(
        span_err(r#"{"attributes":[{"key":"k","value":{"doubleValue":"nope"}}]}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.doubleValue: expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", got \"nope\""
    );
    assert_eq!(
        span_err(r#"{"attributes":[{"key":"k","value":{"bytesValue":"!!"}}]}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.bytesValue: expected base64, got \"!!\" (Invalid symbol 33, offset 0.)"
    );
}

#[test]
fn bad_ids_are_rejected_with_their_path() {
    let spans = r#"{},{},{},{"traceId":"abcdef1"}"#;
    let body = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{}},{{"spans":[{spans}]}}]}}]}}"#);
    assert_eq!(
        err(&body),
        "resourceSpans[0].scopeSpans[1].spans[3].traceId: expected 32 hex characters, got 7"
    );
    assert_eq!(
        span_err(r#"{"spanId":"eee19b7ec3c1b17z"}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].spanId: expected 16 hex characters, found 'z' at position 15"
    );
    assert_eq!(
        span_err(r#"{"traceId":"W47/95gDgQPSabYzgT/GDA=="}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].traceId: expected 32 hex characters, got 24 (this looks like base64; OTLP/JSON ids are hex)"
    );
    assert_eq!(
        span_err(r#"{"links":[{"spanId":12}]}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].links[0].spanId: expected a string of 16 hex characters, got a number"
    );
    assert_eq!(
        span_err(r#"{"parentSpanId":"0011"}"#),
        "resourceSpans[0].scopeSpans[0].spans[0].parentSpanId: expected 16 hex characters, got 4"
    );
}

#[test]
fn encoder_writes_canonical_otlp_json() {
    let span = Span {
        trace_id: hex::decode(TID).unwrap(),
        span_id: hex::decode(SID).unwrap(),
        name: "a\"b\\c\n\u{1}é".into(),
        kind: 2,
        start_time_unix_nano: u64::MAX,
        attributes: vec![
            KeyValue {
                key: "n".into(),
                value: Some(AnyValue {
                    value: Some(Value::DoubleValue(f64::NAN)),
                }),
                key_strindex: 0,
            },
            KeyValue {
                key: "i".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(-7)),
                }),
                key_strindex: 0,
            },
            KeyValue {
                key: "e".into(),
                value: Some(AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue::default())),
                }),
                key_strindex: 0,
            },
            KeyValue {
                key: "d".into(),
                value: Some(AnyValue {
                    value: Some(Value::DoubleValue(-0.5)),
                }),
                key_strindex: 0,
            },
        ],
        status: Some(Default::default()),
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![crate::proto::trace::v1::ResourceSpans {
            scope_spans: vec![crate::proto::trace::v1::ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let json = String::from_utf8(encode_request(&req)).unwrap();
    assert_eq!(
        json,
        concat!(
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","#,
            r#""spanId":"eee19b7ec3c1b174","name":"a\"b\\c\n\u0001é","kind":2,"#,
            r#""startTimeUnixNano":"18446744073709551615","attributes":["#,
            r#"{"key":"n","value":{"doubleValue":"NaN"}},{"key":"i","value":{"intValue":"-7"}},"#,
            r#"{"key":"e","value":{"arrayValue":{}}},{"key":"d","value":{"doubleValue":-0.5}}],"#,
            r#""status":{}}]}]}]}"#
        )
    );
    // serde_json agrees it is valid JSON with the same string.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"],
        "a\"b\\c\n\u{1}é"
    );
}

#[test]
fn responses_round_trip() {
    let full = ExportTraceServiceResponse::default();
    assert_eq!(encode_response(&full), b"{}");
    assert_eq!(decode_response(b"{}").unwrap(), full);
    let partial = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 3,
            error_message: "too old".into(),
        }),
    };
    let json = encode_response(&partial);
    assert_eq!(
        json,
        br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"too old"}}"#
    );
    assert_eq!(decode_response(&json).unwrap(), partial);
    let snake = br#"{"partial_success":{"rejected_spans":3,"error_message":"too old"}}"#;
    assert_eq!(decode_response(snake).unwrap(), partial);
    assert_eq!(
        decode_response(br#"{"partialSuccess":{"rejectedSpans":"x"}}"#)
            .unwrap_err()
            .to_string(),
        "partialSuccess.rejectedSpans: expected an integer, got \"x\""
    );
}

#[test]
fn limited_decode_stops_at_the_span_limit() {
    let spans = vec!["{}"; 1000].join(",");
    let body = with_span(&spans);
    let limits = DecodeLimits {
        max_spans: 999,
        max_decoded_size: u64::MAX,
    };
    assert_eq!(
        decode_request_limited(body.as_bytes(), limits),
        Err(LimitedDecodeError::OverLimit(LimitExceeded::Spans {
            limit: 999
        }))
    );
    let limits = DecodeLimits {
        max_spans: 1000,
        ..limits
    };
    let req = decode_request_limited(body.as_bytes(), limits).unwrap();
    assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 1000);
}

#[test]
fn limited_decode_counts_struct_sizes_and_the_text() {
    // 1000 empty attributes: each a whole KeyValue in memory from 3 bytes of JSON.
    let attrs = vec!["{}"; 1000].join(",");
    let body = with_span(&format!(r#"{{"attributes":[{attrs}]}}"#));
    let structs = 1000 * std::mem::size_of::<KeyValue>()
        + std::mem::size_of::<Span>()
        + std::mem::size_of::<crate::proto::trace::v1::ScopeSpans>()
        + std::mem::size_of::<crate::proto::trace::v1::ResourceSpans>();
    let exact = (body.len() + structs) as u64;
    let limits = |max_decoded_size| DecodeLimits {
        max_spans: u64::MAX,
        max_decoded_size,
    };
    assert!(decode_request_limited(body.as_bytes(), limits(exact)).is_ok());
    assert_eq!(
        decode_request_limited(body.as_bytes(), limits(exact - 1)),
        Err(LimitedDecodeError::OverLimit(LimitExceeded::DecodedSize {
            limit: exact - 1
        }))
    );
    // Malformed input is still reported as such, with its path.
    let bad = decode_request_limited(with_span(r#"{"traceId":"x"}"#).as_bytes(), limits(1 << 30));
    assert!(matches!(bad, Err(LimitedDecodeError::Invalid(e)) if e.path.ends_with("traceId")));
}
