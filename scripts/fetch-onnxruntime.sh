#!/usr/bin/env bash
# Fetch the ONNX Runtime shared library from the `onnxruntime` wheel on PyPI into
# .onnxruntime/ (git-ignored). Idempotent: does nothing when the library is already there.
# Only `pip download` is used (no Python install of onnxruntime is needed).
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.onnxruntime"
lib="$dest/libonnxruntime.so.$ORT_VERSION"

if [[ -f "$lib" ]]; then
  echo "ONNX Runtime $ORT_VERSION already at $lib"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version 3.11 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
  --dest "$tmp" "onnxruntime==$ORT_VERSION"
wheel="$(ls "$tmp"/onnxruntime-*.whl)"
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("onnxruntime/capi/libonnxruntime.so"):
            z.extract(name, out)
PY
mkdir -p "$dest"
cp "$tmp"/unpacked/onnxruntime/capi/libonnxruntime.so.* "$dest/"
ln -sf "libonnxruntime.so.$ORT_VERSION" "$dest/libonnxruntime.so"
echo "ONNX Runtime $ORT_VERSION fetched to $lib"
