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
# lmdeploy runs only on CUDA, but it imports on a CPU: its configuration classes and CLI parser are
# tested here. Its declared dependencies would pull CUDA builds, so install it with the few it imports.
"$venv/bin/python" -m pip install --quiet --no-deps lmdeploy==0.18.0 mmengine-lite==0.10.7 yapf==0.43.0 \
    addict==2.4.0 termcolor==3.3.0 pybase64==1.5.1 platformdirs==4.14.7 shortuuid==1.0.13
# The chat page of `lagent serve` is tested in a real headless Chromium: Debian's, driven by Playwright
# (which must never download a browser of its own).
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    chromium fonts-dejavu-core >/dev/null; } || echo "warning: chromium could not be installed; the chat page tests fail"

"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
"$venv/bin/python" -m pytest "$@"
