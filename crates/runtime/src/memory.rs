//! The memory limiter: like the Collector's `memory_limiter`, it watches the memory tracecast
//! uses and makes the receivers refuse requests (503 + `Retry-After`, before reading their
//! bodies) while it is above `service.memory_limit`. tracecast's own buffers are bounded by
//! design (bounded channels, the backlog on disk); this is the guard for what is not: many
//! large requests in flight at once.
//!
//! What is measured: the heap bytes in use, counted by [`CountingAllocator`] (the binary
//! installs it as the global allocator), because resident memory does not go down when the
//! allocator keeps freed pages, and a limiter reading it could refuse forever. Where the
//! counting allocator is not installed (tracecast used as a library), resident memory from
//! `/proc/self/status` is used instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracecast_core::CancellationToken;
use tracing::warn;

/// How often resident memory is read.
const INTERVAL: Duration = Duration::from_millis(50);

/// Heap bytes in use, as counted by [`CountingAllocator`].
static HEAP_IN_USE: AtomicUsize = AtomicUsize::new(0);
/// Whether the counting allocator is the global allocator.
static COUNTING: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting the bytes in use (one relaxed atomic add per call).
pub struct CountingAllocator;

// A global allocator can only be written as an `unsafe impl` (the workspace denies
// `unsafe_code`); every method forwards unchanged to `System` and only adds a counter.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HEAP_IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            HEAP_IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (the system one) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        HEAP_IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as `GlobalAlloc::realloc`, forwarded to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP_IN_USE.fetch_add(new_size, Ordering::Relaxed);
            HEAP_IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

impl CountingAllocator {
    /// Call once from `main` when this is the global allocator.
    pub fn mark_installed() {
        COUNTING.store(true, Ordering::Relaxed);
    }
}

/// Memory tracecast uses: counted heap bytes, else resident memory.
pub fn memory_in_use() -> Option<u64> {
    if COUNTING.load(Ordering::Relaxed) {
        Some(HEAP_IN_USE.load(Ordering::Relaxed) as u64)
    } else {
        resident_bytes()
    }
}

/// Shared by the watcher task and every fan-out sink.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    limit: u64,
    over: AtomicBool,
    last_rss: AtomicU64,
}

impl MemoryLimiter {
    /// A limiter for `limit` bytes; `0` never refuses.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            ..Default::default()
        })
    }

    /// Whether requests must be refused now.
    pub fn over_limit(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Starts the watcher (a no-op without a limit).
    pub fn spawn(self: &Arc<Self>, stop: CancellationToken) {
        if self.limit == 0 {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let Some(rss) = memory_in_use() else {
                    warn!("memory_limit is set but memory use cannot be read here; the limit is not enforced");
                    break;
                };
                me.last_rss.store(rss, Ordering::Relaxed);
                let over = rss > me.limit;
                if over != me.over.swap(over, Ordering::Relaxed) {
                    if over {
                        warn!(
                            in_use = rss,
                            limit = me.limit,
                            "memory limit reached: refusing requests until memory drops"
                        );
                    } else {
                        warn!(
                            in_use = rss,
                            limit = me.limit,
                            "memory back under the limit: accepting requests again"
                        );
                    }
                }
            }
        });
    }
}

/// Resident set size from `/proc/self/status` (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_resident_memory() {
        let rss = resident_bytes().expect("Linux /proc");
        assert!(
            rss > 1024 * 1024,
            "a test process uses more than 1 MiB: {rss}"
        );
    }
}
