#!/usr/bin/env bash
# Long coverage-guided fuzzing runs (libFuzzer via cargo-fuzz) of the client-reachable
# decoders. Not part of CI: CI replays the committed corpus in `cargo test`
# (tests/fuzz_corpus.rs). Usage:
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 600 s each, every target, one at a time
# New inputs go to fuzz/work/<target>/ (ignored); the committed seeds in fuzz/corpus/<target>/
# are read, never written. Crashes land in fuzz/artifacts/<target>/; turn each into a
# regression test and copy it into fuzz/corpus/<target>/ so the replay keeps it.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); nightly flags come from
# RUSTC_BOOTSTRAP=1 on the stable toolchain. ONNX Runtime is never loaded.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(v2_json v2_binary predict grpc_request decompression config_toml tensor_binary)
fi

# Inputs longer than this teach nothing new about these parsers and only slow them down.
max_len() {
  case "$1" in
    config_toml | tensor_binary) echo 2048 ;;
    *) echo 8192 ;;
  esac
}

export RUSTC_BOOTSTRAP=1
# No sanitizer: the decoders are safe Rust (unsafe_code is forbidden in the crate), so
# ASan would only slow the search; panics (overflow checks are on for our crates, see
# fuzz/Cargo.toml), timeouts and allocations over -malloc_limit_mb are what we look for.
cargo fuzz build -O --sanitizer none
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t"
  echo "== fuzzing $t for ${seconds}s"
  # A crash stops this target only; the others still get their time.
  cargo fuzz run -O --sanitizer none "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$t")" -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 || failed+=("$t")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "== crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
