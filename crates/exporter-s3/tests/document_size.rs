//! The trace file and assembly's memory stay linear in the trace's size: a resource shared
//! by 20,000 ScopeSpans is held and written once, large trace metadata is written once at
//! the trace level, a 2,000-character custom trace id is kept whole in `id` only, and
//! `max_buffered_bytes` counts decoded bytes with shared resources counted once.

mod support;

use std::time::Duration;

use support::{check_schema, s};
use tokio::time::Instant;
use tracecast_core::proto::common::v1::InstrumentationScope;
use tracecast_core::proto::resource::v1::Resource;
use tracecast_core::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecast_core::{BatchContext, ExportTraceServiceRequest, TraceBatch};
use tracecast_exporter_s3::assembly::{decoded_span_bytes, Assembler, AssemblyLimits};
use tracecast_exporter_s3::document;

fn limits() -> AssemblyLimits {
    AssemblyLimits {
        idle_timeout: Duration::from_secs(5),
        max_wait: Duration::from_secs(60),
        max_spans: 1_000_000,
        max_bytes: u64::MAX,
    }
}

fn span(
    trace: u8,
    id: u64,
    parent: Option<u64>,
    attributes: Vec<tracecast_core::proto::common::v1::KeyValue>,
) -> Span {
    let start = 1_705_311_600_000_000_000 + id * 1_000;
    Span {
        trace_id: vec![trace; 16],
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
        name: format!("s{id}"),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 500,
        attributes,
        ..Default::default()
    }
}

/// One ResourceSpans with `resource` and one ScopeSpans per span.
fn batch(
    resource: Vec<tracecast_core::proto::common::v1::KeyValue>,
    spans: Vec<Span>,
) -> TraceBatch {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: spans
                .into_iter()
                .map(|sp| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "gateway".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![sp],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
    };
    TraceBatch::new(BatchContext::new("otlp"), req, None)
}

#[test]
fn twenty_thousand_scope_spans_sharing_one_resource_hold_and_write_it_once() {
    const N: u64 = 20_000;
    let big_resource = format!("R{}R", "r".repeat(200_000));
    let big_meta = format!("M{}M", "m".repeat(200_000));
    let custom_id = format!("cid-{}", "c".repeat(1_996));
    let mut spans = vec![span(
        1,
        1,
        None,
        vec![
            s("tracecast.custom_trace_id", &custom_id),
            s("trace.metadata.document", &big_meta),
            s("trace.metadata.env", "prod"),
        ],
    )];
    spans.extend((2..=N).map(|i| span(1, i, Some(1), vec![s("http.method", "GET")])));
    let input_span_bytes: u64 = spans.iter().map(decoded_span_bytes).sum();
    let batch = batch(
        vec![s("service.name", "gateway"), s("big", &big_resource)],
        spans,
    );

    let mut a = Assembler::new(limits());
    let mut out = Vec::new();
    a.ingest(&batch, Instant::now(), &mut out);
    assert!(out.is_empty());
    let held = a.buffered_bytes();
    assert!(
        held >= input_span_bytes + big_resource.len() as u64,
        "decoded spans and the resource are counted: {held}"
    );
    assert!(
        held < input_span_bytes + 2 * big_resource.len() as u64 + N * 1_000,
        "the shared resource is counted once, not per ScopeSpans: {held}"
    );
    a.take_all(&mut out);
    assert_eq!(a.buffered_bytes(), 0, "everything released");
    assert_eq!(out.len(), 1);

    let doc = document::build(&out[0], None);
    let bytes = serde_json::to_vec(&doc).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert_eq!(text.matches(&big_resource).count(), 1, "resource once");
    assert_eq!(text.matches(&big_meta).count(), 1, "large metadata once");
    assert_eq!(
        text.matches(&custom_id).count(),
        1,
        "the long id once, whole"
    );
    assert!(
        bytes.len() < 3 * 200_000 + N as usize * 1_000,
        "file of {} bytes is not linear",
        bytes.len()
    );

    let json = check_schema(&bytes);
    assert_eq!(json["id"], custom_id.as_str());
    assert_eq!(json["metadata"]["document"], big_meta.as_str());
    let resources = json["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0]["attributes"]["service.name"], "gateway");
    let observations = json["observations"].as_array().unwrap();
    assert_eq!(observations.len(), N as usize);
    for o in observations {
        assert_eq!(o["resource"], 0);
        assert!(o.get("resourceAttributes").is_none(), "large: not repeated");
        assert_eq!(o["metadata"]["env"], "prod", "small metadata repeated");
        assert!(o["metadata"].get("document").is_none());
        assert_eq!(o["scope"]["name"], "gateway", "small scope repeated");
        let tid = o["traceId"].as_str().unwrap();
        assert!(
            tid.len() <= document::MAX_OBSERVATION_TRACE_ID_BYTES,
            "{tid}"
        );
        assert!(tid.starts_with("cid-ccc"), "{tid}");
    }
}

#[test]
fn a_small_resource_is_listed_once_and_still_repeated_in_each_observation() {
    let spans = (1..=3)
        .map(|i| span(2, i, (i > 1).then_some(1), Vec::new()))
        .collect();
    let b = batch(vec![s("service.name", "gateway")], spans);
    // The same resource sent again in a second request: still one entry.
    let again = batch(
        vec![s("service.name", "gateway")],
        vec![span(2, 9, Some(1), Vec::new())],
    );
    let mut a = Assembler::new(limits());
    let mut out = Vec::new();
    a.ingest(&b, Instant::now(), &mut out);
    a.ingest(&again, Instant::now(), &mut out);
    a.take_all(&mut out);
    let bytes = serde_json::to_vec(&document::build(&out[0], None)).unwrap();
    let json = check_schema(&bytes);
    assert_eq!(json["resources"].as_array().unwrap().len(), 1);
    for o in json["observations"].as_array().unwrap() {
        assert_eq!(o["resource"], 0);
        assert_eq!(o["resourceAttributes"]["service.name"], "gateway");
    }
}

#[test]
fn a_resource_shared_by_many_traces_is_counted_until_the_last_one_is_released() {
    let big = "x".repeat(100_000);
    let spans: Vec<Span> = (1..=1_000u64)
        .map(|i| span((i % 200) as u8, i, None, Vec::new()))
        .collect();
    let span_bytes: u64 = spans.iter().map(decoded_span_bytes).sum();
    let b = batch(vec![s("big", &big)], spans);
    let mut a = Assembler::new(limits());
    let mut out = Vec::new();
    a.ingest(&b, Instant::now(), &mut out);
    let held = a.buffered_bytes();
    assert!(held >= span_bytes + 100_000, "{held}");
    assert!(
        held < span_bytes + 100_000 + 1_000 * 500,
        "counted once: {held}"
    );
    // Pressure: a bound below what is held releases the oldest traces until it fits; the
    // resource stays counted while any trace refers to it.
    let mut a2 = Assembler::new(AssemblyLimits {
        max_bytes: 100_000,
        ..limits()
    });
    let mut released = Vec::new();
    a2.ingest(&b, Instant::now(), &mut released);
    assert_eq!(
        a2.buffered_bytes(),
        0,
        "released everything to get under the bound"
    );
    assert_eq!(released.len(), 200);
    a.take_all(&mut out);
    assert_eq!(a.buffered_bytes(), 0);
}
