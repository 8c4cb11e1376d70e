#!/usr/bin/env bash
# scripts/gpu-check.sh --prepare and --dry-run without the 256 MB GPU wheel: small random
# "libraries" in 1 MiB parts and the debug binaries. The plan's every call stays under 64 MiB
# with the tracked tree counted and adds up; --dry-run passes on the complete set and fails,
# naming the culprit, on a bench binary that rejects its arguments, a missing part and a
# damaged part; the table names ONNX Runtime's CPU-placement warning. A few seconds; run by scripts/test.sh after the debug build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t="$(mktemp -d)"
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/ort"
head -c 2500000 /dev/urandom >"$t/ort/libonnxruntime.so.1.31.1"
head -c 1000 /dev/urandom >"$t/ort/libonnxruntime_providers_shared.so"
head -c 1200000 /dev/urandom >"$t/ort/libonnxruntime_providers_cuda.so"
export BIN_DIR=target/debug PARTS_DIR="$t/parts" ORT_GPU_DIR="$t/ort" PART_MIB=1 XZ_LEVEL=-0 RESULTS="$t/results"
failures=0
fail() { echo "FAIL: $*" >&2 && failures=$((failures + 1)); }
# expect <rc 0|1> <text the output must hold>
expect() {
  local rc=0 out
  out="$(scripts/gpu-check.sh --dry-run 2>&1)" || rc=$?
  [[ $rc == "$1" && $out == *"$2"* ]] || fail "--dry-run exited $rc (expected $1) without '$2':"$'\n'"$out"
}

scripts/gpu-check.sh --prepare >"$t/plan" 2>&1 || fail "--prepare: $(cat "$t/plan")"
# The plan, checked against the files: each call's bytes = tree + what it carries, < 64 MiB.
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
calls=$(grep -c '^call ' "$t/plan" || true)
((calls >= 4)) || fail "expected 3+ parts and so 4+ calls, got $calls:"$'\n'"$(cat "$t/plan")"
while read -r _ n bytes _ _ tree_said _ _ _ limit; do
  carried=$(grep -A1 "^call $n" "$t/plan" | sed -n 's/^  carry: \[\(.*\)\]/\1/p' | tr -d '",')
  # shellcheck disable=SC2086
  sum=$(du -cb $carried | tail -1 | cut -f1)
  [[ $tree_said == "$tree" ]] || fail "call $n counts the tree as $tree_said bytes, git's files are $tree"
  ((bytes == tree + sum && bytes < 64 << 20 && limit == 64 << 20)) || fail "call $n: $bytes bytes, tree $tree + carried $sum, limit $limit"
done < <(grep '^call ' "$t/plan" | tr -d ':')
[[ $(grep -A1 '^call 1/' "$t/plan") == *bin.tar.xz* ]] || fail "call 1 does not carry the binaries"
[[ $(grep -A2 '^call 1/' "$t/plan") == *"command: scripts/gpu-check.sh --smoke"* ]] || fail "call 1 does not run the smoke test"
[[ $(grep '  command:' "$t/plan" | tail -1) == *"scripts/gpu-check.sh   ("* ]] || fail "the last call does not run the check"

expect 0 "gpu-check --dry-run: ok"
expect 0 "mlpserve-bench --model-repository models --model finalmlp_ctr --server-config"
# A bench binary that runs but rejects the call.
cp "$t/parts/bin/mlpserve-bench" "$t/bench"
printf '#!/bin/sh\n[ "$1" = --version ] && echo "mlpserve-bench 0" && exit 0\necho "error: unexpected argument" >&2\nexit 2\n' >"$t/parts/bin/mlpserve-bench"
expect 1 "mlpserve-bench rejects the heavy cpu benchmark's arguments"
cp "$t/bench" "$t/parts/bin/mlpserve-bench"
# A missing part, then a damaged one (byte 100 changed, so never left intact by chance).
part="$(ls "$t/parts"/ort-gpu-*.tar.xz.01)"
mv "$part" "$t/part"
expect 1 "$(basename "$part"): FAILED open or read"
cp "$t/part" "$part"
byte=$(od -An -tu1 -j100 -N1 "$part" | tr -d ' ')
printf "$(printf '\\%03o' $(((byte + 1) % 256)))" | dd of="$part" bs=1 seek=100 conv=notrunc status=none
expect 1 "$(basename "$part"): FAILED"
cp "$t/part" "$part"
expect 0 "gpu-check --dry-run: ok"

# ONNX Runtime's placement warning in a CUDA log is caught and named under the table.
mkdir -p "$t/r" && echo '2026-01-01 [W:onnxruntime:, session_state.cc:1166 VerifyEachNodeIsAssignedToAnEp] Some nodes were not assigned to the preferred execution providers which may or may not have an negative impact on performance.' >"$t/r/serve-cuda.log"
out="$(python3 scripts/gpu_check.py table --results "$t/r")"
[[ $out == *"serve-cuda.log: ONNX Runtime placed some nodes on the CPU (1x"* ]] || fail "the placement warning is not caught:"$'\n'"$out"

((failures == 0)) || { echo "gpu-check dry-run test: $failures failure(s)" >&2 && exit 1; }
echo "gpu-check dry-run test: ok"
