"""Contract-suite fixtures of the served engines that speak to the real llama.cpp
OpenAI-compatible server of the session (``llamacpp_url``); the lmdeploy engines,
on lmdeploy's own server, are in ``engines_lmdeploy.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lagent.llms.lmdeploy_client import LMDeployClient
from lagent.llms.openai_compatible import OpenAICompatible
from lagent.llms.router import Router
from tests.llms.engines import engines_by_keywords, fresh_engines


@pytest.fixture
def engine_openai(llamacpp_url: str) -> Iterator[Callable[..., OpenAICompatible]]:
    yield from fresh_engines(lambda **kwargs: OpenAICompatible(llamacpp_url, **kwargs))


@pytest.fixture
def engine_router(llamacpp_url: str) -> Iterator[Callable[..., Router]]:
    """A Router over two clients of the llama.cpp server: templates go to the clients
    (the router renders nothing), generation settings to the router."""

    def build(**kwargs: Any) -> Router:
        templates = {name: kwargs.pop(name) for name in ('meta_template', 'chat_template') if name in kwargs}
        engines = [OpenAICompatible(llamacpp_url, **templates), LMDeployClient(llamacpp_url, **templates)]
        return Router(engines, **kwargs)

    yield from fresh_engines(build)


@pytest.fixture(scope='session')
def llamacpp_server_engines(smollm2_path: Path) -> Iterator[Callable[..., OpenAICompatible]]:
    """``make(**kwargs) -> LlamaCppServer``, one child server per distinct kwargs, stopped after the session."""
    from lagent.llms.llama_cpp_server import LlamaCppServer

    def build(**kwargs: Any) -> LlamaCppServer:
        return LlamaCppServer(
            smollm2_path, n_threads=2, chat_format='chatml-function-calling', ready_timeout=120, **kwargs
        )

    yield from engines_by_keywords(build)


@pytest.fixture
def engine_llamacpp_server(llamacpp_server_engines: Callable[..., OpenAICompatible]) -> Callable[..., OpenAICompatible]:
    return llamacpp_server_engines
