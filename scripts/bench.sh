#!/usr/bin/env bash
# The benchmark suite in one command: fetch ONNX Runtime if missing, build release, generate
# the heavy benchmark model, then run each scenario with the server started in-process
# (`mlpserve-bench --model-repository`, the workspace member `crates/bench`), so server and
# ceiling are measured side by side.
#
#   scripts/bench.sh                 # everything (about 4 minutes after the build)
#   DURATION=5s WARMUP=1s scripts/bench.sh a   # only scenario (a), shorter windows
#
# Scenarios:
#   a  heavy MLP 512-2048-2048-512: batch-1 requests from 64 clients vs the in-process
#      ceiling (best bare session.run rows/s over batch sizes) -> ratio (target >= 0.8);
#      first as configured by default (1 instance, V2 JSON), then with 2 instances and
#      binary tensors (the configuration that reaches the target on 2 cores)
#   b  finalmlp_ctr, 1 row per request over V2 JSON, at 1, 8, 16 and 64 clients -> req/s,
#      p50/p99 (target >= 20,000 req/s at 64 clients, p99 <= 10 ms) and mean batch size
#      plus the transport floor (--floor: axum + the V2 decoder, canned answer) -> server
#      req/s ÷ floor (target >= 0.5 at 64 clients)
#   c  low load on small models: server p50 at 1 client vs bare session.run at batch 1
#      (target: <= bare + 60 µs), mean batch size at 1, 8 and 64 clients, and the floor
#   d  CTR ranking: finalmlp_ctr with 50, 200 and 1,000 rows per request at 1, 16 and 64
#      clients, V2 JSON and binary tensors, default config (max_batch_size "auto"), with
#      the ceiling at the matching batch sizes (target at 200 rows, 16 clients: >= 0.85 x
#      best ceiling over JSON, >= 0.9 x over binary). Then the same row counts over gRPC
#      and HTTP binary with Triton's perf_analyzer (scripts/perf-analyzer.sh, a separate
#      `mlpserve` process; its infer/s are rows/s): compare with the ceiling printed above.
#   e  gRPC vs HTTP at batch 1: finalmlp_ctr over gRPC (raw tensors), HTTP binary and V2
#      JSON at 1, 16 and 64 clients, the bench's own lean client for both protocols (an
#      HTTP/2 client on the h2 crate against its HTTP/1.1 one), two alternating rounds;
#      compare req/s, p50 and the server's CPU per request (target: gRPC >= HTTP)
#   f  raw features: features_ctr with 200 rows per request sent as raw fields (strings,
#      integers and numbers the server transforms) vs the same graph fed the equivalent
#      tensors (`ids` INT64 [200, 5], `dense` FP32 [200, 2], a copy of the model without
#      [features]), V2 JSON and binary, 1 and 16 clients, two interleaved rounds (target:
#      raw fields >= 0.8 x the tensors' rows/s)
#   g  observability overhead (scripts/bench-observe.sh): finalmlp_ctr, batch-1 V2 JSON, 64
#      clients, interleaved rounds of tracing off / ratio 1.0 to a live OTLP receiver /
#      ratio 0.01 / payload logging of every request to files (targets: >= 0.9x, >= 0.97x)
#   h  ranking, context once: ranking_ctr with 200 and 1,000 candidates per request, 1 and 16
#      clients, V2 JSON, binary and gRPC; the user's context (user_id, country, age and a
#      50-item history, declared broadcast) sent once with first dimension 1 vs the same
#      request with the context repeated on every row, two alternating rounds
#      (--compare-context): request bytes, rows/s, p50/p99, server CPU per request, and the
#      ceiling at batch 64-256 and at the request's rows, fed the already-expanded batch (targets: context-once >= 1.5 x
#      the repeated rows/s at 16 clients over V2 JSON; >= 0.85 x the ceiling at the same
#      batch size). Then the same for ranking_towers, whose user tower is a context graph
#      (context.onnx) the server runs once per request: its ceiling is that graph on one row
#      per request plus model.onnx on the batch. H_MODELS="ranking_towers" runs only it.
#   j  JSON decoders (not in the default run): the tensor walker vs sonic-rs (a SIMD JSON
#      parser) on V2 JSON bodies of [64, 256] FP32 (json_wide) and [200, 39] mixed INT64 [200, 26]
#      + FP32 [200, 13] (json_mixed), two row-sum models (scripts/make-json-bench-models.py) so
#      the request dominates; 1 and 64 clients, three interleaved rounds, one build with the
#      `json-compare` feature (MLPSERVE_JSON_DECODER=sonic switches the decoder)
#      (rule: keep the walker only if it wins by more than 1.3x end to end)
# The load generator runs on the same machine as the server; read the "cores used" column.
# BENCH_BIN=path/to/mlpserve-bench uses that build instead of building release (e.g. a
# quick check of a scenario with a debug build; its numbers are not the server's).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CEILING_DURATION="${CEILING_DURATION:-3s}"
scenarios="${*:-a b c d e f g h}"

