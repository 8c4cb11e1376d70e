#!/usr/bin/env bash
# Soak test (not part of CI): the release server as its own process, in poll mode, on a
# copy of the zoo; CLIENTS closed-loop clients (default 64) spread over every zoo model and
# over V2 JSON, V2 binary tensors and gRPC (one `mlpserve-bench` process per model and
# protocol), plus a client sending malformed requests at about 5% of the traffic; every
# minute a model is swapped (a new version folder appears, the poll loads it and retires
# the old one). Prints the server's RSS (VmRSS, /proc/PID/status) every SAMPLE seconds,
# then the count of answers that were server errors (5xx or broken connections; 4xx are
# the expected answers to bad requests and overload) and the RSS growth after warm-up.
#
#   scripts/soak.sh                      # 10 minutes
#   DURATION=150 CLIENTS=32 scripts/soak.sh
#
# Exit status: 0 when no server error was seen and the server is still running.
# PROFILE=release-fast-build builds without whole-program LTO where the shipped profile's
# build is too slow for the machine (the numbers then are not the shipped binary's).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DURATION="${DURATION:-600}"
CLIENTS="${CLIENTS:-64}"
SAMPLE="${SAMPLE:-10}"
SWAP_EVERY="${SWAP_EVERY:-60}"

scripts/fetch-onnxruntime.sh >/dev/null
if [[ -n "${PROFILE:-}" ]]; then
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --release --quiet -p mlpserve --bin mlpserve -p mlpserve-bench --bin mlpserve-bench
else
  cargo build --release --quiet -p mlpserve --bin mlpserve -p mlpserve-bench --bin mlpserve-bench
fi
server_bin="$root/target/release/mlpserve"
bench_bin="$root/target/release/mlpserve-bench"

