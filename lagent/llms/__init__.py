"""LLM engines behind one contract (see :class:`lagent.llms.BaseLLM`).

Importing this package imports no engine library: each engine loads its
library (llama_cpp, transformers, lmdeploy, tritonclient) when constructed.
"""

from lagent.llms.base import BaseLLM, LLMRequest, StreamChatStep
from lagent.llms.scripted import ScriptedLLM
from lagent.llms.streaming import AsyncStream, ChunkAccumulator, StopFilter, Stream, Utf8StreamDecoder

__all__ = [
    'AsyncStream',
    'BaseLLM',
    'ChunkAccumulator',
    'LLMRequest',
    'ScriptedLLM',
    'StopFilter',
    'Stream',
    'StreamChatStep',
    'Utf8StreamDecoder',
]
