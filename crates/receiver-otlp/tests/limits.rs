//! The bounds on what one request may decode to (span count, decoded size, custom trace id
//! length, trace metadata size), each on a real socket: the exact status, the
//! `google.rpc.Status` message naming the limit, nothing handed to the pipeline; and the
//! requests just under each bound accepted.

mod support;

use prost::Message;
use support::{client, gzip, request, start, string_attr};
use tracecast_config::ByteSize;
use tracecast_core::proto::common::v1::{any_value, AnyValue, KeyValue, KeyValueList};
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::ExportTraceServiceRequest;
use tracecast_receiver_otlp::Status;

const PROTOBUF: &str = "application/x-protobuf";

/// The 16 MB protobuf body of `n` empty spans (`0x12 0x00`) in one ScopeSpans.
fn empty_span_bomb(n: usize) -> Vec<u8> {
    fn wrap(tag: u8, inner: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let mut len = inner.len() as u64;
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(inner);
        out
    }
    wrap(0x0a, &wrap(0x12, &[0x12u8, 0x00].repeat(n)))
}

async fn post(url: &str, content_type: &str, gzipped: bool, body: Vec<u8>) -> reqwest::Response {
    let mut req = client().post(url).header("content-type", content_type);
    if gzipped {
        req = req.header("content-encoding", "gzip");
    }
    req.body(body).send().await.unwrap()
}

/// A protobuf refusal: 413, INVALID_ARGUMENT, and its message.
async fn refused(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 413);
    let status = Status::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 3, "{}", status.message);
    status.message
}

fn kvlist(entries: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: entries,
        })),
    }
}

/// `request(n)` with `attrs` added to its first span.
fn with_root_attrs(n: usize, attrs: Vec<KeyValue>) -> ExportTraceServiceRequest {
    let mut req = request(n);
    req.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .extend(attrs);
    req
}

fn trace_attr(entries: Vec<KeyValue>) -> KeyValue {
    KeyValue {
        key: "trace".into(),
        value: Some(kvlist(entries)),
        ..Default::default()
    }
}

#[tokio::test]
async fn gzip_bomb_of_empty_spans_is_413_naming_max_spans_per_request() {
    let s = start("otlp/bomb", |_| {}).await;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut enc, &empty_span_bomb(8_000_000)).unwrap();
    let body = enc.finish().unwrap();
    assert!(body.len() < 20 * 1024, "{} bytes of gzip", body.len());
    let message = refused(post(&s.url, PROTOBUF, true, body).await).await;
    assert_eq!(
        message,
        "request has 8000000 spans, over receivers.otlp/bomb.max_spans_per_request (100000); \
         send fewer spans per request or raise the limit"
    );
    assert!(s.sink.batches().is_empty());
}

#[tokio::test]
async fn json_span_bomb_stops_decoding_at_max_spans_per_request() {
    let s = start("otlp/jsonbomb", |_| {}).await;
    let spans = vec!["{}"; 5_000_000].join(",");
    let body = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
    let resp = post(&s.url, "application/json", true, gzip(body.as_bytes())).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let status: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(status["code"], 3);
    assert_eq!(
        status["message"],
        "request has more than 100000 spans (decoding stopped there), over \
         receivers.otlp/jsonbomb.max_spans_per_request (100000); send fewer spans per request \
         or raise the limit"
    );
    assert!(s.sink.batches().is_empty());
}

#[tokio::test]
async fn json_decoded_size_is_bounded_while_decoding() {
    let s = start("otlp/jsonsize", |c| {
        c.max_decoded_size = Some(ByteSize::mib(4))
    })
    .await;
    // 300,000 empty attributes on one span: 1 MB of JSON, tens of MB of KeyValues.
    let attrs = vec!["{}"; 300_000].join(",");
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{attrs}]}}]}}]}}]}}"#
    );
    let resp = post(&s.url, "application/json", false, body.into_bytes()).await;
    assert_eq!(resp.status(), 413);
    let status: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(
        status["message"],
        "request would take more than 4194304 bytes once decoded (decoding stopped there), over \
         receivers.otlp/jsonsize.max_decoded_size (4194304); send fewer or smaller spans per \
         request or raise the limit"
    );
}