tmp="$(mktemp -d)"
pids=()
server_pid=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# The zoo, copied (the swaps write into it).
repo="$tmp/models"
mkdir -p "$repo"
models=()
for dir in models/*/; do
  name="$(basename "$dir")"
  [[ -f "$dir/1/model.onnx" ]] || continue
  cp -r "$dir" "$repo/$name"
  models+=("$name")
done

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port="$(port)"
grpc_port="$(port)"
"$server_bin" serve --model-repository "$repo" --host 127.0.0.1 \
  --http-port "$http_port" --grpc-port "$grpc_port" \
  --model-control-mode poll --repository-poll-secs 5 --log-format json \
  2>"$tmp/server.log" &
server_pid=$!
url="http://127.0.0.1:$http_port"
source scripts/wait-ready.sh
wait_ready "$server_pid" "$url/v2/health/ready" 120 || { echo "server not ready" >&2; tail -20 "$tmp/server.log" >&2; exit 1; }

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0; }
echo "server pid $server_pid; ${#models[@]} models: ${models[*]}; $CLIENTS clients; ${DURATION}s"
echo "rss at start: $(rss) kB"

# One bench process per (model, protocol); the clients are spread over them.
apis=("v2" "v2 --binary" "grpc")
streams=$(( ${#models[@]} * ${#apis[@]} ))
per=$(( CLIENTS / streams )); (( per >= 1 )) || per=1
i=0
for m in "${models[@]}"; do
  for a in "${apis[@]}"; do
    read -r -a api <<<"$a"
    "$bench_bin" --url "$url" --grpc-addr "127.0.0.1:$grpc_port" --model "$m" \
      --api "${api[0]}" "${api[@]:1}" --concurrency "$per" \
      --warmup 1s --duration "${DURATION}s" >"$tmp/bench-$i.txt" 2>&1 &
    pids+=($!)
    i=$((i + 1))
  done
done

# Malformed requests at about 5% of the traffic: the bad client sends one for every ~19
# good ones it estimates from the server's request counter.
python3 - "$url" "$DURATION" "${models[0]}" >"$tmp/bad.txt" 2>&1 <<'EOF' &
import http.client, json, sys, time, random, urllib.parse
url, duration, model = sys.argv[1], float(sys.argv[2]), sys.argv[3]
host = urllib.parse.urlparse(url)
bodies = [
    (f"/v2/models/{model}/infer", b'{"inputs": [', "application/json"),
    (f"/v2/models/{model}/infer", json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}).encode(), "application/json"),
    ("/predict", json.dumps({"model": model, "inputs": [["a"]]}).encode(), "application/json"),
    ("/v2/models/absent/infer", b"{}", "application/json"),
    (f"/v2/models/{model}/infer", b"\x00\x01binary", "application/octet-stream"),
]
def count():
    c = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("mlpserve_requests_total{"))
statuses, server_errors, sent = {}, 0, 0
end = time.time() + duration
last = count()
while time.time() < end:
    time.sleep(0.2)
    now = count()
    want = max(1, int((now - last) / 19))
    last = now
    for _ in range(want):
        path, body, ctype = random.choice(bodies)
        try:
            c = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
            c.request("POST", path, body=body, headers={"Content-Type": ctype})
            s = c.getresponse().status
        except Exception as e:
            s = f"error: {type(e).__name__}"
        statuses[s] = statuses.get(s, 0) + 1
        sent += 1
        if not (isinstance(s, int) and 400 <= s < 500):
            server_errors += 1
print(f"bad requests sent: {sent}; statuses: {statuses}; non-4xx: {server_errors}")
EOF
pids+=($!)

# Swaps and RSS samples until the clients finish.
start=$SECONDS
next_swap=$SWAP_EVERY
swap=0
samples=()
while (( SECONDS - start < DURATION )); do
  sleep "$SAMPLE"
  t=$((SECONDS - start))
  kill -0 "$server_pid" 2>/dev/null || { echo "the server died at ${t}s" >&2; tail -20 "$tmp/server.log" >&2; exit 1; }
  r="$(rss)"
  samples+=("$r")
  echo "t=${t}s rss=${r} kB"
  if (( t >= next_swap )); then
    m="${models[$(( swap % ${#models[@]} ))]}"
    last="$(ls "$repo/$m" | grep -E '^[0-9]+$' | sort -n | tail -1)"
    cp -r "$repo/$m/$last" "$repo/$m/.swap"
    mv "$repo/$m/.swap" "$repo/$m/$((last + 1))"
    echo "t=${t}s swap: $m version $((last + 1))"
    swap=$((swap + 1))
    next_swap=$((next_swap + SWAP_EVERY))
  fi
done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()

echo "== per stream (model, protocol): requests/s and non-2xx answers (429 under overload included)"
bench_errors=0
for f in "$tmp"/bench-*.txt; do
  line="$(grep -E '^ +[0-9]+ +[0-9.]+' "$f" | tail -1 || true)"
  first_error="$(grep 'first error' "$f" || true)"
  echo "${line:-no result: $(tail -2 "$f" | tr '\n' ' ')} ${first_error}"
  grep -q 'first error: \(HTTP/1.1 5\|status 5\|transport\|io\)' "$f" && bench_errors=$((bench_errors + 1))
done
cat "$tmp/bad.txt"
server_faults="$(grep -c '"level":"ERROR"' "$tmp/server.log" || true)"
warm="${samples[1]:-${samples[0]:-0}}"
final="${samples[-1]:-0}"
echo "== rss: after warm-up ${warm} kB, at the end ${final} kB ($(( warm > 0 ? (final - warm) * 100 / warm : 0 ))% growth)"
echo "== server ERROR log lines: ${server_faults}; streams whose first error was a server error: ${bench_errors}"
kill -0 "$server_pid" 2>/dev/null || { echo "the server is gone" >&2; exit 1; }
grep -q 'non-4xx: 0$' "$tmp/bad.txt" && (( server_faults == 0 )) && (( bench_errors == 0 ))
