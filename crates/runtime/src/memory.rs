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

/// An allocator (`A`, the system one unless the binary names another), counting the bytes
/// in use (one relaxed atomic add per call).
pub struct CountingAllocator<A = System> {
    inner: A,
}

impl<A> CountingAllocator<A> {
    /// Counts what `inner` allocates; `const` so that it can be a `#[global_allocator]`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

// A global allocator can only be written as an `unsafe impl` (the workspace denies
// `unsafe_code`); every method forwards unchanged to the inner allocator and only adds a
// counter.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the inner allocator.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            HEAP_IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the inner allocator.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            HEAP_IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (the inner one) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
        HEAP_IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as `GlobalAlloc::realloc`, forwarded to the inner allocator.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP_IN_USE.fetch_add(new_size, Ordering::Relaxed);
            HEAP_IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

impl<A> CountingAllocator<A> {
    /// Call once from `main` when this is the global allocator.
    pub fn mark_installed() {
        COUNTING.store(true, Ordering::Relaxed);
    }
}

/// Allocations of at least this many bytes go to the system allocator in [`LargeToSystem`].
pub const LARGE_ALLOCATION: usize = 1024 * 1024;

/// Small allocations from `A`, large ones (>= [`LARGE_ALLOCATION`]) from the system allocator.
///
/// Why two: tracecast's many small per-span objects are cheapest in a thread-caching
/// allocator (the binary uses mimalloc), while its few large buffers (request bodies up to
/// `max_request_body_size`, gzip inflation up to the decompression limit) must go back to the
/// OS as soon as they are freed and grow without copying. glibc with its mmap threshold fixed
/// at 1 MiB (the binary sets it) does both: each large block is its own mapping, unmapped on
/// free, grown with `mremap`. mimalloc alone kept freed 16 MiB inflation buffers resident for
/// a while and copied them while growing: 8 concurrent gzip bombs peaked at 326 MiB RSS
/// against 128 MiB live (`tests/hostile_requests.rs` bounds it at 256 MiB).
///
/// Routing is by the size in the `Layout`, which `dealloc` and `realloc` receive too, so every
/// block is freed by the allocator that made it; a `realloc` across the threshold moves the
/// block.
pub struct LargeToSystem<A> {
    small: A,
}

impl<A> LargeToSystem<A> {
    pub const fn new(small: A) -> Self {
        Self { small }
    }
}

// Same reason as `CountingAllocator`: an allocator is an `unsafe impl`.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for LargeToSystem<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; `dealloc` routes this block back by the same size.
        unsafe {
            if layout.size() >= LARGE_ALLOCATION {
                System.alloc(layout)
            } else {
                self.small.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.size() >= LARGE_ALLOCATION {
                System.alloc_zeroed(layout)
            } else {
                self.small.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the allocator this size routes to (see `alloc`).
        unsafe {
            if layout.size() >= LARGE_ALLOCATION {
                System.dealloc(ptr, layout)
            } else {
                self.small.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_large = layout.size() >= LARGE_ALLOCATION;
        let new_large = new_size >= LARGE_ALLOCATION;
        // SAFETY: same contract as `GlobalAlloc::realloc`; within one side it is forwarded
        // unchanged; across the threshold the block moves: allocated on the new side (the
        // caller guarantees `new_size` with `layout.align()` is a valid layout), the smaller
        // of the two sizes copied, the old block freed where it came from.
        unsafe {
            match (old_large, new_large) {
                (true, true) => System.realloc(ptr, layout, new_size),
                (false, false) => self.small.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
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
