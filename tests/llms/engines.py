"""Engine fixtures for the shared contract suite (``tests/llms/test_contract.py``).

Each ``engine_<name>`` fixture returns ``make(**kwargs) -> BaseLLM``. Engines are
listed in ``ENGINES``; those that report real token counts (so ``max_new_tokens``
can be checked) are also in ``TOKEN_COUNTING_ENGINES``, those with a messages path
in ``MESSAGES_ENGINES`` and those with native tool calls in ``NATIVE_TOOL_ENGINES``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from lagent.llms.scripted import ScriptedLLM

ENGINES = [
    'scripted', 'llamacpp', 'hf', 'openai', 'lmdeploy_client', 'lmdeploy_server', 'lmdeploy_pipeline',
    'llamacpp_server', 'triton', 'triton_vllm', 'router', 'served',
]  # fmt: skip
TOKEN_COUNTING_ENGINES: list[str] = [
    'llamacpp', 'hf', 'openai', 'lmdeploy_client', 'lmdeploy_server', 'lmdeploy_pipeline', 'llamacpp_server',
    'router', 'served',
]  # fmt: skip
MESSAGES_ENGINES: list[str] = [
    'scripted', 'llamacpp', 'hf', 'openai', 'lmdeploy_client', 'lmdeploy_server', 'lmdeploy_pipeline',
    'llamacpp_server', 'router', 'served',
]  # fmt: skip
"""Engines that take conversations as messages (the model's own chat template applies)."""
NATIVE_TOOL_ENGINES: list[str] = [
    'llamacpp', 'openai', 'lmdeploy_client', 'lmdeploy_server', 'llamacpp_server', 'router', 'served'
]  # fmt: skip
"""Engines whose model returns structured tool calls (the scripted engine's replies are text)."""
AGENT_ENGINES = [name for name in ENGINES if name != 'served']
"""Engines the agents are run on: 'served' is llamacpp behind ``lagent serve`` (its agents: tests/serve)."""

Engine = TypeVar('Engine')


def fresh_engines(build: Callable[..., Engine]) -> Iterator[Callable[..., Engine]]:
    """Yield ``make(**kwargs)``, a new ``build(**kwargs)`` at every call; every engine made is closed after.

    A fixture yields from it: ``yield from fresh_engines(...)``.
    """
    made: list[Any] = []

    def make(**kwargs: Any) -> Engine:
        made.append(build(**kwargs))
        return made[-1]

    yield make
    for engine in made:
        engine.close()


def engines_by_keywords(build: Callable[..., Engine]) -> Iterator[Callable[..., Engine]]:
    """Yield ``make(**kwargs)``, one ``build(**kwargs)`` per distinct set of keywords, made at its first call
    and given again at the next ones (a loaded model or a started server); every engine made is closed after.

    A fixture yields from it: ``yield from engines_by_keywords(...)``.
    """
    made: dict[str, Any] = {}

    def make(**kwargs: Any) -> Engine:
        key = repr(sorted(kwargs.items()))
        if key not in made:
            made[key] = build(**kwargs)
        return made[key]

    yield make
    for engine in made.values():
        engine.close()


def _deterministic_reply(request: object) -> str:
    """A reply that depends only on the request, like greedy decoding does."""
    digest = hashlib.sha256(repr(request).encode()).hexdigest()
    words = [digest[i : i + 4] for i in range(0, 40, 4)]
    return 'The answer is ' + ' '.join(words) + '.'


@pytest.fixture
def engine_scripted():
    def make(**kwargs):
        return ScriptedLLM([_deterministic_reply] * 200, chunk_size=3, **kwargs)

    return make
