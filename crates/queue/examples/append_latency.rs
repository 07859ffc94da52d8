//! Append latency of the durable queue at a fixed rate, the receiver's view of `fsync:
//! always`: `--rate` appends per second of `--bytes` each (default 1,000 x 25 KB, what
//! 10k spans/s of the load generator's default requests append), from `--tasks` appenders
//! sharing one schedule, while a consumer reads and confirms every entry (so the cursor
//! moves and delivered segments are deleted, as in the daemon). Prints one JSON object with
//! p50/p90/p99/p999 of append latency and the queue's counters.
//!
//! `cargo run --release -p tracecast-queue --example append_latency -- --seconds 5 --dir /path/on/the/disk`
//! (`--fsync always|interval|never`; the directory must not exist, or be empty.)

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracecast_queue::{DurableQueue, FsyncPolicy, QueueOptions};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}"))
        })
        .unwrap_or(default)
}

fn main() {
    let rate: f64 = arg("--rate", 1000.0);
    let bytes: usize = arg("--bytes", 25_000);
    let seconds: f64 = arg("--seconds", 5.0);
    let tasks: usize = arg("--tasks", 16);
    let fsync: String = arg("--fsync", "always".to_string());
    let dir: String = arg("--dir", String::new());
    assert!(
        !dir.is_empty(),
        "--dir is required (a folder on the disk to measure)"
    );
    let fsync = match fsync.as_str() {
        "always" => FsyncPolicy::Always,
        "interval" => FsyncPolicy::Interval(Duration::from_millis(100)),
        "never" => FsyncPolicy::Never,
        other => panic!("--fsync {other}: use always, interval or never"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let options = QueueOptions {
            fsync,
            ..QueueOptions::default()
        };
        let (queue, _) = DurableQueue::open(std::path::Path::new(&dir), options).expect("open");
        let consumer = {
            let queue = queue.clone();
            tokio::spawn(async move {
                while let Some((seq, _)) = queue.next().await {
                    queue.token(seq).confirm();
                }
            })
        };
        let body = Bytes::from(vec![b'x'; bytes]);
        let interval = Duration::from_secs_f64(1.0 / rate);
        let total = (rate * seconds) as u64;
        let start = Instant::now() + Duration::from_millis(50);
        let mut handles = Vec::new();
        for t in 0..tasks as u64 {
            let (queue, body) = (queue.clone(), body.clone());
            handles.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = t;
                while i < total {
                    let due = start + interval * i as u32;
                    tokio::time::sleep_until(due.into()).await;
                    // From when it was due: a late start counts (no coordinated omission).
                    queue.append(body.clone()).await.expect("append");
                    lat.push(due.elapsed());
                    i += tasks as u64;
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for h in handles {
            lat.extend(h.await.expect("appender"));
        }
        let elapsed = start.elapsed().as_secs_f64();
        lat.sort();
        let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
        let stats = queue.stats();
        queue.close();
        let _ = consumer.await;
        queue.shutdown().await.expect("shutdown");
        println!(
            "{{\"appends\":{},\"rate\":{:.0},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3},\"fsyncs\":{},\"write_groups\":{},\"cursor_writes\":{}}}",
            lat.len(),
            lat.len() as f64 / elapsed,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            q(1.0),
            stats.fsyncs,
            stats.write_groups,
            stats.cursor_writes,
        );
    });
}
