#!/usr/bin/env bash
# Set up the dev virtualenv (scripts/setup-dev.sh), lint, and run the whole test suite; then run the lmdeploy
# tests again on the oldest lmdeploy release the CPU test engine is checked against.
# Extra arguments go to the first pytest run (e.g. `bash scripts/test.sh tests/llms -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LAGENT_VENV:-.venv}
older_lmdeploy=0.16.0

bash scripts/setup-dev.sh "$venv"

"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/python" -m pytest "$@"

# lmdeploy's older release: the same lmdeploy tests, in a virtualenv that shares everything else with $venv
older_venv="${venv}-lmdeploy-${older_lmdeploy}"
bash scripts/setup-dev.sh --lmdeploy "$older_lmdeploy" "$older_venv" "$venv"
"$older_venv/bin/python" -m pytest -q tests/llms/test_lmdeploy_pipeline.py tests/llms/test_lmdeploy_client.py \
    tests/llms/test_lmdeploy_server.py tests/llms/test_lmdeploy_lagent_docs.py -k 'not triton'  # Triton: $venv's job
