//! Hot paths of tracecast on the load generator's gateway-like payload (10 spans per
//! request in traces of root + generation, 2 KiB of prompt and of completion text each):
//! decode, processors, encode, S3 document build, gzip, and the prost decode+encode floor.
//!
//! Throughput is in spans (elements/s). Run:
//! `cargo bench -p tracecast-bench -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use tracecast_bench::{processors, run_chain, trace_files, Fixture};
use tracecast_core::ExportTraceServiceRequest;
use tracecast_loadgen::PayloadSpec;

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3),
        flate2::Compression::new(level),
    );
    enc.write_all(data).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

fn hot_paths(c: &mut Criterion) {
    let fx = Fixture::new(PayloadSpec::default());
    eprintln!(
        "payload: {} spans, protobuf {} B, json {} B, protobuf gzip-1 {} B, gzip-6 {} B",
        fx.spans(),
        fx.protobuf.len(),
        fx.json.len(),
        gzip(&fx.protobuf, 1).len(),
        gzip(&fx.protobuf, 6).len()
    );
    let mut g = c.benchmark_group("gateway_10_spans");
    g.throughput(Throughput::Elements(fx.spans()));

    g.bench_function("floor_prost_decode_encode", |b| {
        b.iter(|| {
            let req = ExportTraceServiceRequest::decode(black_box(&fx.protobuf[..]))
                .expect("valid payload");
            black_box(req.encode_to_vec())
        })
    });
    g.bench_function("decode_protobuf", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(&fx.protobuf[..])))
    });
    g.bench_function("decode_json", |b| {
        b.iter(|| tracecast_core::otlp_json::decode_request(black_box(&fx.json)))
    });
    g.bench_function("encode_protobuf", |b| {
        b.iter(|| black_box(&fx.request).encode_to_vec())
    });
    g.bench_function("encode_json", |b| {
        b.iter(|| tracecast_core::otlp_json::encode_request(black_box(&fx.request)))
    });

    // The batch (a request clone) is built outside the timing; processors copy on write.
    let mut chain = processors();
    g.bench_function("metadata_privacy", |b| {
        b.iter_batched(
            || fx.batch(),
            |batch| run_chain(&mut chain, batch),
            BatchSize::SmallInput,
        )
    });
    let mut metadata_only = processors();
    metadata_only.truncate(1);
    g.bench_function("metadata_only", |b| {
        b.iter_batched(
            || fx.batch(),
            |batch| run_chain(&mut metadata_only, batch),
            BatchSize::SmallInput,
        )
    });
    // What a processor that writes also pays on the way out: re-encoding the batch.
    let mut chain2 = processors();
    g.bench_function("metadata_privacy_then_encode", |b| {
        b.iter_batched(
            || fx.batch(),
            |batch| {
                run_chain(&mut chain2, batch)
                    .iter()
                    .map(|b| b.to_protobuf().len())
                    .sum::<usize>()
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("s3_trace_documents", |b| {
        b.iter_batched(
            || fx.batch(),
            |batch| trace_files(&batch),
            BatchSize::SmallInput,
        )
    });
    for level in [1u32, 5, 6] {
        g.bench_function(format!("gzip_protobuf_level_{level}"), |b| {
            b.iter(|| gzip(black_box(&fx.protobuf), level))
        });
    }
    g.bench_function("gzip_json_level_5", |b| {
        b.iter(|| gzip(black_box(&fx.json), 5))
    });
    let packed = gzip(&fx.protobuf, 6);
    g.bench_function("gunzip_protobuf", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(fx.protobuf.len());
            std::io::copy(
                &mut flate2::read::GzDecoder::new(black_box(&packed[..])),
                &mut out,
            )
            .expect("valid gzip");
            out
        })
    });
    g.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
