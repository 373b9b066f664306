"""lagent: one LLM contract over many engines, prompt templates, tools and agents.

``import lagent`` needs only the core dependencies; engine libraries are
imported when an engine is constructed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lagent.errors import (
    APIStatusError,
    EngineStartError,
    EngineUnavailableError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    MissingExtraError,
    RateLimitError,
    RequestError,
    ServerError,
    StreamError,
)
from lagent.llms import BaseLLM, build_llm, register_llm
from lagent.schema import (
    ActionReturn,
    ActionStatusCode,
    AgentMessage,
    AgentStatusCode,
    Chunk,
    GenerationParams,
    Message,
    ModelStatusCode,
    Response,
    ToolCall,
    Usage,
)
from lagent.version import __version__, version_info

if TYPE_CHECKING:
    from lagent.llms import ScriptedLLM, default_llm

__all__ = [
    'APIStatusError',
    'ActionReturn',
    'ActionStatusCode',
    'AgentMessage',
    'AgentStatusCode',
    'BaseLLM',
    'Chunk',
    'EngineStartError',
    'EngineUnavailableError',
    'GenerationParams',
    'LLMConnectionError',
    'LLMError',
    'LLMTimeoutError',
    'Message',
    'MissingExtraError',
    'ModelStatusCode',
    'RateLimitError',
    'RequestError',
    'Response',
    'ScriptedLLM',
    'ServerError',
    'StreamError',
    'ToolCall',
    'Usage',
    '__version__',
    'build_llm',
    'default_llm',
    'register_llm',
    'version_info',
]


def __getattr__(name: str) -> Any:
    if name in ('ScriptedLLM', 'default_llm'):  # engines load lazily
        import lagent.llms

        return getattr(lagent.llms, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
