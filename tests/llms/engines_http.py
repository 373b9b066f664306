"""Contract-suite fixtures of the OpenAI-compatible engine, run against the real
llama.cpp OpenAI-compatible server of the session (``llamacpp_url``); the lmdeploy
engines are in ``engines_lmdeploy.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lagent.llms.openai_compatible import OpenAICompatible


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
