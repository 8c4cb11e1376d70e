#!/usr/bin/env bash
# Profile-guided release build of the server. An instrumented `mlpserve` serves a training
# load (mlpserve-bench: V2 JSON, binary tensors and gRPC; one-row and ranking-sized
# requests; 1 and 64 clients; several zoo models), the profile it writes at shutdown is
# merged, and the release build is repeated with it. Output: target/pgo/release/mlpserve
# (`MLPSERVE_RELEASE_BIN=target/pgo/release/mlpserve scripts/image.sh` packs it).
# Measured gain and method: scripts/BENCHMARKS.md, seventh and eighth rounds. 15–18 minutes
# on two cores (two LTO builds of the server, a debug build of the bench, ~2 minutes of load).
#
# Needs an llvm-profdata that reads this rustc's raw profiles: rustup's llvm-tools
# component, or a system LLVM close to rustc's (`rustc -vV` names it; Debian's llvm-19
# reads rustc 1.95's). Set LLVM_PROFDATA to choose one; each candidate is tried in turn.
# Settings (environment): PGO_PORT [18000] (HTTP; gRPC is the next port), PGO_SECONDS [3]
# (per training level).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

port="${PGO_PORT:-18000}"
seconds="${PGO_SECONDS:-3}"
raw="$PWD/target/pgo-raw"
merged="$PWD/target/pgo-raw/merged.profdata"

scripts/fetch-onnxruntime.sh
rm -rf "$raw" && mkdir -p "$raw"

# Builds name the host as --target so RUSTFLAGS reach the server's crates only: build scripts
# and proc macros stay uninstrumented and write no profiles of their own into $raw.
host="$(rustc -vV | sed -n 's/^host: //p')"

echo "== instrumented build (target/pgo-gen)"
RUSTFLAGS="-Cprofile-generate=$raw" CARGO_TARGET_DIR=target/pgo-gen \
  cargo build --release --locked --quiet --bin mlpserve --target "$host"
echo "== load generator (debug build: its speed does not matter here)"
cargo build --locked --quiet -p mlpserve-bench
bench=target/debug/mlpserve-bench

echo "== training load"
"target/pgo-gen/$host/release/mlpserve" serve --model-repository models --host 127.0.0.1 \
  --http-port "$port" --grpc-port "$((port + 1))" --log-level warn &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
python3 scripts/wait_ready.py "http://127.0.0.1:$port/v2/health/ready" --pid "$server" --timeout 20 ||
  { echo "the instrumented server did not become ready" >&2; exit 1; }
train() {
  "$bench" --url "http://127.0.0.1:$port" --grpc-addr "127.0.0.1:$((port + 1))" \
    --duration "${seconds}s" --warmup 1s "$@" >/dev/null
}
for model in finalmlp_ctr mlp_digits widedeep_ctr; do
  train --model "$model" --rows 1 --concurrency 1,64
  train --model "$model" --rows 1 --concurrency 1,64 --binary
  train --model "$model" --rows 1 --concurrency 1,64 --api grpc
done
train --model finalmlp_ctr --rows 200 --concurrency 16
train --model finalmlp_ctr --rows 200 --concurrency 16 --binary
train --model mlp_digits --rows 1 --concurrency 16 --api predict
train --model din_ctr --rows 1 --concurrency 16
# The profile is written when the server exits: stop it the way operators do.
kill -TERM "$server"
wait "$server" || true
trap - EXIT

echo "== merging the profile"
sysroot_tool="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
llvm_major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
candidates=("${LLVM_PROFDATA:-}" "$sysroot_tool" "llvm-profdata-$llvm_major"
  $(ls -d /usr/lib/llvm-*/bin/llvm-profdata 2>/dev/null | sort -V -r) llvm-profdata)
tool=""
for c in "${candidates[@]}"; do
  [[ -n "$c" ]] && command -v "$c" >/dev/null || continue
  if "$c" merge -o "$merged" "$raw"/*.profraw 2>/dev/null; then
    tool="$c"
    break
  fi
done
if [[ -z "$tool" ]]; then
  echo "no llvm-profdata here reads these profiles (rustc uses LLVM $llvm_major):" >&2
  echo "  rustup component add llvm-tools, or install llvm-$llvm_major (or a close version)," >&2
  echo "  or set LLVM_PROFDATA" >&2
  exit 1
fi
echo "merged with $tool"

echo "== optimised build with the profile (target/pgo)"
RUSTFLAGS="-Cprofile-use=$merged" CARGO_TARGET_DIR=target/pgo \
  cargo build --release --locked --quiet --bin mlpserve --target "$host"
install -D "target/pgo/$host/release/mlpserve" target/pgo/release/mlpserve
echo "done: target/pgo/release/mlpserve"
