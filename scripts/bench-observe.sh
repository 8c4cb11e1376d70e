#!/usr/bin/env bash
# What tracing and payload logging cost: finalmlp_ctr, 1 row per request over V2 JSON, 64
# clients, with the server started in-process by mlpserve-bench in four configurations,
# interleaved round by round so drifting machine load hits all of them alike:
#   off        neither (the baseline)
#   trace-1    --trace-sample-ratio 1.0 to a live OTLP/gRPC receiver (scripts/otlp-sink.py)
#   trace-0.01 --trace-sample-ratio 0.01 to the same receiver
#   payload    every request payload-logged to files (rotated at 64 MiB, 2 kept)
# Prints rows/s per round and, per configuration, the median over rounds and its ratio to
# the baseline's median (targets: trace-1 and payload >= 0.9, trace-0.01 >= 0.97).
#
#   scripts/bench-observe.sh                         # release build, 5 rounds of 10 s
#   ROUNDS=3 DURATION=5s BIN=target/debug/mlpserve-bench scripts/bench-observe.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CLIENTS="${CLIENTS:-64}"
if [[ -z "${BIN:-}" ]]; then
  scripts/fetch-onnxruntime.sh
  cargo build --release --quiet -p mlpserve-bench
  BIN="$root/target/release/mlpserve-bench"
fi
py="$(scripts/setup-python-tools.sh | tail -n 1)"

work="$(mktemp -d)"
sink_pid=""
cleanup() {
  [[ -n "$sink_pid" ]] && kill "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$py" scripts/otlp-sink.py >"$work/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 500); do
  [[ -s "$work/sink.log" ]] && break
  sleep 0.01
done
port="$(head -n 1 "$work/sink.log")"
[[ "$port" =~ ^[0-9]+$ ]] || { echo "the OTLP receiver did not start: $(cat "$work/sink.log")" >&2; exit 1; }

: >"$work/off.toml"
printf 'otlp_endpoint = "http://127.0.0.1:%s"\ntrace_sample_ratio = 1.0\n' "$port" >"$work/trace-1.toml"
printf 'otlp_endpoint = "http://127.0.0.1:%s"\ntrace_sample_ratio = 0.01\n' "$port" >"$work/trace-0.01.toml"
printf 'payload_log = "file:%s/payloads"\npayload_log_max_file_bytes = 67108864\npayload_log_max_files = 2\n' \
  "$work" >"$work/payload.toml"
configs=(off trace-1 trace-0.01 payload)

echo "== observability overhead: finalmlp_ctr, 1 row per request, V2 JSON, $CLIENTS clients, $ROUNDS rounds of $DURATION"
printf '%-6s' round
printf '%12s' "${configs[@]}"
echo
for round in $(seq "$ROUNDS"); do
  printf '%-6s' "$round"
  for c in "${configs[@]}"; do
    line="$("$BIN" --model-repository models --model finalmlp_ctr --rows 1 \
      --concurrency "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
      --server-config "$work/$c.toml" 2>/dev/null | awk -v n="$CLIENTS" '$1 == n && NF > 5 { print $3 }')"
    [[ -n "$line" ]] || { echo; echo "the $c run printed no result" >&2; exit 1; }
    echo "$c $line" >>"$work/results"
    printf '%12s' "$line"
  done
  echo
done
printf '%-6s' median
for c in "${configs[@]}"; do
  printf '%12s' "$(awk -v c="$c" '$1 == c { print $2 }' "$work/results" | sort -n |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
done
echo
base="$(awk '$1 == "off" { print $2 }' "$work/results" | sort -n |
  awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
printf '%-6s' ratio
for c in "${configs[@]}"; do
  m="$(awk -v c="$c" '$1 == c { print $2 }' "$work/results" | sort -n |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
  printf '%12s' "$(awk -v m="$m" -v b="$base" 'BEGIN { printf "%.3f", m / b }')"
done
echo
kill "$sink_pid" && wait "$sink_pid" 2>/dev/null || true
sink_pid=""
tail -n 1 "$work/sink.log"
