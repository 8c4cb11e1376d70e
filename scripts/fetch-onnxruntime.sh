#!/usr/bin/env bash
# Fetch the ONNX Runtime shared library from PyPI with `pip download` (no Python install of
# onnxruntime is needed). Idempotent: does nothing when the library is already there.
#
#   scripts/fetch-onnxruntime.sh                 # CPU build: `onnxruntime` wheel -> .onnxruntime/
#   ORT_FLAVOR=gpu scripts/fetch-onnxruntime.sh  # CUDA build: `onnxruntime-gpu` wheel -> .onnxruntime-gpu/
#
# The GPU flavour takes libonnxruntime.so.<ver>, libonnxruntime_providers_shared.so and
# libonnxruntime_providers_cuda.so (CUDA 13 / cuDNN 9 for 1.31.1; the TensorRT provider is
# left out). ONNX Runtime loads the provider libraries from the directory of
# libonnxruntime.so, so the three stay together. ORT_WHEEL=/path/to/wheel reuses a wheel
# downloaded before instead of downloading (~256 MB for the GPU one).
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
ORT_FLAVOR="${ORT_FLAVOR:-cpu}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$ORT_FLAVOR" in
  cpu)
    package=onnxruntime
    dest="${ORT_DEST:-$root/.onnxruntime}"
    files=("libonnxruntime.so.$ORT_VERSION")
    ;;
  gpu)
    package=onnxruntime-gpu
    dest="${ORT_DEST:-$root/.onnxruntime-gpu}"
    files=("libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so
      libonnxruntime_providers_cuda.so)
    ;;
  *)
    echo "ORT_FLAVOR must be cpu or gpu, not '$ORT_FLAVOR'" >&2
    exit 2
    ;;
esac
lib="$dest/libonnxruntime.so.$ORT_VERSION"

missing=0
for f in "${files[@]}"; do [[ -f "$dest/$f" ]] || missing=1; done
if [[ $missing == 0 ]]; then
  echo "ONNX Runtime $ORT_VERSION ($ORT_FLAVOR) already at $dest"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [[ -n "${ORT_WHEEL:-}" ]]; then
  wheel="$ORT_WHEEL"
else
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
    --dest "$tmp" "$package==$ORT_VERSION"
  wheel="$(ls "$tmp"/"${package//-/_}"-*.whl)"
fi
mkdir -p "$dest"
python3 - "$wheel" "$dest" "${files[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    have = set(z.namelist())
    for name in names:
        member = "onnxruntime/capi/" + name
        if member not in have:
            sys.exit(f"{wheel} has no {member}")
        tmp = os.path.join(dest, name + ".partial")
        with z.open(member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, name))
PY
ln -sf "libonnxruntime.so.$ORT_VERSION" "$dest/libonnxruntime.so"
echo "ONNX Runtime $ORT_VERSION ($ORT_FLAVOR) fetched to $dest: ${files[*]}"
