#!/usr/bin/env bash
# The prepared GPU check, for a machine with an NVIDIA GPU and the CUDA 13 libraries but no
# network, that is sent at most 64 MiB per call (the tracked tree counted in every call).
#
#   scripts/gpu-check.sh --prepare   # here: release build, the GPU ONNX Runtime packed with xz
#                                    # into parts, the binaries packed; prints the call plan
#   scripts/gpu-check.sh --dry-run   # here: parts and checksums, each binary run (the bench
#                                    # with the arguments of every benchmark), models
#   scripts/gpu-check.sh --smoke     # there, every call but the last: what has arrived, the
#                                    # binaries, Python, the CUDA libraries, the heavy model
#   scripts/gpu-check.sh             # there, last call: reassemble, preflight, zoo samples on
#                                    # CPU and CUDA, benchmarks; results to $OUT, table last
#   scripts/gpu-check.sh --rehearse  # here: all of the above with CUDA stand-ins, the CPU
#                                    # provider in CUDA's place (REHEARSE_GPU_EP=cuda: a
#                                    # CUDA that fails)
#
# Settings (environment) [default]: BIN_DIR [target/release: --prepare builds it], PARTS_DIR
# [gpu-parts], ORT_GPU_DIR [.onnxruntime-gpu; --prepare fetches the wheel only when the
# libraries are missing], ORT_VERSION [1.31.1], PART_MIB [48], XZ_LEVEL [-9], MODELS [models],
# HEAVY_REPO [target/bench-models], PYTHON [/opt/torch/.venv/bin/python3, .venv-tools/bin/python
# or python3], SITE_PACKAGES [$PYTHON's], DRIVER_LIB_DIRS [/usr/local/nvidia/lib64:
# /usr/local/nvidia/lib], GPU_EP [cuda], RESULTS [target/gpu-check], OUT [none], DURATION/
# WARMUP/CEILING_DURATION [5s/1s/1s], CLIENTS [1,64], CPU_THREADS [all cores], RTOL/ATOL
# [1e-3/1e-4], STRICT [0], PORT [18000], BUDGET_S [220: the run stops starting steps after].
set -euo pipefail
shopt -s nullglob
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode="${1:-run}"
case "$mode" in
  --prepare | --dry-run | --smoke | --rehearse | run) ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' && exit 0 ;;
  *) echo "unknown argument '$mode' (expected --prepare, --dry-run, --smoke, --rehearse or none)" >&2 && exit 2 ;;
esac
# Every default once, here (the rehearsal packs faster, into small parts).
[[ $mode != --rehearse ]] || : "${XZ_LEVEL:=-0}" "${PART_MIB:=4}"
V="${ORT_VERSION:-1.31.1}" PART_MIB="${PART_MIB:-48}" XZ_LEVEL="${XZ_LEVEL:--9}"
BIN_DIR="${BIN_DIR:-target/release}" PARTS="${PARTS_DIR:-gpu-parts}" ORT="${ORT_GPU_DIR:-.onnxruntime-gpu}"
MODELS="${MODELS:-models}" HEAVY="${HEAVY_REPO:-target/bench-models}" RESULTS="${RESULTS:-target/gpu-check}"
GPU_EP="${GPU_EP:-cuda}" PORT="${PORT:-18000}" CLIENTS="${CLIENTS:-1,64}" CPU_THREADS="${CPU_THREADS:-$(nproc)}"
RTOL="${RTOL:-1e-3}" ATOL="${ATOL:-1e-4}" STRICT="${STRICT:-0}" BUDGET_S="${BUDGET_S:-220}"
DURATION="${DURATION:-5s}" WARMUP="${WARMUP:-1s}" CEILING_DURATION="${CEILING_DURATION:-1s}"
for PYTHON in "${PYTHON:-}" /opt/torch/.venv/bin/python3 .venv-tools/bin/python python3; do
  [[ -n $PYTHON ]] && command -v "$PYTHON" >/dev/null && break
done
libs=("libonnxruntime.so.$V" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)
cuda_libs=(libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudnn.so.9)
archive="ort-gpu-$V.tar.xz" server="$PARTS/bin/mlpserve" bench="$PARTS/bin/mlpserve-bench"
say() { echo "== $*"; }
die() { echo "gpu-check: $*" >&2 && exit 1; }
problems=0
problem() { echo "gpu-check: $*" >&2 && problems=$((problems + 1)); }

