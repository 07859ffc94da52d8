//! OTLP/JSON codec against real client output (fixtures captured from the Node and Python
//! exporters, see `testdata/gen/README.md`) and round trips through JSON and protobuf.

use prost::Message;
use tracecast_core::otlp_json::{decode_request, encode_request};
use tracecast_core::proto::common::v1::{
    any_value::Value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use tracecast_core::ExportTraceServiceRequest;

const NODE: &[u8] = include_bytes!("../testdata/node_sdk_trace.json");
const PYTHON: &[u8] = include_bytes!("../testdata/python_json_http_trace.json");

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> &'a Value {
    let kv = attrs.iter().find(|kv| kv.key == key);
    let value = kv
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref());
    value.unwrap_or_else(|| panic!("no attribute {key}"))
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.into())),
    }
}

fn int(i: i64) -> AnyValue {
    AnyValue {
        value: Some(Value::IntValue(i)),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        key_strindex: 0,
    }
}

fn array(values: Vec<AnyValue>) -> Value {
    Value::ArrayValue(ArrayValue { values })
}

fn ids(span: &Span) -> (String, String, String) {
    (
        hex::encode(&span.trace_id),
        hex::encode(&span.span_id),
        hex::encode(&span.parent_span_id),
    )
}

/// What both fixture scripts put into their spans (same shape, different ids and times).
fn assert_common_shape(req: &ExportTraceServiceRequest, service: &str, scope_version: &str) {
    assert_eq!(req.resource_spans.len(), 1);
    let rs = &req.resource_spans[0];
    let resource = rs.resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        &Value::StringValue(service.into())
    );
    assert_eq!(rs.scope_spans.len(), 1);
    let scope = rs.scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("fixture-scope", scope_version)
    );
    let spans = &rs.scope_spans[0].spans;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["llm.call", "gateway.request"]);
    let (child, root) = (&spans[0], &spans[1]);

    assert_eq!((child.kind, root.kind), (3, 2));
    assert_eq!(child.parent_span_id, root.span_id);
    assert_eq!(child.trace_id, root.trace_id);
    let child_status = child.status.as_ref().unwrap();
    assert_eq!(
        (child_status.code, child_status.message.as_str()),
        (2, "upstream timeout")
    );
    assert_eq!(root.status.as_ref().unwrap().code, 1);
    assert_eq!(child.links.len(), 1);
    assert_eq!(child.links[0].span_id, root.span_id);
    assert_eq!(
        attr(&child.links[0].attributes, "link.reason"),
        &Value::StringValue("retry-of".into())
    );
    assert!(root.links.is_empty() && child.events.is_empty());

    let a = &root.attributes;
    assert_eq!(attr(a, "http.method"), &Value::StringValue("POST".into()));
    assert_eq!(attr(a, "http.status_code"), &Value::IntValue(200));
    assert_eq!(attr(a, "gen_ai.usage.cost"), &Value::DoubleValue(0.0125));
    assert_eq!(attr(a, "cache.hit"), &Value::BoolValue(true));
    assert_eq!(
        attr(a, "gen_ai.models"),
        &array(vec![string("gpt-4o"), string("claude-3")])
    );
    assert_eq!(
        attr(a, "retry.delays"),
        &array(vec![int(1), int(2), int(3)])
    );
    assert_eq!(
        attr(a, "payload.digest"),
        &Value::BytesValue(vec![0xde, 0xad, 0xbe, 0xef])
    );
    let Value::KvlistValue(request) = attr(a, "gen_ai.request") else {
        panic!("gen_ai.request is not a kvlist");
    };
    assert_eq!(request.values[0], kv("model", string("gpt-4o")));
    assert_eq!(
        attr(&request.values, "temperature"),
        &Value::DoubleValue(0.5)
    );

    let events: Vec<&str> = root.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, ["prompt", "completion"]);
    assert_eq!(
        attr(&root.events[0].attributes, "gen_ai.prompt"),
        &Value::StringValue("Say \"hello\"\nin JSON".into())
    );
    assert_eq!(
        attr(&root.events[1].attributes, "gen_ai.completion"),
        &Value::StringValue("héllo ✓".into())
    );
    assert_eq!(
        attr(&root.events[1].attributes, "tokens"),
        &Value::IntValue(7)
    );
}

