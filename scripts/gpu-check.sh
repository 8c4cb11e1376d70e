#!/usr/bin/env bash
# The prepared GPU check, in one go, for a machine with an NVIDIA GPU, the CUDA 13 runtime
# libraries and no network, that can only be sent ~64 MiB at a time.
#
#   scripts/gpu-check.sh --prepare   # here: GPU build of ONNX Runtime -> gpu-parts/ (<= 60 MiB
#                                    # parts of one .tar.gz, SHA256SUMS, SIZES), prints the plan
#   scripts/gpu-check.sh --dry-run   # here or there: validate parts, binaries, models; print
#                                    # the commands; no GPU needed; non-zero naming what's missing
#   scripts/gpu-check.sh             # there: reassemble + verify the parts, check the CUDA
#                                    # libraries, serve the zoo with --execution-provider cuda
#                                    # and check every sample, then bench heavy MLP and ranking
#                                    # on CPU and CUDA; prints one markdown table
#
# Settings (environment): MLPSERVE_BIN [target/release/mlpserve], BENCH [target/release/
# mlpserve-bench if present, else "$MLPSERVE_BIN bench"], MODELS [models], PARTS_DIR
# [gpu-parts], ORT_GPU_DIR [.onnxruntime-gpu], ORT_VERSION [1.31.1], HEAVY_REPO
# [target/bench-models], PYTHON [.venv-tools/bin/python if present, else python3], RESULTS
# [target/gpu-check], PORT [18000; gRPC PORT+1], RTOL/ATOL [1e-3/1e-4], STRICT [0: outputs
# within the TF32 tolerance only are reported, not failed], DURATION/WARMUP/CEILING_DURATION
# [5s/1s/1s], CLIENTS [1,64], INTRA_OP [server default], CUDA_LIB_DIRS [auto: every
# site-packages nvidia/*/lib and /usr/local/cuda/lib64], PART_MIB [60], MAX_PART_MIB [60].
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=run
case "${1:-}" in
  "") ;;
  --prepare) mode=prepare ;;
  --dry-run) mode=dry-run ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "unknown argument '$1' (expected --prepare, --dry-run or nothing)" >&2
    exit 2
    ;;
esac

ORT_VERSION="${ORT_VERSION:-1.31.1}"
PARTS_DIR="${PARTS_DIR:-gpu-parts}"
ORT_GPU_DIR="${ORT_GPU_DIR:-.onnxruntime-gpu}"
MODELS="${MODELS:-models}"
MLPSERVE_BIN="${MLPSERVE_BIN:-target/release/mlpserve}"
HEAVY_REPO="${HEAVY_REPO:-target/bench-models}"
RESULTS="${RESULTS:-target/gpu-check}"
PORT="${PORT:-18000}"
RTOL="${RTOL:-1e-3}"
ATOL="${ATOL:-1e-4}"
STRICT="${STRICT:-0}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
CEILING_DURATION="${CEILING_DURATION:-1s}"
CLIENTS="${CLIENTS:-1,64}"
PART_MIB="${PART_MIB:-60}"
MAX_PART_MIB="${MAX_PART_MIB:-60}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv-tools/bin/python ]]; then PYTHON=.venv-tools/bin/python; else PYTHON=python3; fi
fi
if [[ -z "${BENCH:-}" ]]; then
  bench_bin="$(dirname "$MLPSERVE_BIN")/mlpserve-bench"
  if [[ -x "$bench_bin" ]]; then BENCH="$bench_bin"; else BENCH="$MLPSERVE_BIN bench"; fi
fi
read -r -a bench_cmd <<<"$BENCH"

archive="onnxruntime-gpu-$ORT_VERSION.tar.gz"
libs=("libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so
  libonnxruntime_providers_cuda.so)
