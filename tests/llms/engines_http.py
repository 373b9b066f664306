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


def _maker(cls: type[OpenAICompatible], url: str) -> Iterator[Callable[..., OpenAICompatible]]:
    made: list[OpenAICompatible] = []

    def make(**kwargs: Any) -> OpenAICompatible:
        llm = cls(url, **kwargs)
        made.append(llm)
        return llm

    yield make
    for llm in made:
        llm.close()


@pytest.fixture
def engine_openai(llamacpp_url: str) -> Iterator[Callable[..., OpenAICompatible]]:
    yield from _maker(OpenAICompatible, llamacpp_url)


@pytest.fixture
def engine_router(llamacpp_url: str) -> Iterator[Callable[..., Router]]:
    """A Router over two clients of the llama.cpp server: templates go to the clients
    (the router renders nothing), generation settings to the router."""
    made: list[Router] = []

    def make(**kwargs: Any) -> Router:
        templates = {name: kwargs.pop(name) for name in ('meta_template', 'chat_template') if name in kwargs}
        engines = [OpenAICompatible(llamacpp_url, **templates), LMDeployClient(llamacpp_url, **templates)]
        router = Router(engines, **kwargs)
        made.append(router)
        return router

    yield make
    for router in made:
        router.close()


@pytest.fixture(scope='session')
def llamacpp_server_engines(smollm2_path: Path) -> Iterator[Callable[..., OpenAICompatible]]:
    """``make(**kwargs) -> LlamaCppServer``, one child server per distinct kwargs, stopped after the session."""
    from lagent.llms.llama_cpp_server import LlamaCppServer

    engines: dict[str, LlamaCppServer] = {}

    def make(**kwargs: Any) -> LlamaCppServer:
        key = repr(sorted(kwargs.items()))
        if key not in engines:
            engines[key] = LlamaCppServer(
                smollm2_path, n_threads=2, chat_format='chatml-function-calling', ready_timeout=120, **kwargs
            )
        return engines[key]

    yield make
    for engine in engines.values():
        engine.close()


@pytest.fixture
def engine_llamacpp_server(llamacpp_server_engines: Callable[..., OpenAICompatible]) -> Callable[..., OpenAICompatible]:
    return llamacpp_server_engines