#[test]
fn node_exporter_fixture_decodes_exactly() {
    let req = decode_request(NODE).unwrap();
    assert_common_shape(&req, "node-fixture", "1.2.3");
    let spans = &req.resource_spans[0].scope_spans[0].spans;
    let (child, root) = (&spans[0], &spans[1]);
    assert_eq!(
        ids(child),
        (
            "b3f7c2ee0a23bc43e959f2a1395837b4".into(),
            "47abf52fc7b9af72".into(),
            "5ce97de998335465".into()
        )
    );
    assert_eq!(
        (root.start_time_unix_nano, root.end_time_unix_nano),
        (1_795_346_826_187_000_000, 1_795_346_826_187_841_383)
    );
    assert_eq!(root.events[1].time_unix_nano, 1_795_346_826_187_386_330);
    // Node sets the W3C sampled bit plus "has is-remote" on spans and links.
    assert_eq!((child.flags, child.links[0].flags), (257, 257));
    let Value::KvlistValue(request) = attr(&root.attributes, "gen_ai.request") else {
        panic!("gen_ai.request is not a kvlist");
    };
    assert_eq!(attr(&request.values, "stream"), &Value::BoolValue(false));
    assert_eq!(attr(&request.values, "stop"), &array(vec![string("\n")]));
}

#[test]
fn python_json_exporter_fixture_decodes_exactly() {
    let req = decode_request(PYTHON).unwrap();
    assert_common_shape(&req, "python-fixture", "4.5.6");
    let spans = &req.resource_spans[0].scope_spans[0].spans;
    let (child, root) = (&spans[0], &spans[1]);
    assert_eq!(
        ids(child),
        (
            "ace96dce04b88c6c0c203c8e6d189f67".into(),
            "e1ddd7bbae8b9700".into(),
            "b77cea6e7a154421".into()
        )
    );
    assert_eq!(
        (root.start_time_unix_nano, root.end_time_unix_nano),
        (1_795_346_847_516_263_433, 1_795_346_847_516_410_544)
    );
    assert_eq!(child.flags, 256);
    let a = &root.attributes;
    // Sent as the strings "NaN", "Infinity", "-Infinity".
    assert!(matches!(attr(a, "score.nan"), Value::DoubleValue(d) if d.is_nan()));
    assert_eq!(attr(a, "score.inf"), &Value::DoubleValue(f64::INFINITY));
    assert_eq!(
        attr(a, "score.neg_inf"),
        &Value::DoubleValue(f64::NEG_INFINITY)
    );
    // Sent as {"arrayValue": {}} and {"kvlistValue": {}}.
    assert_eq!(attr(a, "tags.empty"), &array(vec![]));
    assert_eq!(
        attr(a, "meta.empty"),
        &Value::KvlistValue(KeyValueList { values: vec![] })
    );
    let Value::KvlistValue(request) = attr(a, "gen_ai.request") else {
        panic!("gen_ai.request is not a kvlist");
    };
    assert_eq!(attr(&request.values, "stop"), &array(vec![]));
}

/// Compares through protobuf bytes: `PartialEq` says NaN != NaN, the bytes say "same bits".
fn assert_same(a: &ExportTraceServiceRequest, b: &ExportTraceServiceRequest) {
    assert_eq!(a.encode_to_vec(), b.encode_to_vec());
}

#[test]
fn fixtures_survive_encode_then_decode() {
    for fixture in [NODE, PYTHON] {
        let decoded = decode_request(fixture).unwrap();
        let again = decode_request(&encode_request(&decoded)).unwrap();
        assert_same(&decoded, &again);
        assert!(!again.resource_spans.is_empty());
    }
}

