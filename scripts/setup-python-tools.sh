#!/usr/bin/env bash
# Creates (or repairs) the Python tools venv at .venv-tools/ with the exact versions in
# tests/python/requirements.txt: tritonclient (HTTP + gRPC, with its bundled perf_analyzer),
# numpy, pytest. Idempotent: a second run only checks that the pins are satisfied.
# Prints the venv's python path on the last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-tools"
requirements="$root/tests/python/requirements.txt"

if ! [[ -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
# With exact pins already installed pip makes no network calls, so reruns are cheap; it
# also puts back any pin another tool changed in the shared venv.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
"$venv/bin/python" -c "import tritonclient.http, tritonclient.grpc, numpy, pytest" >&2
echo "$venv/bin/python"
