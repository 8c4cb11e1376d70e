#!/usr/bin/env bash
# Load-tests mlpserve with Triton's perf_analyzer (the binary bundled in the pinned
# tritonclient wheel), over HTTP (binary tensors) and gRPC, and prints one table per
# protocol: throughput and client-side p50/p90/p99 latency at each concurrency, plus the
# server-side queue and compute averages perf_analyzer reads from the statistics extension.
#
#   scripts/perf-analyzer.sh                       # start a server, sweep mlp_digits
#   scripts/perf-analyzer.sh --smoke               # a few seconds per protocol; non-zero on any error
#   scripts/perf-analyzer.sh --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 --model finalmlp_ctr
#
# Options: --model M (mlp_digits), --concurrency "1 2 4 8 16", --interval-ms 2000,
# --batch-size 1, --input-data zero|random, --http HOST:PORT, --grpc HOST:PORT, --smoke;
# env PA_STABILITY (sweep stability percentage, 50).
# Without --http/--grpc it starts $MLPSERVE_BIN (default target/release/mlpserve, else
# target/debug/mlpserve) on free loopback ports and stops it with SIGTERM at the end.
# Installs what perf_analyzer needs (idempotent): the .venv-tools venv and Debian's
# libb64-0d; libcudart.so.12 comes from the nvidia-cuda-runtime-cu12 wheel (no GPU used).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

model=mlp_digits
concurrency="1 2 4 8 16"
interval_ms=2000
batch_size=1
input_data=zero # valid for every zoo model (random INT64 ids could overflow an embedding)
http_url=""
grpc_url=""
smoke=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --interval-ms) interval_ms="$2"; shift 2 ;;
    --batch-size) batch_size="$2"; shift 2 ;;
    --input-data) input_data="$2"; shift 2 ;;
    --http) http_url="${2#http://}"; shift 2 ;;
    --grpc) grpc_url="${2#grpc://}"; shift 2 ;;
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $smoke == 1 ]]; then
  concurrency="2"
  interval_ms=1000
fi

# --- tools ------------------------------------------------------------------------------
py="$(scripts/setup-python-tools.sh | tail -1)"
venv="$(dirname "$(dirname "$py")")"
pa="$venv/bin/perf_analyzer"
[[ -x "$pa" ]] || { echo "perf_analyzer not found in $venv (tritonclient wheel without it?)" >&2; exit 1; }
if ! ldconfig -p | grep -q 'libb64\.so\.0d'; then
  echo "installing libb64-0d (needed by perf_analyzer)" >&2
  apt-get update -qq >&2 && apt-get install -y -qq libb64-0d >&2
fi
cudart="$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cuda_runtime/lib 2>/dev/null | head -1)"
[[ -n "$cudart" ]] || { echo "libcudart.so.12 not found in $venv (nvidia-cuda-runtime-cu12)" >&2; exit 1; }
export LD_LIBRARY_PATH="$cudart${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# --- server -----------------------------------------------------------------------------
server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
}
trap stop_server EXIT

if [[ -z "$http_url" || -z "$grpc_url" ]]; then
  bin="${MLPSERVE_BIN:-}"
  if [[ -z "$bin" ]]; then
    if [[ -x target/release/mlpserve ]]; then bin=target/release/mlpserve; else bin=target/debug/mlpserve; fi
  fi
  [[ -x "$bin" ]] || { echo "$bin not found: run cargo build [--release] or set MLPSERVE_BIN" >&2; exit 1; }
  read -r http_port grpc_port < <("$py" -c '
import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
  http_url="127.0.0.1:$http_port"
  grpc_url="127.0.0.1:$grpc_port"
  mkdir -p target
  log="$root/target/perf-analyzer-server.log"
  echo "== starting $bin (HTTP $http_url, gRPC $grpc_url; log $log)"
  "$bin" serve --model-repository models --host 127.0.0.1 \
    --http-port "$http_port" --grpc-port "$grpc_port" --log-level warn >"$log" 2>&1 &
  server_pid=$!
  python3 "$root/scripts/wait_ready.py" "http://$http_url/v2/health/ready" --pid "$server_pid" ||
    { echo "server exited or not ready within 60 s:" >&2; tail -20 "$log" >&2; exit 1; }
fi

# Failed-request count of the model, from the statistics extension.
failures() {
  "$py" -c "
import json, sys, urllib.request as u
url = 'http://$http_url/v2/models/$model/stats'
try:
    s = json.load(u.urlopen(url, timeout=5))['model_stats']
except Exception as e:
    sys.exit(f'cannot read {url}: {e}')
print(sum(m['inference_stats']['fail']['count'] for m in s))"
}

# --- runs -------------------------------------------------------------------------------
out_dir="$(mktemp -d)"
trap 'stop_server; rm -rf "$out_dir"' EXIT
# perf_analyzer repeats a window until the last three agree within --stability-percentage
# (max/min). The smoke run checks correctness, not numbers, so it accepts any spread; the
# sweep asks for 50% (the machine running it is usually shared) and gives up after 10.
if [[ $smoke == 1 ]]; then
  stability=(--stability-percentage 1000 --max-trials 4)
else
  stability=(--stability-percentage "${PA_STABILITY:-50}" --max-trials 10)
fi

run_protocol() { # protocol url
  local protocol="$1" url="$2" csv="$out_dir/$1.csv" c
  : >"$csv"
  for c in $concurrency; do
    if ! "$pa" -m "$model" -i "$protocol" -u "$url" -b "$batch_size" \
      --concurrency-range "$c:$c" --measurement-interval "$interval_ms" \
      --input-data "$input_data" "${stability[@]}" -f "$out_dir/one.csv" >"$out_dir/log" 2>&1; then
      echo "perf_analyzer failed ($protocol, concurrency $c):" >&2
      tail -25 "$out_dir/log" >&2
      return 1
    fi
    [[ -s "$csv" ]] || head -1 "$out_dir/one.csv" >"$csv"
    tail -n +2 "$out_dir/one.csv" >>"$csv"
  done
  echo
  echo "== $model over $protocol ($url), batch $batch_size, ${interval_ms} ms windows"
  # CSV columns: Concurrency, Inferences/Second, Client Send, Network+Server Send/Recv,
  # Server Queue, Server Compute Input, Server Compute Infer, Server Compute Output,
  # Client Recv, p50, p90, p95, p99 latency (µs).
  awk -F, 'NR == 1 { printf "%11s %10s %9s %9s %9s %11s %13s\n", "concurrency", "infer/s", "p50 ms", "p90 ms", "p99 ms", "srv queue", "srv compute"; next }
           { printf "%11d %10.0f %9.2f %9.2f %9.2f %8d us %10d us\n", $1, $2, $10/1000, $11/1000, $13/1000, $5, $6+$7+$8 }' "$csv"
  if [[ $smoke == 1 ]]; then
    awk -F, 'NR > 1 && $2 <= 0 { exit 1 }' "$csv" || { echo "no throughput over $protocol" >&2; return 1; }
  fi
}

failed_before="$(failures)"
run_protocol http "$http_url"
run_protocol grpc "$grpc_url"
failed_after="$(failures)"
if [[ "$failed_after" != "$failed_before" ]]; then
  echo "the server counted $((failed_after - failed_before)) failed requests during the runs" >&2
  exit 1
fi
[[ $smoke == 1 ]] && echo && echo "perf_analyzer smoke: HTTP and gRPC ran with no errors"
exit 0
