//! `tracecast`: see the crate docs of the `tracecast` library for the layout.

use std::process::ExitCode;

use clap::Parser;

/// Counts heap bytes for the memory limiter (`service.memory_limit`).
#[global_allocator]
static ALLOCATOR: tracecast::memory::CountingAllocator = tracecast::memory::CountingAllocator;

#[tokio::main]
async fn main() -> ExitCode {
    tracecast::memory::CountingAllocator::mark_installed();
    tracecast::cli::main(tracecast::cli::Cli::parse()).await
}
