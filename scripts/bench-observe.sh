#!/usr/bin/env bash
# What tracing and payload logging cost: finalmlp_ctr, 1 row per request over V2 JSON, 64
# clients, with the server started in-process by mlpserve-bench in four configurations,
# interleaved round by round so drifting machine load hits all of them alike:
#   off        neither (the baseline)
#   trace-1    --trace-sample-ratio 1.0 to a live OTLP/gRPC receiver (`otlp-sink`, built with
#              mlpserve-bench next to it: it accepts every export and counts its spans
#              without decoding them; a collector on another host would take nothing
#              from these cores, and one here should take as little as it can)
#   trace-0.01 --trace-sample-ratio 0.01 to the same receiver
#   payload    every request payload-logged to files (rotated at 64 MiB, 2 kept)
# Prints rows/s per round and, per configuration, the median over rounds and its ratio to
# the baseline's median (targets: trace-1 and payload >= 0.9, trace-0.01 >= 0.97). Then the
# CPU each request cost, which a busy shared machine disturbs far less than rows/s: the
# server's threads (ORT workers, async threads, export / payload-log thread) and the load
# generator's (the bench's own figures for its window) plus, for the tracing runs, the
# OTLP receiver's process (its CPU over the whole run, warm-up included, over the
# requests of the window and warm-up at the window's rate); and the baseline's total over
# each configuration's: the rows/s ratio that CPU-bound runs of all three on cores of
# their own would show.
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
sink_bin="$(dirname "$BIN")/otlp-sink"
[[ -x "$sink_bin" ]] || { echo "no OTLP receiver at $sink_bin: build it with cargo build -p mlpserve-bench" >&2; exit 1; }

work="$(mktemp -d)"
sink_pid=""
cleanup() {
  [[ -n "$sink_pid" ]] && kill "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$sink_bin" >"$work/sink.log" 2>&1 &
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
# The receiver's CPU time so far, in clock ticks.
sink_ticks() { awk '{ print $14 + $15 }' "/proc/$sink_pid/stat"; }
# Seconds of load in one run (window and warm-up).
to_s() { awk -v v="$1" 'BEGIN { if (v ~ /ms$/) print v / 1000; else if (v ~ /s$/) print v + 0; else print v }'; }
secs="$(awk -v a="$(to_s "$DURATION")" -v b="$(to_s "$WARMUP")" 'BEGIN { print a + b }')"

echo "== observability overhead: finalmlp_ctr, 1 row per request, V2 JSON, $CLIENTS clients, $ROUNDS rounds of $DURATION"
printf '%-6s' round
printf '%12s' "${configs[@]}"
echo
for round in $(seq "$ROUNDS"); do
  printf '%-6s' "$round"
  for c in "${configs[@]}"; do
    sink_before="$(sink_ticks)"
    out="$("$BIN" --model-repository models --model finalmlp_ctr --rows 1 \
      --concurrency "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
      --server-config "$work/$c.toml" 2>/dev/null | awk -v n="$CLIENTS" '$1 == n && NF > 5')"
    sink_after="$(sink_ticks)"
    line="$(awk '{ print $3 }' <<<"$out")"
    [[ -n "$line" ]] || { echo; echo "the $c run printed no result" >&2; exit 1; }
    echo "$c $line" >>"$work/results"
    # µs per request of the roles in "ort 5.8, server 22.3, client 9.2, other 1.0".
    role_us() { awk -v roles="$1" '{ s = 0; for (i = 1; i < NF; i++) if (index(" " roles " ", " " $i " ")) { v = $(i + 1); sub(",", "", v); s += v } print s }' <<<"$out"; }
    server_us="$(role_us "ort server other")"
    client_us="$(role_us client)"
    sink_us="$(awk -v t="$((sink_after - sink_before))" -v hz="$(getconf CLK_TCK)" -v r="$line" -v d="$secs" \
      'BEGIN { printf "%.1f", t / hz * 1e6 / (r * d) }')"
    [[ "$c" == trace-* ]] || sink_us=0
    echo "$c $(awk -v a="$server_us" -v b="$client_us" -v c="$sink_us" 'BEGIN { printf "%.1f", a + b + c }') $server_us $client_us $sink_us" >>"$work/cpu"
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
echo "CPU µs per request, medians over rounds: server + load generator + OTLP receiver = total; off's total ÷ each"
for c in "${configs[@]}"; do
  med() { awk -v c="$c" -v k="$1" '$1 == c { print $k }' "$work/cpu" | sort -n |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  printf '%-11s %6s + %5s + %5s = %6s' "$c" "$(med 3)" "$(med 4)" "$(med 5)" "$(med 2)"
  base_cpu="$(awk '$1 == "off" { print $2 }' "$work/cpu" | sort -n |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
  awk -v b="$base_cpu" -v m="$(med 2)" 'BEGIN { printf "   %.3f\n", b / m }'
done
kill "$sink_pid" && wait "$sink_pid" 2>/dev/null || true
sink_pid=""
tail -n 1 "$work/sink.log"
