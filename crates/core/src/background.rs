//! Low-priority threads for CPU-heavy work done after the acknowledgement.
//!
//! Why: tracecast answers a request once its spans are in the durable queue; the expensive
//! part of forwarding (encoding and gzipping a batch of thousands of spans: tens of
//! milliseconds) comes later and nobody waits for it. On tokio's blocking pool it competed
//! with the threads that do wait (the receiver's workers, the queue's writer and sync
//! threads) as an equal, so on a busy core a request could queue behind a batch's gzip at
//! every thread hop: the p99 at a fixed 10k spans/s was several times the p50 even with
//! `fsync: never` (README "Performance"). Here the work runs on a few long-lived threads at
//! a lower scheduling priority (nice [`NICE`]): the kernel runs a waking latency-critical
//! thread first and gives the batch work what is left. Throughput is not given up: when
//! nothing else is runnable the background threads get the whole core, and the pipeline's
//! bounded channels stop the receivers before the background work falls far behind.
//!
//! The pool has one thread per core the process may run on (at least one); jobs wait in a
//! FIFO channel. Threads start on first use and live for the process (their priority cannot
//! be raised back without privileges, which is why this is not tokio's blocking pool).

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

/// The nice value of the background threads (0 is normal, 19 the lowest): at 10 a
/// background thread gets about a tenth of a core against one normal thread that wants it
/// all, and a waking normal thread preempts it at once.
pub const NICE: i32 = 10;

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
    lower_priority();
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

/// Lowers the calling thread's scheduling priority to [`NICE`] (Linux: `setpriority` on the
/// thread id; a no-op elsewhere). Failure only costs latency, so it is ignored.
#[allow(unsafe_code)]
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's id, no memory is passed.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE);
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
    async fn runs_work_at_a_lower_priority_and_returns_its_result() {
        let (sum, nice) = run(|| {
            #[cfg(target_os = "linux")]
            #[allow(unsafe_code)]
            // SAFETY: reads the calling thread's priority; no memory is passed.
            let nice =
                unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
            #[cfg(not(target_os = "linux"))]
            let nice = NICE;
            ((1..=100u64).sum::<u64>(), nice)
        })
        .await
        .unwrap();
        assert_eq!(sum, 5050);
        assert_eq!(nice, NICE);
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
