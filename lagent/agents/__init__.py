"""Agents: tool-calling loops that take any LLM engine interchangeably.

* :class:`FunctionCallAgent` — native function calling (OpenAI protocol) where
  the engine has it, ``<tool_call>`` JSON in the text elsewhere;
* :class:`ReAct` — Thought / Action / Observation / Final Answer in plain text;
* :class:`Internlm2Agent` — InternLM2's plugin and code-interpreter protocol.

Every agent offers ``chat`` (an :class:`AgentResult`), ``stream_chat`` (typed
events, see :mod:`lagent.agents.events`) and their async twins, and keeps its
conversation in an :class:`AgentMemory` that can be saved as JSON.
"""

from lagent.agents.base import BaseAgent
from lagent.agents.events import (
    AgentEvent,
    AgentResult,
    AgentStep,
    FinalAnswer,
    ModelReply,
    TextDelta,
    ToolCallStep,
    ToolResultStep,
)
from lagent.agents.function_call import FunctionCallAgent
from lagent.agents.internlm2 import Internlm2Agent
from lagent.agents.memory import AgentMemory
from lagent.agents.react import ReAct

__all__ = [
    'AgentEvent',
    'AgentMemory',
    'AgentResult',
    'AgentStep',
    'BaseAgent',
    'FinalAnswer',
    'FunctionCallAgent',
    'Internlm2Agent',
    'ModelReply',
    'ReAct',
    'TextDelta',
    'ToolCallStep',
    'ToolResultStep',
]
