//! `tracecast`: see the crate docs of the `tracecast` library for the layout.

use std::process::ExitCode;

use clap::Parser;

/// Counts heap bytes for the memory limiter (`service.memory_limit`).
#[global_allocator]
static ALLOCATOR: tracecast::memory::CountingAllocator = tracecast::memory::CountingAllocator;

fn main() -> ExitCode {
    tracecast::memory::CountingAllocator::mark_installed();
    tune_malloc();
    let cli = tracecast::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(tracecast::cli::main(cli));
    // Dropping a runtime waits for every blocking task without limit; a second SIGTERM
    // (exit now) or a write stuck on a dead disk must not keep the process alive. Whatever
    // was acknowledged is already on disk.
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

/// How long `main` waits for leftover blocking tasks after the command returned.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB), so
/// after a few 16 MiB request buffers every later one comes from a per-thread arena and stays
/// resident once freed: concurrent large requests then ratchet the RSS up although the live
/// bytes are bounded. A fixed 1 MiB threshold keeps large buffers in their own mappings,
/// returned to the OS when freed; smaller allocations (almost all of them) are unaffected.
/// Measured with `tests/hostile_requests.rs` (32 gzip bombs at once): see the README limits.
/// `mallopt` is an FFI call, hence the local exception to the workspace's `unsafe_code` deny.
#[allow(unsafe_code)]
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}