ort_lib="$ORT_GPU_DIR/libonnxruntime.so.$ORT_VERSION"
abs() { case "$1" in /*) echo "$1" ;; *) echo "$root/$1" ;; esac; }
heavy_model="$HEAVY_REPO/mlp_heavy/1/model.onnx"

log() { echo "== $*"; }
die() {
  echo "gpu-check: $*" >&2
  exit 1
}

# ---------------------------------------------------------------------------- prepare
if [[ $mode == prepare ]]; then
  ORT_FLAVOR=gpu ORT_VERSION="$ORT_VERSION" ORT_DEST="$(abs "$ORT_GPU_DIR")" scripts/fetch-onnxruntime.sh
  rm -rf "$PARTS_DIR"
  mkdir -p "$PARTS_DIR"
  log "packing ${libs[*]} into $PARTS_DIR/$archive.part-NN ($PART_MIB MiB parts)"
  tar -C "$ORT_GPU_DIR" -cf - "${libs[@]}" | gzip -6 >"$PARTS_DIR/$archive"
  (
    cd "$PARTS_DIR"
    split -d -a 2 -b "${PART_MIB}M" "$archive" "$archive.part-"
    sha256sum "$archive.part-"* "$archive" >SHA256SUMS
    (cd "$(abs "$ORT_GPU_DIR")" && sha256sum "${libs[@]}") | sed 's|  |  lib/|' >>SHA256SUMS
    for f in "$archive.part-"*; do echo "$(stat -c %s "$f") $f"; done >SIZES
    rm "$archive"
  )
  cat "$PARTS_DIR/SIZES"
  echo "Send $PARTS_DIR/SHA256SUMS, $PARTS_DIR/SIZES and each part (one part per transfer of"
  echo "<= 64 MiB), the release binaries and this checkout; then run scripts/gpu-check.sh there."
  exit 0
fi

# ---------------------------------------------------------------------------- validation
# Fills `problems` with what is missing or inconsistent; `libs_source` says where the GPU
# libraries will come from.
problems=()
libs_source=""
validate() {
  local have_libs=1 f
  for f in "${libs[@]}"; do [[ -f "$ORT_GPU_DIR/$f" ]] || have_libs=0; done
  if [[ -f "$PARTS_DIR/SHA256SUMS" ]]; then
    libs_source=parts
    local parts n=0 expected i name size actual max=$((MAX_PART_MIB * 1024 * 1024))
    mapfile -t parts < <(awk '{print $2}' "$PARTS_DIR/SHA256SUMS" | grep -E '\.part-[0-9]+$' || true)
    [[ ${#parts[@]} -gt 0 ]] || problems+=("$PARTS_DIR/SHA256SUMS lists no parts")
    [[ -f "$PARTS_DIR/SIZES" ]] || problems+=("$PARTS_DIR/SIZES (part sizes)")
    for i in "${!parts[@]}"; do
      name="${parts[$i]}"
      expected="$(printf '%s.part-%02d' "$archive" "$i")"
      [[ "$name" == "$expected" ]] || problems+=("part $i: SHA256SUMS lists $name, expected $expected")
      if [[ ! -f "$PARTS_DIR/$name" ]]; then
        problems+=("part $PARTS_DIR/$name")
        continue
      fi
      n=$((n + 1))
      actual="$(stat -c %s "$PARTS_DIR/$name")"
      size="$(awk -v f="$name" '$2 == f {print $1}' "$PARTS_DIR/SIZES" 2>/dev/null || true)"
      [[ "$actual" == "$size" ]] || problems+=("part $name is $actual bytes, SIZES says ${size:-nothing}")
      ((actual <= max)) || problems+=("part $name is $actual bytes, over $MAX_PART_MIB MiB")
    done
    if [[ $n -eq ${#parts[@]} && $n -gt 0 ]]; then
      local bad
      bad="$(cd "$PARTS_DIR" && grep -E '\.part-[0-9]+$' SHA256SUMS | sha256sum -c --quiet 2>&1 || true)"
      [[ -z "$bad" ]] || problems+=("part checksums: $(echo "$bad" | tr '\n' ' ')")
    fi
    for f in "$archive" "${libs[@]/#/lib/}"; do
      grep -qE "  $f\$" "$PARTS_DIR/SHA256SUMS" || problems+=("$PARTS_DIR/SHA256SUMS has no line for $f")
    done
  elif [[ $have_libs == 1 ]]; then
    libs_source=assembled
  else
    libs_source=none
    problems+=("GPU ONNX Runtime: neither $PARTS_DIR/SHA256SUMS (parts, see --prepare) nor ${libs[*]} in $ORT_GPU_DIR/")
  fi
  [[ -x "$MLPSERVE_BIN" ]] || problems+=("server binary $MLPSERVE_BIN (cargo build --release)")
  [[ -x "${bench_cmd[0]}" ]] || command -v "${bench_cmd[0]}" >/dev/null ||
    problems+=("bench command '${bench_cmd[0]}' (BENCH)")
  command -v python3 >/dev/null || problems+=("python3 (sample checker)")
  local models=0 m
  if [[ -d "$MODELS" ]]; then
    for m in "$MODELS"/*/; do
      m="${m%/}"
      [[ -f "$m/1/model.onnx" ]] || continue
      models=$((models + 1))
      [[ -f "$m/samples.json" ]] || problems+=("$m/samples.json")
    done
  fi
  [[ $models -gt 0 ]] || problems+=("models: no <model>/1/model.onnx under '$MODELS'")
  [[ -f "$MODELS/finalmlp_ctr/1/model.onnx" ]] || problems+=("ranking model $MODELS/finalmlp_ctr/1/model.onnx")
  heavy_plan=present
  if [[ ! -f "$heavy_model" ]]; then
    if [[ -f scripts/make-bench-model.py ]] && "$PYTHON" -c "import onnx, numpy" 2>/dev/null; then
      heavy_plan=generate
    else
      heavy_plan=missing
      problems+=("heavy model $heavy_model (or $PYTHON with onnx and numpy to make it)")
    fi
  fi
  model_count=$models
}

