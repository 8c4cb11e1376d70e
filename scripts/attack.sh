#!/usr/bin/env bash
# Hostile-client attack run: slow and oversized bodies, decode bombs, floods (connection
# limits have their own run, attack-connections.py).
# Not a test and not in CI: it prints numbers to compare builds.
#   [ATTACK_ONLY=1,3,4] [ATTACK_SERVER_ARGS="--max-inflight-bytes N"] scripts/attack.sh [BINARY]
#   (BINARY defaults to target/release/mlpserve, else target/debug/mlpserve)
# Starts the binary on a scratch repository (the zoo's mlp_digits, and din_ctr with a 1 s
# batching delay so a long and 30 short histories queue together), runs scripts/attack.py:
#   [1] /metrics series after 2,000 random-method requests
#   [3] short-request latency next to a 100,000-long DIN history, and a 200,000-long one
#   [4] peak RSS for 8 concurrent 50 MB V2 JSON bodies, and a 65 KB gzip bomb
# each with the latency of an unrelated small model (mlp_digits) measured meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [ -z "$BIN" ]; then
  BIN=target/release/mlpserve
  [ -x "$BIN" ] || BIN=target/debug/mlpserve
fi
REPO=$(mktemp -d)
PID=
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -rf "$REPO"' EXIT
cp -r models/mlp_digits "$REPO/"
mkdir -p "$REPO/din/1"
cp models/din_ctr/1/model.onnx "$REPO/din/1/"
{ echo "max_batch_size = 64"; echo "max_queue_delay_us = 1000000"; cat models/din_ctr/config.toml; } > "$REPO/din/config.toml"
PORT=${ATTACK_PORT:-18600}
"$BIN" serve --model-repository "$REPO" --host 127.0.0.1 --http-port "$PORT" --grpc-port $((PORT + 1)) \
  --log-level warn ${ATTACK_SERVER_ARGS:-} >"$REPO/server.log" 2>&1 &
PID=$!
python3 scripts/wait_ready.py "http://127.0.0.1:$PORT/v2/health/ready" --pid "$PID" ||
  { echo "the server did not become ready:" >&2; tail -20 "$REPO/server.log" >&2; exit 1; }
echo "binary: $BIN ($(nproc) cores)"
python3 scripts/attack.py "$PORT" "$PID"
