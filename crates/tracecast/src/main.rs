//! `tracecast`: see the crate docs of the `tracecast` library for the layout.

use std::process::ExitCode;

use clap::Parser;

/// Counts heap bytes for the memory limiter (`service.memory_limit`).
#[global_allocator]
static ALLOCATOR: tracecast::memory::CountingAllocator = tracecast::memory::CountingAllocator;

fn main() -> ExitCode {
    tracecast::memory::CountingAllocator::mark_installed();
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