# The commands the check runs, printed by --dry-run and run by the default mode.
serve_cmd() { # provider
  echo "$MLPSERVE_BIN serve --model-repository $MODELS --execution-provider $1 --ort-lib $ort_lib" \
    "--host 127.0.0.1 --http-port $PORT --grpc-port $((PORT + 1)) --log-level info"
}
bench_args() { # heavy|ranking provider
  local common="--server-config $RESULTS/server-$2.toml --ort-lib $ort_lib --rows 1 --concurrency $CLIENTS"
  common+=" --duration $DURATION --warmup $WARMUP --ceiling --ceiling-duration $CEILING_DURATION"
  [[ -z "${INTRA_OP:-}" ]] || common+=" --intra-op-threads $INTRA_OP"
  case "$1" in
    heavy) echo "--model-repository $HEAVY_REPO --model mlp_heavy --ceiling-batches 1,64,256 $common" ;;
    ranking) echo "--model-repository $MODELS --model finalmlp_ctr --ceiling-batches 1,64,256 $common" ;;
  esac
}
samples_cmd() { # provider rtol atol
  local strict=""
  [[ $STRICT == 1 ]] && strict=" --strict"
  echo "python3 scripts/gpu_check.py samples --url http://127.0.0.1:$PORT --models $MODELS" \
    "--expect-provider $1 --rtol $2 --atol $3$strict --out $RESULTS/samples-$1.json"
}

print_plan() {
  echo "GPU ONNX Runtime: $libs_source ($PARTS_DIR -> $ORT_GPU_DIR: ${libs[*]})"
  [[ $libs_source != parts ]] || echo "  cat $PARTS_DIR/$archive.part-* > $archive; sha256sum -c; tar -xzf -C $ORT_GPU_DIR"
  echo "server: $MLPSERVE_BIN; bench: ${bench_cmd[*]}; models: $model_count under $MODELS"
  echo "heavy model: $heavy_model ($heavy_plan)"
  [[ $heavy_plan != generate ]] || echo "  $PYTHON scripts/make-bench-model.py --out $HEAVY_REPO"
  echo "preflight: nvidia-smi -L; ldd $ORT_GPU_DIR/libonnxruntime_providers_cuda.so (no 'not found');"
  echo "  libcudnn.so.9 on LD_LIBRARY_PATH or in ldconfig -p"
  echo "samples on cpu (control, tolerances of tests/zoo.rs), then on cuda:"
  echo "  $(serve_cmd cpu) &"
  echo "  $(samples_cmd cpu 1e-4 1e-5); kill %1"
  echo "  $(serve_cmd cuda) &"
  echo "  $(samples_cmd cuda "$RTOL" "$ATOL"); kill %1"
  local s p
  for s in heavy ranking; do
    for p in cpu cuda; do
      echo "bench $s $p: ${bench_cmd[*]} $(bench_args $s $p) > $RESULTS/bench-$s-$p.log"
    done
  done
  echo "table: python3 scripts/gpu_check.py table --results $RESULTS --rtol $RTOL --atol $ATOL"
}

