//! A few long-lived threads for CPU-heavy work done after the acknowledgement.
//!
//! Why: encoding and gzipping a batch of thousands of spans takes tens of milliseconds of
//! CPU; on the async workers it would stall every request behind it. tokio's blocking pool
//! would run it, but grows to 512 threads: at saturation that is one thread per waiting
//! batch, all competing for the cores. Here there is one thread per core the process may
//! run on (at least one); jobs wait in a FIFO channel. Threads start on first use and live
//! for the process.
//!
//! Tried and left out (issue 16): running these threads at a lower priority (nice 10) so
//! that the receivers' threads preempt them. At a fixed rate it changed the p99 within the
//! noise of the disk's fsync tail, and at saturation it let receiving outrun exporting: the
//! exporter's sending queue filled with full batches and the RSS reached 1.5 GiB
//! (`bench/compare.sh`, 2026-11-30 session 4). At the same priority the export keeps pace.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why background work did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    #[error("background work panicked: {0}")]
    Panicked(String),
    #[error("no background thread could be started: {0}")]
    NoThread(String),
}

struct Pool {
    jobs: mpsc::Sender<Job>,
}

static POOL: OnceLock<Result<Pool, String>> = OnceLock::new();

fn pool() -> Result<&'static Pool, BackgroundError> {
    POOL.get_or_init(start)
        .as_ref()
        .map_err(|e| BackgroundError::NoThread(e.clone()))
}

fn start() -> Result<Pool, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let mut started = 0;
    let mut last_error = String::new();
    for i in 0..threads {
        let queue = queue.clone();
        match std::thread::Builder::new()
            .name(format!("tracecast-bg-{i}"))
            .spawn(move || worker(&queue))
        {
            Ok(_) => started += 1,
            Err(e) => last_error = e.to_string(),
        }
    }
    if started == 0 {
        return Err(last_error);
    }
    Ok(Pool { jobs })
}

fn worker(queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Runs `work` on a background thread and waits (asynchronously) for its result. A panic in
/// `work` is caught and returned as [`BackgroundError::Panicked`].
pub async fn run<T, F>(work: F) -> Result<T, BackgroundError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .map_err(|p| BackgroundError::Panicked(crate::panic_message(&p)));
        let _ = tx.send(result);
    });
    pool()?
        .jobs
        .send(job)
        .map_err(|_| BackgroundError::NoThread("the background threads stopped".into()))?;
    rx.await
        .map_err(|_| BackgroundError::NoThread("a background thread stopped".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_on_a_pool_thread_and_returns_its_result() {
        let (sum, name) = run(|| {
            let name = std::thread::current().name().map(str::to_string);
            ((1..=100u64).sum::<u64>(), name)
        })
        .await
        .unwrap();
        assert_eq!(sum, 5050);
        assert!(name.is_some_and(|n| n.starts_with("tracecast-bg-")));
    }

    #[tokio::test]
    async fn a_panic_is_an_error_and_the_pool_keeps_working() {
        let err = run(|| -> u32 { panic!("boom in a batch") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("boom in a batch"), "{err}");
        let jobs: Vec<_> = (0..16u32).map(|i| run(move || i * 2)).collect();
        let mut results = Vec::new();
        for job in jobs {
            results.push(job.await.unwrap());
        }
        assert_eq!(results, (0..16u32).map(|i| i * 2).collect::<Vec<_>>());
    }
}
