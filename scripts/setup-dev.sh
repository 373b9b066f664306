#!/usr/bin/env bash
# Create or update a development virtualenv: every engine that runs on a CPU (llama.cpp, transformers, Triton's
# client and a CPU tritonserver), lmdeploy (its command line, pipeline and api_server: the tests run them with a CPU
# engine in place of its CUDA one), the benchmark and test tools.
#
#   bash scripts/setup-dev.sh [VENV]                           # default: $LAGENT_VENV or .venv
#   bash scripts/setup-dev.sh --lmdeploy VERSION VENV BASE    # VENV: BASE's packages, with another lmdeploy
#
# The second form makes a small virtualenv that sees every package of the dev virtualenv BASE but has its own
# lmdeploy, for testing another lmdeploy release without a second copy of torch and llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/.."

LMDEPLOY_VERSION=0.18.0
# lmdeploy's declared dependencies pull CUDA builds of torch and GPU kernels, so it is installed without them, and
# with the pure-Python packages its command line, pipeline and api_server import (fastapi and uvicorn come with
# llama-cpp-python[server]; torch, transformers and openai with the extras).
LMDEPLOY_DEPS=(mmengine-lite==0.10.7 yapf==0.43.0 addict==2.4.0 termcolor==3.3.0 pybase64==1.5.1 platformdirs==4.14.7
    shortuuid==1.0.13 prometheus_client==0.26.0 partial_json_parser==0.2.1.1.post7)

purelib() { "$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

if [[ "${1:-}" == --lmdeploy ]]; then
    version=$2 venv=$3 base=$4
    [[ -x "$venv/bin/python" ]] || "$base/bin/python" -m venv "$venv"
    # a .pth line starting with "import" runs at start-up: BASE's packages come after this virtualenv's own
    echo "import site; site.addsitedir('$(purelib "$base")')" > "$(purelib "$venv")/lagent-dev-base.pth"
    "$venv/bin/python" -m pip install --quiet --no-deps "lmdeploy==$version" "${LMDEPLOY_DEPS[@]}"
    exit 0
fi

venv=${1:-${LAGENT_VENV:-.venv}}
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
# The CPU build of torch must come first, or a dependency pulls a multi-GB CUDA build.
"$py" -m pip install --quiet torch==2.13.0
"$py" -m pip install --quiet -e ".[all,test]"
"$py" -m pip install --quiet --no-deps "lmdeploy==$LMDEPLOY_VERSION" "${LMDEPLOY_DEPS[@]}"
# The chat page of `lagent serve` is tested in a real headless Chromium: Debian's, driven by Playwright
# (which must never download a browser of its own).
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    chromium fonts-dejavu-core >/dev/null; } || echo "warning: chromium could not be installed; the chat page tests fail"
