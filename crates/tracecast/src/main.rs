//! `tracecast`: see the crate docs of the `tracecast` library for the layout.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc for small allocations, the system allocator for large ones, counting heap bytes
/// for the memory limiter (`service.memory_limit`).
///
/// Why mimalloc: tracecast allocates and frees many small objects per span on several threads
/// (decoded spans, trace documents, HTTP requests); with glibc's malloc that was 12% of the
/// CPU when forwarding and 28% when writing S3 trace files (`perf record`, issue 16, README
/// "Performance"); mimalloc's per-thread free lists cost a fraction of that. Why not for
/// everything: see [`tracecast::memory::LargeToSystem`] (large buffers go back to the OS at
/// once through glibc's mmap, with `tune_malloc` below).
#[global_allocator]
static ALLOCATOR: Allocator = tracecast::memory::CountingAllocator::new(
    tracecast::memory::LargeToSystem::new(mimalloc::MiMalloc),
);

type Allocator =
    tracecast::memory::CountingAllocator<tracecast::memory::LargeToSystem<mimalloc::MiMalloc>>;

fn main() -> ExitCode {
    Allocator::mark_installed();
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
/// after a few 16 MiB request buffers every later one would come from a per-thread arena and
/// stay resident once freed: concurrent large requests would ratchet the RSS up although the
/// live bytes are bounded. A fixed 1 MiB threshold (= `LARGE_ALLOCATION`, the blocks
/// `LargeToSystem` gives glibc) keeps every large buffer in its own mapping, returned to the
/// OS when freed and grown with `mremap`. Measured with `tests/hostile_requests.rs` (gzip
/// bombs at once): see the README limits. `mallopt` is an FFI call, hence the local exception
/// to the workspace's `unsafe_code` deny.
#[allow(unsafe_code)]
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any thread starts.
    unsafe {
        libc::mallopt(
            libc::M_MMAP_THRESHOLD,
            tracecast::memory::LARGE_ALLOCATION as libc::c_int,
        );
    }
}

/// mimalloc v3's `mi_option_arena_eager_commit`: its position in the C enum `mi_option_e`
/// (libmimalloc-sys does not name it; the version is pinned by Cargo.lock).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Eagerly committed arenas kept pages that mimalloc had freed resident for a while: with
/// them, 32 concurrent gzip bombs peaked at 405 MiB RSS, without them at 194 MiB
/// (`tests/hostile_requests.rs`, bound 256 MiB). The option must be set before mimalloc
/// reserves its first arena, i.e. before the first allocation, which comes before `main`
/// (the standard library's start-up): hence a constructor in `.init_array`, which the loader
/// runs before any Rust code. Commit on demand costs nothing measurable.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
#[used]
#[link_section = ".init_array"]
static TUNE_MIMALLOC: extern "C" fn() = tune_mimalloc;

#[allow(unsafe_code)]
extern "C" fn tune_mimalloc() {
    // SAFETY: sets a numeric option; called before any other thread starts (the function
    // is not thread-safe).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}
