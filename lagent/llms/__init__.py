"""LLM engines behind one contract (see :class:`lagent.llms.BaseLLM`).

Importing this package imports no engine library: each engine loads its
library (llama_cpp, transformers, lmdeploy, tritonclient) when constructed.
"""

from lagent.llms.base import BaseLLM, LLMRequest, StreamChatStep
from lagent.llms.config import build_llm, register_llm
from lagent.llms.hf_transformer import HFTransformer
from lagent.llms.llama_cpp import LlamaCpp, default_llm
from lagent.llms.llama_cpp_server import LlamaCppServer
from lagent.llms.lmdeploy_client import LMDeployClient
from lagent.llms.lmdeploy_pipeline import LMDeployPipeline
from lagent.llms.lmdeploy_server import LMDeployServer
from lagent.llms.openai_compatible import GPTAPI, OpenAICompatible
from lagent.llms.scripted import ScriptedLLM
from lagent.llms.streaming import AsyncStream, ChunkAccumulator, StopFilter, Stream, Utf8StreamDecoder
from lagent.llms.triton import TritonClient

__all__ = [
    'GPTAPI',
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
