//! `tracecast-loadgen`: see the library docs and `--help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracecast_loadgen::cli::main(tracecast_loadgen::cli::Cli::parse())
}
