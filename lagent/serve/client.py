"""``AgentClient`` / ``AsyncAgentClient``: talk to an agent served by ``lagent serve``.

A client holds one conversation (a ``session_id``) with one served agent,
and offers the agent's own methods: ``chat`` returns an
:class:`~lagent.agents.AgentResult`, ``stream_chat`` yields the agent's
events (text deltas, tool calls, tool results, the final answer) as they
happen on the server. Requests go through lagent's HTTP transport, so
retries, timeouts and errors are those of every HTTP engine
(:mod:`lagent.errors`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from lagent.agents import AgentEvent, AgentMemory, AgentResult
from lagent.errors import EngineUnavailableError, RequestError, StreamError
from lagent.llms.http import HTTPTransport
from lagent.llms.openai_compatible import api_base
from lagent.llms.protocols import SSEStream
from lagent.llms.streaming import AsyncStream, Stream
from lagent.schema import Message

__all__ = ['AgentClient', 'AsyncAgentClient']

_EVENT = TypeAdapter(AgentEvent)


class _ClientBase:
    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        session_id: str | None = None,
        max_retries: int = 2,
        connect_timeout: float = 10.0,
        idle_timeout: float = 300.0,
        timeout: float | None = 600.0,
    ):
        self.url = url
        self.session_id = session_id or uuid.uuid4().hex
        """The conversation's id on the server."""
        self._model = model
        self.transport = HTTPTransport(
            api_base(url),
            api_key=api_key,
            max_retries=max_retries,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout,
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f'{type(self).__name__}(url={self.url!r}, model={self._model!r}, session_id={self.session_id!r})'

    def _body(self, model: str, message: str | Message | Mapping[str, Any], *, stream: bool) -> dict[str, Any]:
        return {'model': model, 'messages': [_message(message)], 'stream': stream, 'session_id': self.session_id}


class AgentClient(_ClientBase):
    """A conversation with an agent served by ``lagent serve``.

    Args:
        url: The server's address, with or without ``/v1``.
        model: The served agent's name; ``None``: the first agent the server lists.
        api_key: One of the server's API keys.
        session_id: The conversation to continue; ``None`` starts a new one.
        max_retries: Retries on connection errors, 429 and 5xx.
        connect_timeout: Seconds to establish a connection.
        idle_timeout: Seconds to wait for the next event (a tool may run that long).
        timeout: Seconds a whole run may take.

    Example:
        >>> agent = AgentClient('http://127.0.0.1:8000', 'calculator-agent')  # doctest: +SKIP
        >>> agent.chat('What is 37 * 12?').answer  # doctest: +SKIP
    """

    @property
    def model(self) -> str:
        """The served agent this client talks to."""
        if self._model is None:
            self._model = _first_agent(self.transport.get_json('/models'))
        return self._model

    def chat(self, message: str | Message | Mapping[str, Any]) -> AgentResult:
        """Send the user's message; return the answer and the steps that led to it.

        Raises:
            LLMError: The server refused the request or failed (see :mod:`lagent.errors`).
        """
        return _result(self.transport.post_json('/chat/completions', self._body(self.model, message, stream=False)))

    def stream_chat(self, message: str | Message | Mapping[str, Any]) -> Stream[AgentEvent]:
        """Send the user's message; yield the agent's events as they happen.
        Closing the stream early stops the run on the server."""
        body = self._body(self.model, message, stream=True)
        return Stream(self.transport.stream('/chat/completions', body, _events, protocol=SSEStream))

    def memory(self) -> AgentMemory:
        """The conversation as the server keeps it (empty before the first message)."""
        try:
            return _memory(self.transport.get_json(f'/sessions/{self.session_id}'))
        except RequestError as exc:
            if exc.status_code == 404:
                return AgentMemory()
            raise

    def reset(self) -> None:
        """Forget the conversation on the server."""
        try:
            self.transport.delete(f'/sessions/{self.session_id}')
        except RequestError as exc:
            if exc.status_code != 404:
                raise

    def close(self) -> None:
        """Close the connections."""
        self.transport.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncAgentClient(_ClientBase):
    """Async twin of :class:`AgentClient` (same arguments; the methods are coroutines)."""

    async def model(self) -> str:
        """The served agent this client talks to."""
        if self._model is None:
            self._model = _first_agent(await self.transport.aget_json('/models'))
        return self._model

    async def chat(self, message: str | Message | Mapping[str, Any]) -> AgentResult:
        """Async twin of :meth:`AgentClient.chat`."""
        body = self._body(await self.model(), message, stream=False)
        return _result(await self.transport.apost_json('/chat/completions', body))

    def stream_chat(self, message: str | Message | Mapping[str, Any]) -> AsyncStream[AgentEvent]:
        """Async twin of :meth:`AgentClient.stream_chat`."""
        return AsyncStream(self._stream(message))

    async def _stream(self, message: str | Message | Mapping[str, Any]) -> AsyncIterator[AgentEvent]:
        body = self._body(await self.model(), message, stream=True)
        events = self.transport.astream('/chat/completions', body, _events, protocol=SSEStream)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def memory(self) -> AgentMemory:
        """Async twin of :meth:`AgentClient.memory`."""
        try:
            return _memory(await self.transport.aget_json(f'/sessions/{self.session_id}'))
        except RequestError as exc:
            if exc.status_code == 404:
                return AgentMemory()
            raise

    async def reset(self) -> None:
        """Async twin of :meth:`AgentClient.reset`."""
        try:
            await self.transport.adelete(f'/sessions/{self.session_id}')
        except RequestError as exc:
            if exc.status_code != 404:
                raise

    async def aclose(self) -> None:
        """Close the connections."""
        await self.transport.aclose()

    async def __aenter__(self) -> AsyncAgentClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


# ---------------------------------------------------------------------- answers to agent types (shared)


def _message(message: str | Message | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(message, str):
        return {'role': 'user', 'content': message}
    if isinstance(message, Message):
        return message.to_openai()
    if isinstance(message, Mapping):
        return Message.model_validate(dict(message)).to_openai()
    raise TypeError(f'a message is a str or a message dict, got {type(message).__name__}')


def _events(events: list[Any]) -> list[AgentEvent]:
    """The agent events carried by a read's stream chunks (chunks without one are skipped)."""
    found = []
    for event in events:
        extension = event.get('lagent')
        if extension and extension.get('event') is not None:
            try:
                found.append(_EVENT.validate_python(extension['event']))
            except ValidationError as exc:
                raise StreamError(f'the server sent an agent event lagent cannot read: {exc}', body=event) from exc
    return found


def _result(answer: Any) -> AgentResult:
    try:
        extension = answer['lagent']
        return AgentResult.model_validate(
            {'answer': answer['choices'][0]['message']['content'] or '', 'status': extension['status'],
             'steps': extension['steps']}
        )  # fmt: skip
    except (KeyError, IndexError, TypeError, ValidationError) as exc:
        raise StreamError(f'not the answer of a served agent: {str(answer)[:200]!r}', body=answer) from exc


def _memory(session: Any) -> AgentMemory:
    try:
        return AgentMemory(session['messages'])
    except (KeyError, TypeError, ValueError) as exc:
        raise StreamError(f'not a session of a served agent: {str(session)[:200]!r}', body=session) from exc


def _first_agent(listing: Any) -> str:
    try:
        agents = [entry['id'] for entry in listing['data'] if (entry.get('lagent') or {}).get('kind') == 'agent']
    except (KeyError, TypeError) as exc:
        raise EngineUnavailableError(f'the server lists no models at /v1/models (got {str(listing)[:200]!r})') from exc
    if not agents:
        raise EngineUnavailableError('the server serves no agent; give the model name of one')
    return agents[0]
