"""In-process engine fixtures for the contract suite: ``LlamaCpp`` and ``HFTransformer``
on the real SmolLM2-135M-Instruct.

Models are loaded once per test session: ``engine_llamacpp`` keeps one engine per
set of constructor keywords (each ``LlamaCpp`` owns its llama.cpp context), and
``engine_hf`` loads the transformers model once and wraps it for every
``make(**kwargs)`` with :meth:`HFTransformer.from_loaded`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lagent.llms.base import BaseLLM
from tests.llms.engines import engines_by_keywords

MakeEngine = Callable[..., BaseLLM]


@pytest.fixture(scope='session')
def llamacpp_engines(smollm2_path: Path) -> Iterator[MakeEngine]:
    """``make(**kwargs) -> LlamaCpp``, one engine per distinct kwargs, closed after the session."""
    from lagent.llms.llama_cpp import LlamaCpp

    yield from engines_by_keywords(lambda **kwargs: LlamaCpp(smollm2_path, **kwargs))


@pytest.fixture(scope='session')
def hf_smollm2(smollm2_path: Path) -> tuple[Any, Any]:
    """SmolLM2 loaded once by transformers from the GGUF: ``(model, tokenizer)``."""
    import torch

    from lagent.llms.hf_transformer import HFTransformer

    torch.set_num_threads(1)  # several threads on a busy 2-core machine decode ten times slower
    loaded = HFTransformer(smollm2_path, device='cpu', torch_dtype='float32')
    return loaded.model, loaded.tokenizer


@pytest.fixture(scope='session')
def hf_engines(hf_smollm2: tuple[Any, Any]) -> MakeEngine:
    """``make(**kwargs) -> HFTransformer`` sharing the one loaded model."""
    from lagent.llms.hf_transformer import HFTransformer

    model, tokenizer = hf_smollm2

    def make(**kwargs: Any) -> HFTransformer:
        return HFTransformer.from_loaded(model, tokenizer, device='cpu', **kwargs)

    return make


@pytest.fixture
def engine_llamacpp(llamacpp_engines: MakeEngine) -> MakeEngine:
    return llamacpp_engines


@pytest.fixture
def engine_hf(hf_engines: MakeEngine) -> MakeEngine:
    return hf_engines
