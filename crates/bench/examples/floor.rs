//! The single-threaded floor of forwarding OTLP: what the least a collector must do per
//! span costs on this machine, measured in the same run as the collectors (bench/compare.sh
//! (c)). Per batch of `--batch` distinct requests (the load generator's payload, same spec
//! as the run): prost-decode each request, merge them into one request, prost-encode it and
//! gzip it at `--level` with the zlib-rs backend tracecast uses. No I/O, no threads, no
//! allocator tricks: a collector's CPU per span divided by this is how far it is from the
//! floor.
//!
//! `cargo run --release -p tracecast-bench --example floor -- --seconds 3 --level 2`
//! prints one JSON object: `{"us_per_span":..,"spans":..,"seconds":..,"level":..,...}`.

use std::time::{Duration, Instant};

use prost::Message;
use tracecast_core::ExportTraceServiceRequest;
use tracecast_loadgen::{build_request, encode, Encoding, PayloadSpec};

struct Args {
    seconds: f64,
    level: u32,
    batch: usize,
    spans_per_request: usize,
    spans_per_trace: usize,
    content_kb: f64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seconds: 3.0,
        level: 2,
        batch: 50,
        spans_per_request: 10,
        spans_per_trace: 2,
        content_kb: 2.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--seconds" => a.seconds = value.parse().map_err(|e| bad(&e))?,
            "--level" => a.level = value.parse().map_err(|e| bad(&e))?,
            "--batch" => a.batch = value.parse().map_err(|e| bad(&e))?,
            "--spans-per-request" => a.spans_per_request = value.parse().map_err(|e| bad(&e))?,
            "--spans-per-trace" => a.spans_per_trace = value.parse().map_err(|e| bad(&e))?,
            "--content-kb" => a.content_kb = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !(1..=9).contains(&a.level) || a.batch == 0 || a.seconds <= 0.0 {
        return Err("--level is 1..9, --batch and --seconds above 0".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    // Distinct requests, as the load generator cycles distinct bodies.
    let bodies: Vec<Vec<u8>> = (0..args.batch as u64)
        .map(|seed| {
            let spec = PayloadSpec {
                spans_per_request: args.spans_per_request,
                spans_per_trace: args.spans_per_trace,
                content_bytes: (args.content_kb * 1024.0) as usize,
                seed: seed + 1,
                ..PayloadSpec::default()
            };
            let mut rng = fastrand_rng(spec.seed);
            encode(&build_request(&spec, &mut rng), Encoding::Protobuf)
        })
        .collect();
    let in_bytes: usize = bodies.iter().map(Vec::len).sum();
    let spans_per_batch = (args.batch * args.spans_per_request) as u64;
    let (mut spans, mut out_bytes) = (0u64, 0usize);
    let budget = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    while start.elapsed() < budget {
        let mut merged = ExportTraceServiceRequest::default();
        for body in &bodies {
            let req = ExportTraceServiceRequest::decode(&body[..]).expect("valid protobuf");
            merged.resource_spans.extend(req.resource_spans);
        }
        let encoded = merged.encode_to_vec();
        let gz = tracecast_core::gzip::compress(&encoded, args.level).expect("gzip into a Vec");
        out_bytes = gz.len();
        spans += spans_per_batch;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{{\"us_per_span\":{:.3},\"spans\":{spans},\"seconds\":{elapsed:.3},\"level\":{},\"batch_requests\":{},\"in_bytes_per_batch\":{in_bytes},\"gzip_bytes_per_batch\":{out_bytes},\"bytes_out_per_span\":{:.1}}}",
        1e6 * elapsed / spans as f64,
        args.level,
        args.batch,
        out_bytes as f64 / spans_per_batch as f64,
    );
}

fn fastrand_rng(seed: u64) -> tracecast_loadgen::payload::Rng {
    tracecast_loadgen::payload::Rng::with_seed(seed)
}