# ------------------------------------------------------------------------------------ prepare
prepare() {
  [[ $BIN_DIR != target/release ]] || cargo build --release --locked -p mlpserve -p mlpserve-bench
  ORT_FLAVOR=gpu ORT_VERSION="$V" ORT_DEST="$(realpath -m "$ORT")" scripts/fetch-onnxruntime.sh
  rm -rf "$PARTS" && mkdir -p "$PARTS/stage"
  say "packing ${libs[*]} with xz $XZ_LEVEL into $PART_MIB MiB parts"
  tar -C "$ORT" -cf - "${libs[@]}" | xz "$XZ_LEVEL" -T0 | split -d -a 2 -b "${PART_MIB}M" - "$PARTS/$archive."
  cp "$BIN_DIR/mlpserve" "$BIN_DIR/mlpserve-bench" "$PARTS/stage/"
  strip "$PARTS/stage/"* 2>/dev/null || true # smaller; a stand-in script is left as it is
  tar -C "$PARTS/stage" -cf - mlpserve mlpserve-bench | xz "$XZ_LEVEL" -T0 >"$PARTS/bin.tar.xz"
  rm -r "$PARTS/stage"
  (cd "$PARTS" && sha256sum bin.tar.xz "$archive".*) >"$PARTS/SHA256SUMS"
  (cd "$ORT" && sha256sum "${libs[@]}") | sed 's|  |  lib/|' >>"$PARTS/SHA256SUMS"
  # What travels in every call: tracked and untracked-not-ignored files.
  local tree parts=("$PARTS/$archive".*) n i carry cmd bytes limit=$((64 << 20)) over=0
  tree=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s}')
  n=$((${#parts[@]} > 1 ? ${#parts[@]} : 2)) # the smoke test comes before the last part
  say "plan: $n calls of the device tool, each straight after the last (the machine keeps what came earlier only while warm)"
  for ((i = 0; i < n; i++)); do
    carry=("$PARTS/SHA256SUMS")
    ((i > 0)) || carry+=("$PARTS/bin.tar.xz")
    ((i >= ${#parts[@]})) || carry+=("${parts[$i]}")
    cmd="scripts/gpu-check.sh --smoke" && ((i < n - 1)) || cmd="scripts/gpu-check.sh"
    bytes=$((tree + $(stat -c %s "${carry[@]}" | awk '{s += $1} END {print s}')))
    printf 'call %d/%d: %d bytes (tree %d + carried) of %d\n' $((i + 1)) "$n" "$bytes" "$tree" "$limit"
    printf '  carry: [%s]\n' "$(printf '"%s", ' "${carry[@]}" | sed 's/, $//')"
    echo "  command: $cmd$( ((i < n - 1)) && echo "   (timeout_s 120)" || echo "   (timeout_s 300; results come back under \$OUT)")"
    ((bytes < limit)) || over=1
  done
  ((over == 0)) || die "a call is over 64 MiB: lower PART_MIB"
}

# ------------------------------------------------------------------------------------ checks
benches=(heavy-cpu heavy-cuda ranking-cpu ranking-cuda)
# bench_args heavy|ranking-cpu|cuda: writes the benchmark's server config (the ranking one
# loads only its model) and prints its mlpserve-bench arguments.
bench_args() {
  local repo="$MODELS" model=finalmlp_ctr ep=cpu threads="intra_op_threads = $CPU_THREADS"
  [[ $1 == ranking-* ]] || repo="$HEAVY" model=mlp_heavy
  [[ $1 == *-cpu ]] || ep="$GPU_EP" threads=""
  mkdir -p "$RESULTS"
  printf 'execution_provider = "%s"\nstrict_readiness = false\nmodel_control_mode = "explicit"\nload_model = ["%s"]\n%s\n' \
    "$ep" "$model" "$threads" >"$RESULTS/server-$1.toml"
  echo "--model-repository $repo --model $model --server-config $RESULTS/server-$1.toml" \
    "--ort-lib $ORT/libonnxruntime.so.$V --rows 1 --concurrency $CLIENTS --duration $DURATION" \
    "--warmup $WARMUP --ceiling --ceiling-batches 1,64,256 --ceiling-duration $CEILING_DURATION"
}
# Parts against SHA256SUMS (--ignore-missing: only those that have arrived), then the
# binaries unpacked and run: --version, and the bench with every benchmark's arguments.
check_inputs() {
  [[ -f $PARTS/SHA256SUMS ]] || die "$PARTS/SHA256SUMS missing: send call 1 of the plan (scripts/gpu-check.sh --prepare)"
  (cd "$PARTS" && grep -v '  lib/' SHA256SUMS | sha256sum -c --quiet "$@") || problem "parts missing or damaged (above)"
  local f b here=("$PARTS/$archive".*)
  say "parts here: ${#here[@]} of $(grep -c "  $archive\." "$PARTS/SHA256SUMS")"
  for f in "${here[@]}"; do
    (($(stat -c %s "$f") <= PART_MIB << 20)) || problem "$f is over $PART_MIB MiB"
  done
  if [[ -f $PARTS/bin.tar.xz && ! $bench -nt $PARTS/bin.tar.xz ]]; then
    mkdir -p "$PARTS/bin" && tar -C "$PARTS/bin" -xJf "$PARTS/bin.tar.xz" && touch "$PARTS/bin/"*
  fi
  "$server" --version && "$bench" --version || problem "the binaries in $PARTS/bin do not run"
  for b in "${benches[@]}"; do
    # shellcheck disable=SC2046
    "$bench" $(bench_args "$b") --dry-run >/dev/null || problem "mlpserve-bench rejects the ${b/-/ } benchmark's arguments"
  done
  for f in "$MODELS"/*/1/model.onnx; do [[ -f ${f%/1/model.onnx}/samples.json ]] || problem "${f%/1/model.onnx}/samples.json missing"; done
}
# LD_LIBRARY_PATH gets the CUDA wheels' folders and the driver's; every library of the CUDA
# provider must be found there or by ldconfig.
gpu_preflight() {
  local sp d l found cache dirs
  nvidia-smi -L || problem "nvidia-smi found no GPU"
  for sp in ${SITE_PACKAGES:-$("$PYTHON" -c 'import site; print(*site.getsitepackages())')}; do
    for d in "$sp"/nvidia/*/lib; do [[ ! -d $d ]] || LD_LIBRARY_PATH+=":$d"; done
  done
  for d in /usr/local/cuda/lib64 ${DRIVER_LIB_DIRS:-/usr/local/nvidia/lib64:/usr/local/nvidia/lib}; do LD_LIBRARY_PATH+=":$d"; done
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH#:}"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  cache="$(ldconfig -p 2>/dev/null || true)" # not `ldconfig -p | grep -q`: grep's early exit fails the pipe
  IFS=: read -r -a dirs <<<"$LD_LIBRARY_PATH"
  for l in "${cuda_libs[@]}"; do
    found=""
    for d in "${dirs[@]}"; do [[ ! -e $d/$l ]] || found="$d/$l"; done
    [[ -n $found || $cache == *"$l "* ]] || problem "$l not found on LD_LIBRARY_PATH or by ldconfig"
  done
  "$PYTHON" -c 'import numpy, onnx' || problem "$PYTHON lacks numpy or onnx (the heavy model's generator)"
  if [[ ! -f $HEAVY/mlp_heavy/1/model.onnx ]]; then
    "$PYTHON" scripts/make-bench-model.py --out "$HEAVY" || problem "making the heavy model failed"
  fi
}

# ------------------------------------------------------------------------------------ run
pid=""
stop() { [[ -z $pid ]] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""; } || true; }
finish() {
  local rc=$?
  stop
  if [[ -n ${OUT:-} ]]; then
    tar -C "$(dirname "$RESULTS")" -czf "$OUT/results.tgz" "$(basename "$RESULTS")" && cp "$RESULTS/table.md" "$OUT/" 2>/dev/null
  fi
  [[ ! -f $RESULTS/table.md ]] || { echo && cat "$RESULTS/table.md"; }
  exit "$rc"
}
left() { echo $((SECONDS < BUDGET_S - 1 ? BUDGET_S - SECONDS : 1)); }
run() {
  trap finish EXIT
  export NO_COLOR=1 # plain logs: they are read as text, far from a terminal
  local f p b missing status=0
  check_inputs
  ((problems == 0)) || die "inputs incomplete (above)"
  local sums
  sums="$(grep '  lib/' "$PARTS/SHA256SUMS" | sed 's|  lib/|  |')"
  if ! (cd "$ORT" 2>/dev/null && sha256sum -c --quiet <<<"$sums" 2>/dev/null); then
    say "reassembling $archive from $PARTS"
    mkdir -p "$ORT" && cat "$PARTS/$archive".* | xz -dc | tar -C "$ORT" -xf -
    (cd "$ORT" && sha256sum -c --quiet <<<"$sums") || die "the libraries do not match SHA256SUMS"
  fi
  say "preflight"
  gpu_preflight
  missing="$(ldd "$ORT/libonnxruntime_providers_cuda.so" | grep 'not found' || true)"
  [[ -z $missing ]] || problem "the CUDA provider's libraries are not all found: $missing"
  ((problems == 0)) || die "preflight failed (above)"
  for p in cpu cuda; do
    say "zoo samples on $p ($(left) s of the budget left)"
    local ep=cpu tol=(--rtol 1e-4 --atol 1e-5)
    [[ $p == cpu ]] || ep="$GPU_EP" tol=(--rtol "$RTOL" --atol "$ATOL")
    "$server" serve --model-repository "$MODELS" --execution-provider "$ep" --ort-lib "$ORT/libonnxruntime.so.$V" \
      --strict-readiness false --host 127.0.0.1 --http-port "$PORT" --grpc-port $((PORT + 1)) >"$RESULTS/serve-$p.log" 2>&1 &
    pid=$!
    "$PYTHON" scripts/wait_ready.py "http://127.0.0.1:$PORT/v2/health/ready" --pid "$pid" --timeout 90 &&
      timeout "$(left)" "$PYTHON" scripts/gpu_check.py samples --url "http://127.0.0.1:$PORT" --models "$MODELS" --expect-provider "$ep" \
        "${tol[@]}" $([[ $STRICT == 0 ]] || echo --strict) --out "$RESULTS/samples-$p.json" || status=1
    stop
  done
  for b in "${benches[@]}"; do
    f="$RESULTS/bench-$b.log"
    if [[ $b == *-cuda ]] && ! grep -qs "\"provider\": \"$GPU_EP" "$RESULTS/samples-cuda.json"; then
      echo "skipped: no zoo model loaded on $GPU_EP" >"$f"
    elif (($(left) < 10)); then
      echo "skipped: the run's budget (BUDGET_S) was spent" >"$f"
    else
      say "bench ${b/-/ on } ($(left) s of the budget left)"
      # shellcheck disable=SC2046
      timeout "$(left)" "$bench" $(bench_args "$b") >"$f" 2>&1 || { status=1 && tail -3 "$f"; }
    fi
  done
  "$PYTHON" scripts/gpu_check.py table --results "$RESULTS" --gpu-ep "$GPU_EP" --cpu-threads "$CPU_THREADS" \
    --gpu "$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)" --ort "$V" >"$RESULTS/table.md" || status=1
  say "whole run: $SECONDS s"
  return $status
}

# ------------------------------------------------------------------------------------ rehearse
# Stand-ins: an nvidia-smi, empty CUDA libraries in a wheel-like and a driver-like folder,
# and a "GPU build" made of the CPU build's libonnxruntime and provider libraries that need
# those CUDA libraries; the CPU provider runs where CUDA would.
rehearse() {
  t="$(mktemp -d)"
  trap 'rm -rf "$t"' EXIT
  mkdir -p "$t/bin" "$t/site/nvidia/cu13/lib" "$t/site/nvidia/cudnn/lib" "$t/driver" "$t/src"
  printf '#!/bin/sh\ncase "$*" in *query*) echo "CPU stand-in, none" ;; *) echo "GPU 0: CPU stand-in" ;; esac\n' >"$t/bin/nvidia-smi"
  chmod +x "$t/bin/nvidia-smi"
  stub() { cc -shared -fPIC -x c /dev/null -o "$1/$2" -Wl,-soname,"$2" "${@:3}"; }
  for l in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10; do stub "$t/site/nvidia/cu13/lib" $l; done
  stub "$t/site/nvidia/cudnn/lib" libcudnn.so.9 && stub "$t/driver" libcuda.so.1 && stub "$t/src" libonnxruntime_providers_shared.so
  stub "$t/src" libonnxruntime_providers_cuda.so -Wl,--no-as-needed -L"$t/site/nvidia/cu13/lib" -L"$t/driver" \
    -l:libcublasLt.so.13 -l:libcublas.so.13 -l:libcurand.so.10 -l:libcudart.so.13 -l:libcuda.so.1
  # The GPU build's own main library where it is here (its CPU provider runs), else the CPU build's.
  cp "$(ls {.onnxruntime-gpu,.onnxruntime}/libonnxruntime.so."$V" | head -1)" "$t/src/"
  export PATH="$t/bin:$PATH" SITE_PACKAGES="$t/site" DRIVER_LIB_DIRS="$t/driver" GPU_EP="${REHEARSE_GPU_EP:-cpu}" PARTS_DIR="$t/parts"
  export XZ_LEVEL PART_MIB RESULTS="$t/results" OUT="${OUT:-$t/out}" ORT_GPU_DIR="$t/src"
  "$0" --prepare
  export ORT_GPU_DIR="$t/ort" # reassembled from the parts
  "$0" --dry-run && "$0" --smoke && "$0"
}

case "$mode" in
  --prepare) prepare ;;
  --rehearse) rehearse ;;
  --dry-run | --smoke)
    if [[ $mode == --dry-run ]]; then check_inputs; else check_inputs --ignore-missing && gpu_preflight; fi
    [[ $mode == --smoke ]] || for b in "${benches[@]}"; do echo "bench ${b/-/ }: $bench $(bench_args "$b")"; done
    ((problems == 0)) || die "$problems problem(s) (above)"
    say "gpu-check $mode: ok"
    ;;
  run)
    rm -rf "$RESULTS" && mkdir -p "$RESULTS"
    if [[ -z ${OUT:-} ]]; then run; else mkdir -p "$OUT" && run 2>&1 | tee "$OUT/gpu-check.log"; fi
    ;;
esac
