#!/usr/bin/env bash
# Many small models: serves N copies of models/mlp_digits (default 100) from a temporary
# repository and prints the seconds until the server is ready and its resident memory then
# (VmRSS from /proc). What each loaded model keeps (sessions, ORT arenas, calibration
# leftovers) shows up here multiplied by N. tests/many_models.rs holds 100 of them (debug
# build) under 600 MB in CI; this script gives the release build's figures.
#
#   scripts/many-models.sh [BIN] [N]     # BIN defaults to target/release/mlpserve
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-$root/target/release/mlpserve}"
n="${2:-100}"
"$root/scripts/fetch-onnxruntime.sh" >/dev/null

repo="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$repo"' EXIT
for i in $(seq -w 1 "$n"); do
  mkdir -p "$repo/m$i/1"
  cp "$root/models/mlp_digits/1/model.onnx" "$repo/m$i/1/"
done
port=$((20000 + RANDOM % 20000))
start=$SECONDS
MLPSERVE_ORT_LIB="$root/.onnxruntime/libonnxruntime.so.1.31.1" "$bin" serve \
  --model-repository "$repo" --http-port "$port" --grpc-port $((port + 1)) \
  --log-level warn &
pid=$!
python3 "$root/scripts/wait_ready.py" "http://127.0.0.1:$port/v2/health/ready" --pid "$pid" --timeout 300 || exit 1
echo "$n models: ready after $((SECONDS - start)) s, $(grep VmRSS /proc/$pid/status | tr -s ' \t' ' ')"