#[tokio::test]
async fn protobuf_decoded_size_is_estimated_before_decoding() {
    let s = start("otlp/size", |c| c.max_decoded_size = Some(ByteSize::mib(4))).await;
    // One span with 300,000 empty attributes (`0x4a 0x00` each): 600 KB on the wire.
    let mut req = request(1);
    req.resource_spans[0].scope_spans[0].spans[0].attributes = vec![KeyValue::default(); 300_000];
    let message = refused(post(&s.url, PROTOBUF, false, req.encode_to_vec()).await).await;
    assert!(
        message.starts_with("request would take about "),
        "{message}"
    );
    assert!(
        message.ends_with(
            " bytes once decoded, over receivers.otlp/size.max_decoded_size (4194304); send fewer \
             or smaller spans per request or raise the limit"
        ),
        "{message}"
    );
    // The same request fits the default (8 x max_request_body_size).
    let s = start("otlp/size-default", |_| {}).await;
    let resp = post(&s.url, PROTOBUF, false, req.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn custom_trace_ids_up_to_the_limit_are_accepted_longer_ones_are_413() {
    let s = start("otlp/ids", |_| {}).await;
    let id_2000 = "i".repeat(2000);
    let ok = with_root_attrs(3, vec![trace_attr(vec![string_attr("trace_id", &id_2000)])]);
    let resp = post(&s.url, PROTOBUF, false, ok.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    let ok = with_root_attrs(
        3,
        vec![string_attr("tracecast.custom_trace_id", &"c".repeat(4096))],
    );
    let resp = post(&s.url, PROTOBUF, false, ok.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(s.sink.batches().len(), 2);

    let long = "x".repeat(5000);
    let cases = [
        (
            trace_attr(vec![string_attr("trace_id", &long)]),
            "\"trace\"",
        ),
        (
            // The JSON-object string form of `trace`.
            string_attr(
                "trace",
                &format!(r#"{{"trace_name":"chat","trace_id":"{long}"}}"#),
            ),
            "\"trace\"",
        ),
        (string_attr("trace.trace_id", &long), "\"trace.trace_id\""),
        (
            string_attr("tracecast.custom_trace_id", &long),
            "\"tracecast.custom_trace_id\"",
        ),
    ];
    for (attr, name) in cases {
        let req = with_root_attrs(3, vec![attr]);
        let message = refused(post(&s.url, PROTOBUF, false, req.encode_to_vec()).await).await;
        assert_eq!(
            message,
            format!(
                "resourceSpans[0].scopeSpans[0].spans[0] has a 5000-byte custom trace id \
                 (attribute {name}), over receivers.otlp/ids.max_custom_trace_id_length (4096); \
                 use a shorter trace id or raise the limit"
            )
        );
    }
    assert_eq!(s.sink.batches().len(), 2);
}

#[tokio::test]
async fn trace_metadata_over_its_size_is_413_but_large_ordinary_attributes_pass() {
    let s = start("otlp/meta", |_| {}).await;
    // 4 MB of trace metadata on the root of 200 spans: refused, whatever the span count.
    let big = trace_attr(vec![
        string_attr("trace_name", "chat"),
        string_attr("notes", &"m".repeat(4 * 1024 * 1024)),
    ]);
    let size = big.encoded_len();
    let req = with_root_attrs(200, vec![big]);
    let message = refused(post(&s.url, PROTOBUF, true, gzip(&req.encode_to_vec())).await).await;
    assert_eq!(
        message,
        format!(
            "resourceSpans[0].scopeSpans[0].spans[0] carries {size} bytes of trace metadata \
             (attribute \"trace\" and trace.* attributes), over \
             receivers.otlp/meta.max_trace_metadata_size (65536); keep the trace metadata small \
             (large content belongs in span attributes) or raise the limit"
        )
    );
    // Flattened `trace.*` attributes count together.
    let req = with_root_attrs(
        2,
        vec![
            string_attr("trace.environment", &"e".repeat(40_000)),
            string_attr("trace.team", &"t".repeat(40_000)),
        ],
    );
    let message = refused(post(&s.url, PROTOBUF, false, req.encode_to_vec()).await).await;
    assert!(
        message.contains("max_trace_metadata_size (65536)"),
        "{message}"
    );
    // Metadata on the resource is metadata too.
    let mut req = request(2);
    req.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(trace_attr(vec![string_attr("notes", &"r".repeat(70_000))]));
    let message = refused(post(&s.url, PROTOBUF, false, req.encode_to_vec()).await).await;
    assert!(
        message.starts_with("resourceSpans[0].resource carries "),
        "{message}"
    );
    assert!(s.sink.batches().is_empty());

    // Just under the limit, and content of any size (a 2 MB prompt, trace.input): accepted.
    let ok = with_root_attrs(
        2,
        vec![
            trace_attr(vec![string_attr("notes", &"m".repeat(60_000))]),
            string_attr("gen_ai.prompt", &"p".repeat(2 * 1024 * 1024)),
            string_attr("trace.input", &"i".repeat(1024 * 1024)),
        ],
    );
    let resp = post(&s.url, PROTOBUF, false, ok.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(s.sink.batches().len(), 1);
}

#[tokio::test]
async fn resource_attributes_repeated_over_many_scopes_are_bounded() {
    let s = start("otlp/resource", |_| {}).await;
    // A 100 KB resource attribute over 2,000 ScopeSpans: 200 MB once repeated per scope.
    let mut req = request(1);
    let rs = &mut req.resource_spans[0];
    rs.resource = Some(Resource {
        attributes: vec![string_attr("host.notes", &"h".repeat(100_000))],
        ..Default::default()
    });
    let scope = rs.scope_spans[0].clone();
    rs.scope_spans = vec![scope; 2000];
    let resource_size = rs.resource.as_ref().unwrap().encoded_len();
    let message = refused(post(&s.url, PROTOBUF, true, gzip(&req.encode_to_vec())).await).await;
    assert_eq!(
        message,
        format!(
            "resourceSpans[0] has {resource_size} bytes of resource attributes repeated over 2000 \
             ScopeSpans ({} bytes in trace files), over receivers.otlp/resource.max_decoded_size \
             (134217728); send fewer or smaller spans per request or raise the limit",
            resource_size * 2000
        )
    );
    // The same resource over 100 scopes is fine.
    req.resource_spans[0].scope_spans.truncate(100);
    let resp = post(&s.url, PROTOBUF, false, req.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
}

/// Found by fuzzing: a small `trace` object with a long key over many leaves flattens to
/// the key path repeated per leaf; the limit counts the flattened size.
#[tokio::test]
async fn trace_metadata_that_flattens_past_its_size_is_413() {
    let s = start("otlp/flat", |_| {}).await;
    let leaves: Vec<KeyValue> = (0..1500)
        .map(|i| string_attr(&format!("k{i}"), "v"))
        .collect();
    let nested = KeyValue {
        key: "x".repeat(3000),
        value: Some(kvlist(leaves)),
        ..Default::default()
    };
    let req = with_root_attrs(20, vec![trace_attr(vec![nested])]);
    let encoded = req.encoded_len();
    assert!(encoded < 64 * 1024, "small on the wire: {encoded} bytes");
    let message = refused(post(&s.url, PROTOBUF, false, req.encode_to_vec()).await).await;
    assert!(
        message
            .starts_with("resourceSpans[0].scopeSpans[0].spans[0]'s trace metadata flattens to ")
            && message.contains("max_trace_metadata_size (65536)"),
        "{message}"
    );
    // The same as a JSON string (how SDKs without map attributes send it).
    let json = format!(
        "{{\"{}\": {{{}}}}}",
        "x".repeat(3000),
        (0..1500)
            .map(|i| format!("\"k{i}\": \"v\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let req = with_root_attrs(20, vec![string_attr("trace", &json)]);
    let message = refused(post(&s.url, PROTOBUF, false, req.encode_to_vec()).await).await;
    assert!(message.contains("flattens to"), "{message}");
    assert!(s.sink.batches().is_empty());
}

/// Found by fuzzing: a span link with an id of the wrong length is dropped (the span is
/// kept), so the forwarder never writes OTLP/JSON that decoders refuse.
#[tokio::test]
async fn span_links_with_invalid_ids_are_dropped_and_the_span_kept() {
    use tracecast_core::proto::trace::v1::span::Link;
    let s = start("otlp/links", |_| {}).await;
    let mut req = request(1);
    let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    span.links = vec![
        Link {
            trace_id: vec![0x60],
            span_id: vec![1; 8],
            ..Default::default()
        },
        Link {
            trace_id: vec![7; 16],
            span_id: vec![8; 8],
            ..Default::default()
        },
    ];
    let resp = post(&s.url, PROTOBUF, false, req.encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    let batches = s.sink.batches();
    assert_eq!(batches.len(), 1);
    let got = &batches[0].request().resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(got.links.len(), 1, "only the valid link is kept");
    assert_eq!(got.links[0].trace_id, vec![7; 16]);
    assert!(
        batches[0].received_protobuf().is_none(),
        "the received bytes no longer describe the request"
    );
}
