"""What an agent reports while it works: typed events, and the result of a whole run.

``stream_chat`` yields these events as they happen; ``chat`` returns an
:class:`AgentResult` holding the same events except the text deltas.

* :class:`TextDelta` — the model wrote more text: ``STREAM_ING``;
* :class:`ModelReply` — the model finished a reply: ``PLUGIN_END`` if it calls
  a tool, ``CODE_END`` if it sends code to the interpreter, else ``STREAM_ING``;
* :class:`ToolCallStep` — a tool is about to run: ``PLUGIN_START`` (``CODING``
  for code);
* :class:`ToolResultStep` — a tool returned or failed, or a call could not be
  parsed: ``PLUGIN_RETURN`` (``CODE_RETURN`` for code);
* :class:`FinalAnswer` — the run is over, always the last event: ``END`` with
  an answer, or ``SESSION_OUT_OF_LIMIT`` with the reason there is none (see
  the finishing policy in :mod:`lagent.agents.base`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from lagent.schema import ActionReturn, AgentStatusCode, Message, Response, ToolCall

__all__ = [
    'AgentEvent',
    'AgentResult',
    'AgentStep',
    'FinalAnswer',
    'ModelReply',
    'TextDelta',
    'ToolCallStep',
    'ToolResultStep',
    'thoughtful_results',
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    turn: int
    """Which model reply of the run this belongs to (1 for the first)."""


class TextDelta(_Event):
    """New text from the model, as it streams in."""

    kind: Literal['text_delta'] = 'text_delta'
    """Tells the event types apart."""
    status: AgentStatusCode = AgentStatusCode.STREAM_ING
    """Always ``STREAM_ING``."""
    text: str
    """The new text only."""


class ModelReply(_Event):
    """A whole reply of the model, before the agent acts on it."""

    kind: Literal['model_reply'] = 'model_reply'
    """Tells the event types apart."""
    status: AgentStatusCode
    """``PLUGIN_END`` (it calls tools), ``CODE_END`` (it sends code) or ``STREAM_ING`` (plain text)."""
    text: str
    """The reply text as the model wrote it (stop words removed)."""
    thought: str = ''
    """The prose of the reply: the reasoning before a tool call, or the answer."""
    response: Response
    """The whole reply: text, native tool calls, finish reason, usage."""


class ToolCallStep(_Event):
    """A tool call the agent is about to run."""

    kind: Literal['tool_call'] = 'tool_call'
    """Tells the event types apart."""
    status: AgentStatusCode = AgentStatusCode.PLUGIN_START
    """``PLUGIN_START``, or ``CODING`` for code sent to the interpreter."""
    call: ToolCall
    """The call: its id, the tool's name and the arguments as JSON text."""


class ToolResultStep(_Event):
    """What a tool call gave; also reports a call the agent could not parse."""

    kind: Literal['tool_result'] = 'tool_result'
    """Tells the event types apart."""
    status: AgentStatusCode = AgentStatusCode.PLUGIN_RETURN
    """``PLUGIN_RETURN``, or ``CODE_RETURN`` for code run by the interpreter."""
    call_id: str | None
    """Id of the call this answers (``None`` when the call could not be parsed)."""
    result: ActionReturn
    """The tool's result or the reason it failed (``state`` tells which)."""
    observation: str
    """The text the model is shown for this result."""


class FinalAnswer(_Event):
    """The end of a run."""

    kind: Literal['final_answer'] = 'final_answer'
    """Tells the event types apart."""
    status: AgentStatusCode
    """``END`` with an answer, or ``SESSION_OUT_OF_LIMIT`` when the run used ``max_turn`` replies."""
    text: str
    """The answer; without one, the prose of the last reply."""
    errmsg: str | None = None
    """Why the run ended without an answer (``None`` with one)."""


AgentStep = Annotated[Union[ModelReply, ToolCallStep, ToolResultStep, FinalAnswer], Field(discriminator='kind')]
"""An inner step of a run, as kept in :attr:`AgentResult.steps`."""

AgentEvent = Annotated[
    Union[TextDelta, ModelReply, ToolCallStep, ToolResultStep, FinalAnswer], Field(discriminator='kind')
]
"""Anything ``stream_chat`` yields."""


class AgentResult(BaseModel):
    """The outcome of :meth:`~lagent.agents.BaseAgent.chat`: the answer and how it was reached.

    It also reads like lagent 0.2's ``AgentReturn``: :attr:`response`,
    :attr:`actions`, :attr:`inner_steps`, :attr:`state`.
    """

    answer: str
    """The final answer (without one, the prose of the last reply)."""
    status: AgentStatusCode
    """``END``, or ``SESSION_OUT_OF_LIMIT`` when ``max_turn`` replies did not reach an answer."""
    steps: list[AgentStep] = Field(default_factory=list)
    """Every model reply, tool call, tool result and the final answer, in order."""
    messages: list[Message] = Field(default_factory=list)
    """The messages the run added to the conversation after the user's (replies, tool results)."""
    errmsg: str | None = None
    """Why the run ended without an answer (``None`` with one)."""

    @property
    def response(self) -> str:
        """The answer (lagent 0.2's name)."""
        return self.answer

    @property
    def state(self) -> AgentStatusCode:
        """The status (lagent 0.2's name)."""
        return self.status

    @property
    def actions(self) -> list[ActionReturn]:
        """The tool results, each with the model's thought before the call (lagent 0.2's name)."""
        return thoughtful_results(self.steps)

    @property
    def inner_steps(self) -> list[dict[str, Any]]:
        """:attr:`messages` as dicts, to extend a lagent 0.2 history with."""
        return [message.to_openai() for message in self.messages]

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls that ran, in order."""
        return [step.call for step in self.steps if isinstance(step, ToolCallStep)]

    @property
    def tool_results(self) -> list[ActionReturn]:
        """The results of the tool calls (and of calls that could not be parsed), in order."""
        return [step.result for step in self.steps if isinstance(step, ToolResultStep)]

    @property
    def turns(self) -> int:
        """How many replies the model gave."""
        return sum(isinstance(step, ModelReply) for step in self.steps)

    @classmethod
    def from_events(cls, events: list[AgentEvent], messages: Sequence[Message] = ()) -> AgentResult:
        """Build the result of a finished run from its events.

        Args:
            events: The events of the run.
            messages: The messages the run added after the user's.

        Raises:
            ValueError: The events do not end with a :class:`FinalAnswer`.
        """
        if not events or not isinstance(events[-1], FinalAnswer):
            raise ValueError('a finished run ends with a FinalAnswer event')
        final = events[-1]
        steps = [event for event in events if not isinstance(event, TextDelta)]
        return cls(answer=final.text, status=final.status, steps=steps, messages=list(messages), errmsg=final.errmsg)


def thoughtful_results(steps: Sequence[AgentEvent]) -> list[ActionReturn]:
    """The tool results among ``steps``, each a copy carrying the prose of the
    reply that made the call as its ``thought``."""
    thoughts: dict[int, str] = {}
    results = []
    for step in steps:
        if isinstance(step, ModelReply):
            thoughts[step.turn] = step.thought
        elif isinstance(step, ToolResultStep):
            results.append(dataclasses.replace(step.result, thought=thoughts.get(step.turn) or step.result.thought))
    return results
