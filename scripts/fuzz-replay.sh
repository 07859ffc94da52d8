#!/usr/bin/env bash
# Replays the committed fuzz corpus (fuzz/corpus/<target>/) through every fuzz target's
# checks. No new fuzzing. See fuzz/README.md.
#
#   scripts/fuzz-replay.sh              the cheap way (CI): a plain `cargo test` of
#                                       tests/fuzz_corpus.rs, which runs the same checks
#                                       (fuzz/src/lib.rs) on the stable toolchain
#   scripts/fuzz-replay.sh --libfuzzer  through the real libFuzzer binaries (needs cargo-fuzz;
#                                       builds with ASan and sanitizer coverage, so
#                                       RUSTC_BOOTSTRAP=1 on stable; several minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--libfuzzer" ]; then
  exec cargo test --test fuzz_corpus
fi

cd fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -a
for dir in corpus/*/; do
  t=$(basename "$dir")
  echo "== $t: $(ls "$dir" | wc -l) inputs"
  cargo fuzz run -O -a "$t" "$dir" -- -runs=0 -rss_limit_mb=512 -malloc_limit_mb=256 -timeout=10
done
