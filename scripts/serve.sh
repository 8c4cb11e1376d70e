#!/usr/bin/env bash
# Runs mlpserve on the bundled model zoo: fetches ONNX Runtime if missing, builds the
# release binary, serves HTTP on :8000 and gRPC on :8001. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/fetch-onnxruntime.sh
cargo build --release --locked --bin mlpserve
exec target/release/mlpserve serve --model-repository models "$@"
