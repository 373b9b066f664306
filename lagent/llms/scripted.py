"""A deterministic LLM that replays scripted replies, for testing agents."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Union

from lagent.errors import LLMError
from lagent.llms.base import BaseLLM, LLMRequest
from lagent.schema import Chunk, GenerationParams, Response, ToolCall, ToolCallDelta, Usage

__all__ = ['ScriptedLLM', 'ScriptedReply']

ScriptedReply = Union[str, Response, ToolCall, Callable[[Any], Any]]
"""A scripted reply: text, a whole :class:`~lagent.schema.Response`, a tool call,
or a function of the request (the prompt string or the message list) returning one of those."""


class ScriptedLLM(BaseLLM):
    """Replays the given replies in order, one per request, through the full
    LLM contract (stop words, streaming, batching, status codes all apply).

    Args:
        replies: The replies, in the order they are asked for.
        chunk_size: Stream text in pieces of this many characters (``None``: one piece).
        **kwargs: Any :class:`~lagent.llms.BaseLLM` keyword (``meta_template``, ``stop_words``...).

    Attributes:
        requests: Every request received, in order: the prompt string, or the
            list of message dicts on the messages path.
        tools_seen: The tool schemas of each request (``None`` without).
        tool_choices_seen: The tool choice of each request (``None`` without).

    Example:
        >>> llm = ScriptedLLM(['Hello!', 'Bye.'])
        >>> llm.chat([{'role': 'user', 'content': 'hi'}])
        'Hello!'
        >>> llm.generate('anything')
        'Bye.'
    """

    accepts_messages = True
    native_tools = True
    accepts_images = frozenset({'messages'})

    def __init__(self, replies: Iterable[ScriptedReply], *, chunk_size: int | None = None, **kwargs: Any):
        super().__init__(path='scripted', **kwargs)
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f'chunk_size must be at least 1, got {chunk_size}')
        self.replies: list[ScriptedReply] = list(replies)
        self.chunk_size = chunk_size
        self.requests: list[Any] = []
        self.tools_seen: list[list[dict[str, Any]] | None] = []
        self.tool_choices_seen: list[str | dict[str, Any] | None] = []
        self._lock = threading.Lock()

    def _next_reply(
        self, request: Any, tools: list[dict[str, Any]] | None, tool_choice: str | dict[str, Any] | None = None
    ) -> Response:
        with self._lock:
            index = len(self.requests)
            if index >= len(self.replies):
                raise LLMError(
                    f'ScriptedLLM ran out of replies: request {index + 1} but only {len(self.replies)} scripted'
                )
            self.requests.append(request)
            self.tools_seen.append(tools)
            self.tool_choices_seen.append(tool_choice)
            reply = self.replies[index]
        if callable(reply) and not isinstance(reply, (Response, ToolCall)):
            reply = reply(request)
        if isinstance(reply, str):
            return Response(text=reply, finish_reason='stop')
        if isinstance(reply, ToolCall):
            return Response(tool_calls=[reply], finish_reason='tool_calls')
        if isinstance(reply, Response):
            return reply
        raise TypeError(f'scripted reply {index} must be a str, Response or ToolCall, got {type(reply).__name__}')

    def _chunks(self, reply: Response) -> Iterator[Chunk]:
        text, size = reply.text, self.chunk_size or max(1, len(reply.text))
        pieces = [text[i : i + size] for i in range(0, len(text), size)] or ['']
        deltas = [
            ToolCallDelta(index=i, id=call.id, name=call.function.name, arguments=call.function.arguments)
            for i, call in enumerate(reply.tool_calls)
        ]
        for piece in pieces[:-1]:
            yield Chunk(text=piece)
        usage = reply.usage or Usage(completion_tokens=len(pieces), total_tokens=len(pieces))
        yield Chunk(
            text=pieces[-1], finish_reason=reply.finish_reason or 'stop', usage=usage, tool_calls=deltas or None
        )

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        if request.prompt is not None:
            return self._chunks(self._next_reply(request.prompt, None))
        return self._chunks(self._next_reply(request.messages, request.tools, request.tool_choice))

    @property
    def remaining(self) -> Sequence[ScriptedReply]:
        """Replies not yet used."""
        return self.replies[len(self.requests) :]