/// A request with every field set, including the awkward values.
fn everything() -> ExportTraceServiceRequest {
    let nested = KeyValueList {
        values: vec![
            kv("s", string("ctl \u{0}\u{1f} \"q\" \\ / é ✓ 𝄞")),
            kv(
                "a",
                AnyValue {
                    value: Some(array(vec![
                        AnyValue { value: None },
                        int(i64::MIN),
                        AnyValue {
                            value: Some(Value::KvlistValue(KeyValueList::default())),
                        },
                    ])),
                },
            ),
        ],
    };
    let doubles = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        5e-324,
        1e300,
        0.1 + 0.2,
        f64::MAX,
    ];
    let mut attributes: Vec<KeyValue> = doubles
        .iter()
        .enumerate()
        .map(|(i, d)| {
            kv(
                &format!("d{i}"),
                AnyValue {
                    value: Some(Value::DoubleValue(*d)),
                },
            )
        })
        .collect();
    attributes.extend([
        kv("empty-string", string("")),
        kv("int-max", int(i64::MAX)),
        kv(
            "false",
            AnyValue {
                value: Some(Value::BoolValue(false)),
            },
        ),
        kv(
            "bytes",
            AnyValue {
                value: Some(Value::BytesValue((0..=255).collect())),
            },
        ),
        kv(
            "kv",
            AnyValue {
                value: Some(Value::KvlistValue(nested)),
            },
        ),
        kv(
            "strindex",
            AnyValue {
                value: Some(Value::StringValueStrindex(4)),
            },
        ),
        KeyValue {
            key: String::new(),
            value: None,
            key_strindex: 9,
        },
    ]);
    let span = Span {
        trace_id: (1..=16).collect(),
        span_id: (0xf0..=0xf7).collect(),
        trace_state: "vendor=a,other=b".into(),
        parent_span_id: vec![0; 8],
        flags: 0x301,
        name: "chat completion".into(),
        kind: 5,
        start_time_unix_nano: u64::MAX,
        end_time_unix_nano: 1,
        attributes,
        dropped_attributes_count: u32::MAX,
        events: vec![span::Event {
            time_unix_nano: 7,
            name: "e".into(),
            attributes: vec![kv("x", int(-1))],
            dropped_attributes_count: 1,
        }],
        dropped_events_count: 2,
        links: vec![span::Link {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            trace_state: "t=1".into(),
            attributes: vec![kv("y", string("z"))],
            dropped_attributes_count: 3,
            flags: 256,
        }],
        dropped_links_count: 4,
        status: Some(Status {
            message: "bad\ngateway".into(),
            code: 2,
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", string("gw"))],
                    dropped_attributes_count: 5,
                    entity_refs: vec![EntityRef {
                        schema_url: "https://s".into(),
                        r#type: "service".into(),
                        id_keys: vec!["service.name".into()],
                        description_keys: vec!["a".into(), "b".into()],
                    }],
                }),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "scope".into(),
                            version: "1".into(),
                            attributes: vec![kv("k", int(0))],
                            dropped_attributes_count: 6,
                        }),
                        spans: vec![span, Span::default()],
                        schema_url: "https://schema/1".into(),
                    },
                    ScopeSpans::default(),
                ],
                schema_url: "https://schema/2".into(),
            },
            ResourceSpans {
                resource: Some(Resource::default()),
                ..Default::default()
            },
        ],
    }
}

#[test]
fn protobuf_built_request_survives_json() {
    let original = everything();
    // Through protobuf first, as the receiver would hand it over.
    let from_wire = ExportTraceServiceRequest::decode(original.encode_to_vec().as_slice()).unwrap();
    let json = encode_request(&from_wire);
    let back = decode_request(&json).unwrap();
    assert_same(&original, &back);
    let attrs = &back.resource_spans[0].scope_spans[0].spans[0].attributes;
    assert!(matches!(attr(attrs, "d0"), Value::DoubleValue(d) if d.is_nan()));
    assert!(
        matches!(attr(attrs, "d3"), Value::DoubleValue(d) if d.to_bits() == (-0.0f64).to_bits())
    );
    // And the encoding is stable: encoding the decoded request gives the same bytes.
    assert_eq!(encode_request(&back), json);
}

#[test]
fn random_doubles_survive_json_bit_for_bit() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut attributes = Vec::new();
    for i in 0..20_000 {
        let d = f64::from_bits(rng.u64(..));
        // NaN payloads are not representable in JSON; canonical NaN is covered above.
        if !d.is_nan() {
            attributes.push(kv(
                &i.to_string(),
                AnyValue {
                    value: Some(Value::DoubleValue(d)),
                },
            ));
        }
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    attributes,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let back = decode_request(&encode_request(&req)).unwrap();
    assert_same(&req, &back);
}
