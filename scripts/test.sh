#!/usr/bin/env bash
# Set up a virtualenv with every engine that runs on a CPU, then lint and run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/llms -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LAGENT_VENV:-.venv}

python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# The CPU build of torch must come first, or a dependency pulls a multi-GB CUDA build.
"$venv/bin/python" -m pip install --quiet torch==2.13.0
"$venv/bin/python" -m pip install --quiet -e ".[all,test]"

"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/python" -m pytest "$@"
