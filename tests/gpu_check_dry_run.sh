#!/usr/bin/env bash
# scripts/gpu-check.sh without a GPU and without the 256 MB wheel: --prepare splits small
# fake "libraries" into 1 MiB parts, --dry-run accepts the complete set and rejects, naming
# the culprit, a missing part, a corrupted part, an oversized part, a missing binary and a
# missing heavy model; the run mode reassembles the parts byte for byte before it stops at
# the GPU preflight. About 2 seconds; run by scripts/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ver=1.31.1
mkdir -p "$tmp/ort" "$tmp/bin" "$tmp/heavy/mlp_heavy/1"
head -c 2500000 /dev/urandom >"$tmp/ort/libonnxruntime.so.$ver"
head -c 1000 /dev/urandom >"$tmp/ort/libonnxruntime_providers_shared.so"
head -c 1200000 /dev/urandom >"$tmp/ort/libonnxruntime_providers_cuda.so"
printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/mlpserve"
chmod +x "$tmp/bin/mlpserve"
echo fake >"$tmp/heavy/mlp_heavy/1/model.onnx"

export ORT_VERSION=$ver PARTS_DIR="$tmp/parts" ORT_GPU_DIR="$tmp/ort" MLPSERVE_BIN="$tmp/bin/mlpserve"
export HEAVY_REPO="$tmp/heavy" RESULTS="$tmp/results" MODELS=models PART_MIB=1 MAX_PART_MIB=1 PYTHON=python3

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
# expect_dry_run <rc 0|1> <text that must appear in the output> [env assignments...]
expect_dry_run() {
  local want_rc=$1 want_text=$2 rc=0 out
  shift 2
  out="$(env "$@" scripts/gpu-check.sh --dry-run 2>&1)" || rc=$?
  if [[ $want_rc == 0 && $rc != 0 ]] || [[ $want_rc != 0 && $rc == 0 ]]; then
    fail "dry-run ($*) exited $rc, expected $want_rc:"$'\n'"$out"
  elif [[ "$out" != *"$want_text"* ]]; then
    fail "dry-run ($*) output lacks '$want_text':"$'\n'"$out"
  fi
}

scripts/gpu-check.sh --prepare >"$tmp/prepare.log" 2>&1 || fail "--prepare: $(cat "$tmp/prepare.log")"
archive="onnxruntime-gpu-$ver.tar.gz"
parts=("$PARTS_DIR/$archive.part-"*)
[[ ${#parts[@]} -ge 2 ]] || fail "expected several 1 MiB parts, got ${#parts[@]}"

# The complete set passes and prints the commands it would run.
expect_dry_run 0 "inputs complete"
expect_dry_run 0 "serve --model-repository models --execution-provider cuda"
expect_dry_run 0 "$tmp/bin/mlpserve bench --model-repository $tmp/heavy --model mlp_heavy"
# A bench binary next to the server is preferred over `mlpserve bench`.
cp "$tmp/bin/mlpserve" "$tmp/bin/mlpserve-bench"
expect_dry_run 0 "bench: $tmp/bin/mlpserve-bench"
rm "$tmp/bin/mlpserve-bench"

# Missing part.
mv "$PARTS_DIR/$archive.part-01" "$tmp/part-01"
expect_dry_run 1 "part $PARTS_DIR/$archive.part-01"
mv "$tmp/part-01" "$PARTS_DIR/$archive.part-01"
# Corrupted part of the right size.
cp "$PARTS_DIR/$archive.part-00" "$tmp/part-00"
# Flip byte 100 (writing a fixed byte would leave the part intact 1 time in 256).
byte=$(od -An -tu1 -j100 -N1 "$PARTS_DIR/$archive.part-00" | tr -d ' ')
printf "$(printf '\\%03o' $(((byte + 1) % 256)))" |
  dd of="$PARTS_DIR/$archive.part-00" bs=1 seek=100 conv=notrunc status=none
expect_dry_run 1 "part checksums: $archive.part-00: FAILED"
cp "$tmp/part-00" "$PARTS_DIR/$archive.part-00"
# Truncated part: size and checksum both named.
head -c 1000 "$tmp/part-00" >"$PARTS_DIR/$archive.part-00"
expect_dry_run 1 "part $archive.part-00 is 1000 bytes, SIZES says"
cp "$tmp/part-00" "$PARTS_DIR/$archive.part-00"
# Parts over the transfer limit.
expect_dry_run 1 "over 0 MiB" MAX_PART_MIB=0
# Missing server binary, missing models, missing heavy model (and no onnx to make it).
expect_dry_run 1 "server binary $tmp/nope" MLPSERVE_BIN="$tmp/nope"
expect_dry_run 1 "models: no <model>/1/model.onnx under '$tmp/none'" MODELS="$tmp/none"
expect_dry_run 1 "heavy model $tmp/none/mlp_heavy/1/model.onnx" HEAVY_REPO="$tmp/none" PYTHON=false
# Neither parts nor assembled libraries.
expect_dry_run 1 "GPU ONNX Runtime: neither" PARTS_DIR="$tmp/none" ORT_GPU_DIR="$tmp/none"
# Still whole after all that.
expect_dry_run 0 "inputs complete"

# Run mode: reassembles the parts into a fresh directory byte for byte, then (no GPU here)
# stops at the preflight with a non-zero status.
if ! command -v nvidia-smi >/dev/null; then
  rc=0
  out="$(ORT_GPU_DIR="$tmp/assembled" scripts/gpu-check.sh 2>&1)" || rc=$?
  [[ $rc != 0 && "$out" == *"nvidia-smi found no GPU"* ]] || fail "run mode without a GPU: rc $rc:"$'\n'"$out"
  for f in "libonnxruntime.so.$ver" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
    cmp -s "$tmp/ort/$f" "$tmp/assembled/$f" || fail "reassembled $f differs"
  done
fi

if [[ $failures -gt 0 ]]; then
  echo "gpu-check dry-run test: $failures failure(s)" >&2
  exit 1
fi
echo "gpu-check dry-run test: ok"
