"""LLM engines behind one contract (see :class:`lagent.llms.BaseLLM`).

Engine classes are exported lazily, from the engine registry
(:mod:`lagent.llms.registry`): ``from lagent.llms import LlamaCpp`` imports
that engine's module then, and importing this package imports no engine
library at all.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from lagent.llms.base import BaseLLM, LLMRequest, StreamChatStep
from lagent.llms.config import build_llm
from lagent.llms.registry import find_engine, register_llm
from lagent.llms.streaming import AsyncStream, ChunkAccumulator, StopFilter, Stream, Utf8StreamDecoder
from lagent.prompts.families import INTERNLM2_META

if TYPE_CHECKING:
    from lagent.llms.hf_transformer import HFTransformer
    from lagent.llms.llama_cpp import LlamaCpp, default_llm
    from lagent.llms.llama_cpp_server import LlamaCppServer
    from lagent.llms.lmdeploy_client import LMDeployClient
    from lagent.llms.lmdeploy_pipeline import LMDeployPipeline
    from lagent.llms.lmdeploy_server import LMDeployServer
    from lagent.llms.openai_compatible import GPTAPI, OpenAICompatible
    from lagent.llms.router import Router
    from lagent.llms.scripted import ScriptedLLM
    from lagent.llms.triton import TritonClient

_FUNCTIONS = {
    'default_llm': 'lagent.llms.llama_cpp',
    # lagent 0.2 names
    'BaseAPIModel': 'lagent.llms.base_api',
    'BaseModel': 'lagent.llms.base_llm',
    'HFTransformerCasualLM': 'lagent.llms.hf_transformer',
    'HFTransformerChat': 'lagent.llms.hf_transformer',
}

__all__ = [  # the engine classes are those of the registry (a test keeps the two in step)
    'GPTAPI',
    'INTERNLM2_META',
    'AsyncStream',
    'BaseLLM',
    'ChunkAccumulator',
    'HFTransformer',
    'LLMRequest',
    'LMDeployClient',
    'LMDeployPipeline',
    'LMDeployServer',
    'LlamaCpp',
    'LlamaCppServer',
    'OpenAICompatible',
    'Router',
    'ScriptedLLM',
    'StopFilter',
    'Stream',
    'StreamChatStep',
    'TritonClient',
    'Utf8StreamDecoder',
    'build_llm',
    'default_llm',
    'register_llm',
]


def __getattr__(name: str) -> Any:
    spec = find_engine(name)
    if spec is not None and spec.class_name == name:
        return spec.load()
    if name in _FUNCTIONS:
        return getattr(import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
