//! Publishes each pipeline's durable-queue state on `/metrics`.
//!
//! The queue keeps its own counters ([`DurableQueue::stats`]) rather than touching the
//! metric families on its hot path, so one small task per queue copies them about every
//! [`REFRESH`]: `tracecast_queue_entries` and `tracecast_queue_bytes` (gauges) and
//! `tracecast_queue_appends_total` / `tracecast_queue_fsyncs_total` /
//! `tracecast_queue_entries_handed_live_total` / `tracecast_queue_entries_read_from_disk_total`
//! (counters advanced by the
//! difference since the last copy; a queue reopened later starts its own count from 0).
//! The task holds a clone of the queue, so it must be stopped (its token cancelled) before
//! the queue's directory is reopened; on stop it refreshes a last time and drops the
//! pipeline's gauges, so a removed pipeline does not leave stale series behind.
//! While it runs, the queue is listed in [`open_queues`] (the admin status page reads the
//! queues' depth and oldest entry there).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracecast_core::{metrics, CancellationToken};
use tracecast_queue::{DurableQueue, QueueStats};

/// How often the gauges are refreshed.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Every open pipeline queue by pipeline name, for the status page ([`open_queues`]): a
/// queue is listed while its refresher runs. The number tells which refresher listed it, so
/// a stopping refresher never unlists the queue that replaced it.
static OPEN: LazyLock<Mutex<BTreeMap<String, (u64, DurableQueue)>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));
static NEXT: AtomicU64 = AtomicU64::new(0);

fn open() -> MutexGuard<'static, BTreeMap<String, (u64, DurableQueue)>> {
    OPEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// The pipelines' open durable queues (clones sharing the queue), by pipeline name.
pub fn open_queues() -> Vec<(String, DurableQueue)> {
    open()
        .iter()
        .map(|(name, (_, q))| (name.clone(), q.clone()))
        .collect()
}

/// Starts refreshing the metrics of `pipeline`'s queue until `stop` fires.
pub fn spawn(pipeline: String, queue: DurableQueue, stop: CancellationToken) -> JoinHandle<()> {
    let listed = NEXT.fetch_add(1, Ordering::Relaxed);
    open().insert(pipeline.clone(), (listed, queue.clone()));
    tokio::spawn(async move {
        let labels = metrics::pipeline(&pipeline);
        let mut last = Copied::default();
        loop {
            last.publish(&labels, &queue.stats());
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
        last.publish(&labels, &queue.stats());
        {
            let mut open = open();
            if open.get(&pipeline).is_some_and(|(n, _)| *n == listed) {
                open.remove(&pipeline);
            }
        }
        crate::metrics::QUEUE_ENTRIES.remove(&labels);
        crate::metrics::QUEUE_BYTES.remove(&labels);
    })
}

/// Counter values already added to the families.
#[derive(Debug, Default)]
struct Copied {
    appends: u64,
    fsyncs: u64,
    live: u64,
    disk: u64,
}

impl Copied {
    fn publish(&mut self, labels: &metrics::PipelineLabels, stats: &QueueStats) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        crate::metrics::QUEUE_ENTRIES
            .get_or_create(labels)
            .set(gauge(stats.entries_pending));
        crate::metrics::QUEUE_BYTES
            .get_or_create(labels)
            .set(gauge(stats.bytes_on_disk));
        crate::metrics::QUEUE_APPENDS
            .get_or_create(labels)
            .inc_by(stats.appends.saturating_sub(self.appends));
        crate::metrics::QUEUE_FSYNCS
            .get_or_create(labels)
            .inc_by(stats.fsyncs.saturating_sub(self.fsyncs));
        crate::metrics::QUEUE_HANDED_LIVE
            .get_or_create(labels)
            .inc_by(stats.entries_handed_live.saturating_sub(self.live));
        crate::metrics::QUEUE_READ_FROM_DISK
            .get_or_create(labels)
            .inc_by(stats.entries_read_from_disk.saturating_sub(self.disk));
        self.appends = self.appends.max(stats.appends);
        self.fsyncs = self.fsyncs.max(stats.fsyncs);
        self.live = self.live.max(stats.entries_handed_live);
        self.disk = self.disk.max(stats.entries_read_from_disk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tracecast_queue::QueueOptions;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    }

    #[tokio::test]
    async fn copies_queue_stats_and_drops_gauges_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (queue, _) = DurableQueue::open(dir.path(), QueueOptions::default()).unwrap();
        for _ in 0..3 {
            queue.append(Bytes::from_static(b"entry")).await.unwrap();
        }
        let stop = CancellationToken::new();
        let task = spawn("qm_test".into(), queue.clone(), stop.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let registry = crate::metrics_registry();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let l = r#"{pipeline="qm_test"}"#;
        assert_eq!(
            value(&text, &format!("tracecast_queue_entries{l}")),
            Some(3.0)
        );
        assert!(value(&text, &format!("tracecast_queue_bytes{l}")).unwrap() > 15.0);
        assert_eq!(
            value(&text, &format!("tracecast_queue_appends_total{l}")),
            Some(3.0)
        );
        assert!(value(&text, &format!("tracecast_queue_fsyncs_total{l}")).unwrap() >= 1.0);

        // Delivering two entries moves the gauge at the next refresh.
        for _ in 0..2 {
            let (seq, _) = queue.next().await.unwrap();
            queue.token(seq).confirm();
        }
        tokio::time::sleep(REFRESH + Duration::from_millis(300)).await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert_eq!(
            value(&text, &format!("tracecast_queue_entries{l}")),
            Some(1.0)
        );
        assert!(open_queues().iter().any(|(p, _)| p == "qm_test"));
        stop.cancel();
        task.await.unwrap();
        assert!(!open_queues().iter().any(|(p, _)| p == "qm_test"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert_eq!(value(&text, &format!("tracecast_queue_entries{l}")), None);
        assert_eq!(
            value(&text, &format!("tracecast_queue_appends_total{l}")),
            Some(3.0),
            "counters stay: {text}"
        );
        queue.shutdown().await.unwrap();
    }
}
