#!/usr/bin/env bash
# The whole test suite, from a fresh machine: fetches ONNX Runtime, builds, runs the Rust
# unit and integration tests (real server, real ONNX Runtime, real models), then the
# compatibility tests with the real third-party clients. CI runs exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/fetch-onnxruntime.sh
# promtool validates our /metrics output in tests/ops.rs.
if ! command -v promtool >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
cargo build --locked --all-targets

echo "== gpu-check --prepare/--dry-run with fake parts (about 5 s)"
tests/gpu_check_dry_run.sh

echo "== cargo test (includes tests/fuzz_corpus.rs: the fuzz corpus replayed through the fuzz targets, < 1 s)"
cargo test --locked --all-targets

echo "== real-client conformance (tritonclient over HTTP and gRPC)"
scripts/setup-python-tools.sh
MLPSERVE_BIN=target/debug/mlpserve .venv-tools/bin/python -m pytest tests/python -q

echo "== perf_analyzer smoke run against both ports"
scripts/perf-analyzer.sh --smoke
