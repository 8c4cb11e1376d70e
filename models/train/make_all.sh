#!/usr/bin/env bash
# Regenerate every model of the zoo, then the zoo index (models/README.md).
# Usage: bash make_all.sh            (from any directory; uses the active python)
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python}"
for script in \
    dtype_echo string_echo mlp_digits churn_pipeline \
    finalmlp_ctr dcnv2_ctr widedeep_ctr din_ctr features_ctr ranking_ctr ranking_towers \
    mixer_digits gmlp_digits tsmixer_macro fastkan_cancer field_china; do
    echo "== ${script}"
    "$PY" "${script}.py"
done
"$PY" make_index.py
"$PY" check_zoo.py
