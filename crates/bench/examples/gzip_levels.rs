//! Size and time of gzip levels (flate2's zlib-rs backend) on the gateway payload, for one
//! request and for 50 distinct requests concatenated (what a batch compresses).
//! `cargo run --release -p tracecast-bench --example gzip_levels`

use std::io::Write;
use std::time::Instant;

use tracecast_bench::Fixture;
use tracecast_loadgen::PayloadSpec;

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    enc.write_all(data).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

fn main() {
    let one = Fixture::new(PayloadSpec::default()).protobuf;
    let mut many = Vec::new();
    for i in 0..50u64 {
        let spec = PayloadSpec {
            seed: i,
            ..PayloadSpec::default()
        };
        many.extend_from_slice(&Fixture::new(spec).protobuf);
    }
    for (label, data) in [("1 request", &one), ("50 requests", &many)] {
        println!("{label}: {} bytes", data.len());
        for level in 1..=6 {
            let n = 20;
            let start = Instant::now();
            let mut size = 0;
            for _ in 0..n {
                size = gzip(data, level).len();
            }
            let per = start.elapsed() / n;
            println!(
                "  level {level}: {size:>8} bytes ({:.3} of input), {per:?}",
                size as f64 / data.len() as f64
            );
        }
    }
}
