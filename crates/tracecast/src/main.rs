//! `tracecast`: see the crate docs of the `tracecast` library for the layout.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    tracecast::cli::main(tracecast::cli::Cli::parse()).await
}
