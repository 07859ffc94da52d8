//! Append throughput per fsync policy with 32 concurrent appenders, 1 KiB and 16 KiB
//! entries. A consumer task reads and acknowledges as it goes, so delivered segments are
//! deleted and the queue stays far below its bound, as in steady operation.
//!
//! `cargo bench -p tracecast-queue -- --warm-up-time 1 --measurement-time 3`

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tracecast_queue::{DurableQueue, FsyncPolicy, QueueOptions};

const APPENDERS: u64 = 32;

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("append");
    group.sample_size(10);
    for (name, policy) in [
        ("always", FsyncPolicy::Always),
        (
            "interval_200ms",
            FsyncPolicy::Interval(Duration::from_millis(200)),
        ),
        ("never", FsyncPolicy::Never),
    ] {
        for size in [1024usize, 16 * 1024] {
            let dir = tempfile::tempdir().unwrap();
            let options = QueueOptions {
                fsync: policy,
                max_bytes: 4 << 30,
                segment_bytes: 64 << 20,
                ..QueueOptions::default()
            };
            let (queue, _) = DurableQueue::open(dir.path(), options).unwrap();
            let consumer = {
                let queue = queue.clone();
                rt.spawn(async move {
                    while let Some((seq, _)) = queue.next().await {
                        queue.token(seq).confirm();
                    }
                })
            };
            let entry = Bytes::from(vec![0x5a; size]);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(
                BenchmarkId::new(name, format!("{}KiB", size / 1024)),
                &size,
                |b, _| {
                    b.iter_custom(|iters| {
                        let queue = queue.clone();
                        let entry = entry.clone();
                        rt.block_on(async move {
                            let per_task = iters.div_ceil(APPENDERS);
                            let start = Instant::now();
                            let tasks: Vec<_> = (0..APPENDERS)
                                .map(|_| {
                                    let queue = queue.clone();
                                    let entry = entry.clone();
                                    tokio::spawn(async move {
                                        for _ in 0..per_task {
                                            queue.append(entry.clone()).await.unwrap();
                                        }
                                    })
                                })
                                .collect();
                            for t in tasks {
                                t.await.unwrap();
                            }
                            // Time per append, over all appenders.
                            start
                                .elapsed()
                                .mul_f64(iters as f64 / (per_task * APPENDERS) as f64)
                        })
                    })
                },
            );
            let stats = queue.stats();
            eprintln!(
                "  {name} {}KiB: {} appends, {} write groups, {} fsyncs",
                size / 1024,
                stats.appends,
                stats.write_groups,
                stats.fsyncs
            );
            queue.close();
            rt.block_on(async {
                let _ = consumer.await;
                queue.shutdown().await.unwrap();
            });
        }
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
