#!/usr/bin/env bash
# Runs every check and test: the command CI (.ci/run) calls. On a fresh machine it installs
# the test clients first (scripts/setup-test-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-test-deps.sh
# One clean build: incremental artifacts would only cost disk (several GB) and time.
export CARGO_INCREMENTAL=0
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests in tests/ run the tracecast binary: build it first.
cargo build -p tracecast
cargo test --workspace --no-fail-fast