scripts/fetch-onnxruntime.sh
if [[ -n "${BENCH_BIN:-}" ]]; then
  bin="$BENCH_BIN"
elif [[ " $scenarios " == *" j "* ]]; then
  cargo build --release --quiet -p mlpserve-bench --features mlpserve/json-compare
  bin="$root/target/release/mlpserve-bench"
else
  cargo build --release --quiet -p mlpserve-bench
  bin="$root/target/release/mlpserve-bench"
fi

heavy_repo="$root/target/bench-models"
if [[ " $scenarios " == *" a "* && ! -f "$heavy_repo/mlp_heavy/1/model.onnx" ]]; then
  py="$root/.venv-tools/bin/python"
  if ! [[ -x "$py" ]] || ! "$py" -c "import onnx, numpy" 2>/dev/null; then
    python3 -m venv "$root/.venv-tools"
    "$root/.venv-tools/bin/pip" install --quiet onnx numpy
  fi
  "$py" scripts/make-bench-model.py --out "$heavy_repo"
fi

common=(--duration "$DURATION" --warmup "$WARMUP" --ceiling-duration "$CEILING_DURATION")

for s in $scenarios; do
  case "$s" in
    a)
      echo "== (a) heavy MLP: batch-1 requests from 64 clients vs the in-process ceiling"
      "$bin" --model-repository "$heavy_repo" --model mlp_heavy --rows 1 \
        --concurrency 1,64 --ceiling --ceiling-batches 1,8,32,64,128,256 "${common[@]}"
      echo
      echo "== (a2) heavy MLP, 2 instances (intra_op_threads 1 each), binary tensors"
      x2="$root/target/bench-models-x2"
      mkdir -p "$x2/mlp_heavy/1"
      ln -sf "$heavy_repo/mlp_heavy/1/model.onnx" "$x2/mlp_heavy/1/model.onnx"
      printf 'max_batch_size = 256\ninstances = 2\n' >"$x2/mlp_heavy/config.toml"
      "$bin" --model-repository "$x2" --model mlp_heavy --rows 1 --binary \
        --concurrency 64 --ceiling --ceiling-batches 32,64,128,256 "${common[@]}"
      ;;
    b)
      echo "== (b) finalmlp_ctr: 1 row per request, V2 JSON"
      "$bin" --model-repository models --model finalmlp_ctr --rows 1 \
        --concurrency 1,8,16,64 --ceiling --ceiling-batches 1,64,128 --floor "${common[@]}"
      ;;
    c)
      echo "== (c) low load: mlp_digits, 1 row per request, V2 JSON"
      "$bin" --model-repository models --model mlp_digits --rows 1 \
        --concurrency 1,8,64 --ceiling --ceiling-batches 1,64,128 --floor "${common[@]}"
      ;;
    d)
      for rows in 50 200 1000; do
        for enc in "" --binary; do
          echo "== (d) ranking: finalmlp_ctr, $rows rows per request, ${enc:-V2 JSON}"
          "$bin" --model-repository models --model finalmlp_ctr --rows "$rows" $enc \
            --concurrency 1,16,64 --ceiling --ceiling-batches "$rows,$((rows * 4)),$((rows * 16))" \
            "${common[@]}"
          echo
        done
      done
      cargo build --release --quiet --bin mlpserve
      for rows in 50 200 1000; do
        echo "== (d) ranking over gRPC and HTTP binary (perf_analyzer): finalmlp_ctr, $rows rows per request"
        scripts/perf-analyzer.sh --model finalmlp_ctr --batch-size "$rows" --concurrency "1 16 64" ||
          echo "perf_analyzer failed (is $rows above the max_batch_size measured at load?)"
        echo
      done
      ;;
    e)
      for round in 1 2; do
        for api in "--api grpc" "--api v2 --binary" "--api v2"; do
          echo "== (e) gRPC vs HTTP, round $round: finalmlp_ctr, 1 row per request, $api"
          "$bin" --model-repository models --model finalmlp_ctr --rows 1 $api \
            --concurrency 1,16,64 "${common[@]}"
          echo
        done
      done
      ;;
    f)
      fdir="$root/target/bench-models-features"
      rm -rf "$fdir" && mkdir -p "$fdir/features_ctr_tensors/1"
      cp -r models/features_ctr "$fdir/"
      cp models/features_ctr/1/model.onnx "$fdir/features_ctr_tensors/1/"
      echo 'max_batch_size = 256' >"$fdir/features_ctr_tensors/config.toml"
      for round in 1 2; do
        for enc in "" --binary; do
          for model in features_ctr features_ctr_tensors; do
            echo "== (f) raw features, round $round: $model, 200 rows per request, ${enc:-V2 JSON}"
            "$bin" --model-repository "$fdir" --model "$model" --rows 200 $enc \
              --concurrency 1,16 "${common[@]}"
            echo
          done
        done
      done
      ;;
    g)
      BIN="$bin" DURATION="$DURATION" WARMUP="$WARMUP" scripts/bench-observe.sh
      ;;
    h)
      for model in ${H_MODELS:-ranking_ctr ranking_towers}; do
        for rows in 200 1000; do
          # The ceiling is measured at the batch the server runs, not interpolated to it:
          # a request of up to max_batch_size (256) rows is one batch of its rows; 1,000
          # rows run as chunks of 256 (mean 250).
          batches="64,128,256"
          ((rows < 256)) && batches="64,128,$rows,256"
          for api in "--api v2" "--api v2 --binary" "--api grpc"; do
            echo "== (h) ranking, context once vs repeated: $model, $rows candidates, $api"
            "$bin" --model-repository models --model "$model" --rows "$rows" $api \
              --context user_id,country,age,history --compare-context --rounds 2 \
              --concurrency 1,16 --ceiling --ceiling-batches "$batches" "${common[@]}"
            echo
          done
        done
      done
      ;;
    j)
      jdir="$root/target/bench-models-json"
      [[ -f "$jdir/json_mixed/1/model.onnx" ]] ||
        "$root/.venv-tools/bin/python" scripts/make-json-bench-models.py --out "$jdir"
      for round in 1 2 3; do
        for model in "json_wide 64" "json_mixed 200"; do
          set -- $model
          for decoder in walker sonic; do
            echo "== (j) JSON decoder, round $round: $1, $2 rows per request, V2 JSON, $decoder"
            MLPSERVE_JSON_DECODER="$decoder" "$bin" --model-repository "$jdir" --model "$1" \
              --rows "$2" --concurrency 1,64 "${common[@]}"
            echo
          done
        done
      done
      ;;
    *)
      echo "unknown scenario '$s' (expected a, b, c, d, e, f, g, h or j)" >&2
      exit 2
      ;;
  esac
  echo
done
