"""Agents: tool-calling loops that take any LLM engine interchangeably.

* :class:`FunctionCallAgent` — native function calling (OpenAI protocol) where
  the engine has it, ``<tool_call>`` JSON in the text elsewhere;
* :class:`ReAct` — Thought / Action / Observation / Final Answer in plain text;
* :class:`Internlm2Agent` — InternLM2's plugin and code-interpreter protocol;
* :class:`ReWOO` — plans every tool call first, runs them, then answers;
* :class:`AutoGPT` — one JSON command per step until ``finish``.

Every agent offers ``chat`` (an :class:`AgentResult`), ``stream_chat`` (typed
events, see :mod:`lagent.agents.events`) and their async twins, keeps its
conversation in an :class:`AgentMemory` that can be saved as JSON, and ends a
run with an answer or a stated reason (the finishing policy of
:mod:`lagent.agents.base`). lagent 0.2's agent code runs unchanged (see
:class:`BaseAgent`).
"""

from lagent.agents.autogpt import AutoGPT, AutoGPTProtocol
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
from lagent.agents.internlm2 import Internlm2Agent, Internlm2Protocol
from lagent.agents.memory import AgentMemory
from lagent.agents.react import ReAct, ReActProtocol
from lagent.agents.rewoo import ReWOO, ReWOOProtocol

__all__ = [
    'AgentEvent',
    'AgentMemory',
    'AgentResult',
    'AgentStep',
    'AutoGPT',
    'AutoGPTProtocol',
    'BaseAgent',
    'FinalAnswer',
    'FunctionCallAgent',
    'Internlm2Agent',
    'Internlm2Protocol',
    'ModelReply',
    'ReAct',
    'ReActProtocol',
    'ReWOO',
    'ReWOOProtocol',
    'TextDelta',
    'ToolCallStep',
    'ToolResultStep',
]