validate
if [[ $mode == dry-run ]]; then
  print_plan
  if [[ ${#problems[@]} -gt 0 ]]; then
    echo "gpu-check --dry-run: missing or inconsistent:" >&2
    printf '  - %s\n' "${problems[@]}" >&2
    exit 1
  fi
  echo "gpu-check --dry-run: inputs complete"
  exit 0
fi
if [[ ${#problems[@]} -gt 0 ]]; then
  printf '  - %s\n' "${problems[@]}" >&2
  die "missing or inconsistent inputs (above)"
fi

# ---------------------------------------------------------------------------- run
mkdir -p "$RESULTS"
if [[ $libs_source == parts ]]; then
  log "reassembling $archive from $PARTS_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  cat "$PARTS_DIR/$archive.part-"* >"$tmp/$archive"
  (cd "$tmp" && grep -E "  $archive\$" "$(abs "$PARTS_DIR")/SHA256SUMS" | sha256sum -c --quiet) ||
    die "reassembled $archive does not match SHA256SUMS"
  mkdir -p "$ORT_GPU_DIR"
  tar -C "$ORT_GPU_DIR" -xzf "$tmp/$archive"
  (cd "$ORT_GPU_DIR" && grep -E '  lib/' "$(abs "$PARTS_DIR")/SHA256SUMS" | sed 's|  lib/|  |' | sha256sum -c --quiet) ||
    die "extracted libraries do not match SHA256SUMS"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$ORT_GPU_DIR/libonnxruntime.so"
  rm -f "$tmp/$archive"
fi

log "preflight"
nvidia-smi -L || die "nvidia-smi found no GPU"
if [[ -z "${CUDA_LIB_DIRS:-}" ]]; then
  CUDA_LIB_DIRS=""
  for py in python3 "$PYTHON"; do
    for sp in $("$py" -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null || true); do
      for d in "$sp"/nvidia/*/lib; do [[ -d "$d" ]] && CUDA_LIB_DIRS+="${CUDA_LIB_DIRS:+:}$d"; done
    done
  done
  [[ -d /usr/local/cuda/lib64 ]] && CUDA_LIB_DIRS+="${CUDA_LIB_DIRS:+:}/usr/local/cuda/lib64"
fi
export LD_LIBRARY_PATH="$CUDA_LIB_DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
missing="$(ldd "$ORT_GPU_DIR/libonnxruntime_providers_cuda.so" | grep 'not found' || true)"
[[ -z "$missing" ]] || die "the CUDA provider's libraries are not on the loader path: $missing"
find_lib() {
  local d
  IFS=: read -r -a dirs <<<"$LD_LIBRARY_PATH"
  for d in "${dirs[@]}"; do [[ -e "$d/$1" ]] && return 0; done
  ldconfig -p 2>/dev/null | grep -q "$1"
}
find_lib libcudnn.so.9 || die "libcudnn.so.9 (cuDNN 9, loaded at run time by the CUDA provider) is not on the loader path"

if [[ ! -f "$heavy_model" ]]; then
  log "making the heavy benchmark model"
  "$PYTHON" scripts/make-bench-model.py --out "$HEAVY_REPO"
fi
for p in cpu cuda; do printf 'execution_provider = "%s"\n' "$p" >"$RESULTS/server-$p.toml"; done

server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "${tmp:-}"' EXIT

status=0
for p in cpu cuda; do
  log "zoo samples on $p"
  # shellcheck disable=SC2046
  $(serve_cmd "$p") >"$RESULTS/serve-$p.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 240); do
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://127.0.0.1:$PORT/v2/health/ready" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.5
  done
  if [[ $p == cpu ]]; then
    $(samples_cmd cpu 1e-4 1e-5) || status=1
  else
    $(samples_cmd cuda "$RTOL" "$ATOL") || status=1
  fi
  stop_server
  grep -E 'WARN|ERROR' "$RESULTS/serve-$p.log" | head -20 || true
done

for s in heavy ranking; do
  for p in cpu cuda; do
    log "bench $s on $p"
    # shellcheck disable=SC2046
    "${bench_cmd[@]}" $(bench_args $s $p) 2>&1 | tee "$RESULTS/bench-$s-$p.log" || status=1
  done
done

log "GPU check ($(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1), ONNX Runtime $ORT_VERSION)"
python3 scripts/gpu_check.py table --results "$RESULTS" --rtol "$RTOL" --atol "$ATOL" | tee "$RESULTS/table.md"
exit $status
