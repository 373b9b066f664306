"""A run's events as lagent 0.2's ``stream_chat`` showed them: ``AgentReturn``
snapshots, each holding the state of the run so far.

* While the model writes prose: ``STREAM_ING``, ``response`` = the prose so far.
* While it writes a tool call (agents that can tell, e.g. InternLM2's
  ``<|plugin|>``): ``PLUGIN_START`` with the call's text so far, or
  ``CODING`` with ``{'name': <interpreter>, 'parameters': {'command': <code so far>}}``.
* When the call is complete: ``PLUGIN_END`` / ``CODE_END``, ``response`` =
  ``{'name': ..., 'parameters': {...}}``.
* When the tool returned: ``PLUGIN_RETURN`` / ``CODE_RETURN``, the result
  appended to ``actions`` and the run's messages in ``inner_steps``.
* Last: ``END`` with the answer (or the failure status and ``errmsg``), and
  ``inner_steps`` holding every message the run added, to extend a history with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from lagent.agents.events import AgentEvent, thoughtful_results
from lagent.llms.streaming import aclose_source, close_source
from lagent.schema import AgentReturn, AgentStatusCode

if TYPE_CHECKING:
    from lagent.agents.base import BaseAgent, _Run

__all__ = ['asnapshots', 'snapshots']


def snapshots(agent: BaseAgent, events: Iterator[AgentEvent], run: _Run) -> Iterator[AgentReturn]:
    """The ``AgentReturn`` snapshots of a run's events (closing this closes the run)."""
    builder = _Snapshots(agent, run)
    try:
        for event in events:
            snapshot = builder.feed(event)
            if snapshot is not None:
                yield snapshot
    finally:
        close_source(events)


async def asnapshots(agent: BaseAgent, events: AsyncIterator[AgentEvent], run: _Run) -> AsyncIterator[AgentReturn]:
    """Async twin of :func:`snapshots`."""
    builder = _Snapshots(agent, run)
    try:
        async for event in events:
            snapshot = builder.feed(event)
            if snapshot is not None:
                yield snapshot
    finally:
        await aclose_source(events)


class _Snapshots:
    """Turns events into snapshots, one event at a time."""

    def __init__(self, agent: BaseAgent, run: _Run):
        self.agent = agent
        self.run = run
        self.text = ''
        self.steps: list[AgentEvent] = []
        self.inner_steps: list[dict[str, Any]] = []

    def feed(self, event: AgentEvent) -> AgentReturn | None:
        if event.kind == 'text_delta':
            self.text += event.text
            _, status, response = self.agent._stream_view(self.text)
            return self._snapshot(status, response)
        self.steps.append(event)
        if event.kind == 'model_reply':
            self.text = ''
            return None
        if event.kind == 'tool_call':
            status = AgentStatusCode.CODE_END if event.status == AgentStatusCode.CODING else AgentStatusCode.PLUGIN_END
            return self._snapshot(status, _call_view(event.call, code=status == AgentStatusCode.CODE_END))
        self.inner_steps = [message.to_openai() for message in self.agent.memory.messages[self.run.start :]]
        if event.kind == 'tool_result':
            return self._snapshot(event.status, event.observation)
        status = event.status
        return self._snapshot(status, event.text, errmsg=event.errmsg)

    def _snapshot(self, status: AgentStatusCode, response: Any, errmsg: str | None = None) -> AgentReturn:
        return AgentReturn(
            state=status,
            actions=thoughtful_results(self.steps),
            response=response,
            inner_steps=list(self.inner_steps),
            errmsg=errmsg,
        )


def _call_view(call: Any, *, code: bool) -> dict[str, Any]:
    """A tool call as lagent 0.2 showed it; code is the interpreter's ``command``."""
    try:
        arguments: Any = call.function.parsed_arguments()
    except ValueError:
        arguments = call.function.arguments
    if code and isinstance(arguments, dict):
        arguments = {'command': next(iter(arguments.values()), '')}
    return {'name': call.function.name, 'parameters': arguments}
