"""lagent: one LLM contract over many engines, prompt templates, tools and agents.

``import lagent`` needs only the core dependencies; engine libraries are
imported when an engine is constructed.
"""

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
from lagent.llms import BaseLLM, ScriptedLLM, build_llm, default_llm, register_llm
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

__version__ = '0.3.0'

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
]
