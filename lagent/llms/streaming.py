"""Streaming text: stop words, UTF-8 decoding, accumulation and stream objects.

Every engine's output passes through these, so stop words, partial UTF-8
sequences and tool-call fragments are handled once for all engines.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Generic, TypeVar

from lagent.schema import Chunk, FunctionCall, Response, ToolCall, ToolCallDelta, Usage

__all__ = [
    'AsyncStream',
    'BatchedIterator',
    'ChunkAccumulator',
    'StopFilter',
    'Stream',
    'Utf8StreamDecoder',
    'aclose_source',
    'batches_of',
    'close_source',
]

T = TypeVar('T')


class StopFilter:
    """Cuts streamed text at the first stop string, without ever retracting output.

    The reply ends where a stop string is first *completed* (when two complete
    at the same character, the one that started earlier wins); the stop string
    itself is never emitted. While text might still turn into a stop string,
    only the longest such suffix is held back, and everything before it is
    released at once. Feeding the text in any chunking gives the same output as
    feeding it whole; the work is linear in the text length.

    Args:
        stop_words: The stop strings (empty ones are not allowed).
    """

    __slots__ = ('_first_chars', '_held', '_longest', '_prefixes', 'stop_words', 'stopped')

    def __init__(self, stop_words: Iterable[str] = ()):
        self.stop_words = tuple(dict.fromkeys(stop_words))
        if any(not word for word in self.stop_words):
            raise ValueError('stop words must not be empty strings')
        self._longest = max((len(word) for word in self.stop_words), default=0)
        # every proper prefix of every stop word: the suffixes worth holding back
        self._prefixes = {word[:i] for word in self.stop_words for i in range(1, len(word))}
        self._first_chars = {word[0] for word in self.stop_words}
        self._held = ''
        self.stopped = False
        """Whether a stop string has been seen; later text is ignored."""

    def feed(self, text: str) -> str:
        """Take the next piece of text; return the part that is now safe to emit."""
        if self.stopped or not text:
            return ''
        if not self.stop_words:
            return text
        window = self._held + text
        cut = self._first_completed_stop(window)
        if cut is not None:
            self.stopped = True
            self._held = ''
            return window[:cut]
        keep = self._longest_partial_suffix(window)
        if keep:
            self._held = window[-keep:]
            return window[:-keep]
        self._held = ''
        return window

    def flush(self) -> str:
        """End of text: release what was held back (it never became a stop string)."""
        held, self._held = self._held, ''
        return '' if self.stopped else held

    def _first_completed_stop(self, window: str) -> int | None:
        best_end = best_start = None
        for word in self.stop_words:
            start = window.find(word)
            if start < 0:
                continue
            end = start + len(word)
            if best_end is None or end < best_end or (end == best_end and start < best_start):
                best_end, best_start = end, start
        return best_start

    def _longest_partial_suffix(self, window: str) -> int:
        first_chars, prefixes = self._first_chars, self._prefixes
        for size in range(min(len(window), self._longest - 1), 0, -1):
            if window[-size] in first_chars and window[-size:] in prefixes:
                return size
        return 0


class Utf8StreamDecoder:
    """Decodes a byte stream split anywhere into text, never splitting a character.

    Invalid bytes become U+FFFD, as in a one-shot ``bytes.decode(errors='replace')``.
    """

    __slots__ = ('_decoder',)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder('utf-8')(errors='replace')

    def feed(self, data: bytes) -> str:
        """Decode the next bytes; an incomplete trailing character waits for the rest."""
        return self._decoder.decode(data)

    def flush(self) -> str:
        """End of stream: decode what is left (an incomplete character becomes U+FFFD)."""
        return self._decoder.decode(b'', final=True)


class ChunkAccumulator:
    """Builds the whole reply from streamed chunks: text, tool calls, usage, finish reason."""

    __slots__ = ('_parts', '_text', '_tool_calls', 'finish_reason', 'usage')

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._text: str | None = ''
        self._tool_calls: dict[int, list[Any]] = {}
        self.finish_reason: str | None = None
        """Why generation ended, once known."""
        self.usage: Usage | None = None
        """Token counts, once reported."""

    def add(self, chunk: Chunk) -> None:
        """Take one chunk into account."""
        if chunk.text:
            self._parts.append(chunk.text)
            self._text = None
        if chunk.tool_calls:
            for delta in chunk.tool_calls:
                self._add_tool_delta(delta)
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.usage = chunk.usage

    def _add_tool_delta(self, delta: ToolCallDelta) -> None:
        entry = self._tool_calls.setdefault(delta.index, [None, None, []])
        if delta.id:
            entry[0] = delta.id
        if delta.name:
            entry[1] = delta.name
        if delta.arguments:
            entry[2].append(delta.arguments)

    @property
    def text(self) -> str:
        """The text so far."""
        if self._text is None:
            self._text = ''.join(self._parts)
            self._parts = [self._text]
        return self._text

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tool calls so far, fragments joined, in index order."""
        calls = []
        for index in sorted(self._tool_calls):
            call_id, name, arguments = self._tool_calls[index]
            calls.append(
                ToolCall(
                    id=call_id or f'call_{index}',
                    function=FunctionCall(name=name or '', arguments=''.join(arguments) or '{}'),
                )
            )
        return calls

    def response(self) -> Response:
        """The whole reply as a :class:`~lagent.schema.Response`."""
        return Response(text=self.text, tool_calls=self.tool_calls, finish_reason=self.finish_reason, usage=self.usage)


class Stream(Generic[T]):
    """An iterator over a reply that is also a context manager.

    Leaving the ``with`` block, calling :meth:`close`, or exhausting the stream
    closes the underlying source (an HTTP connection, an engine request).
    """

    def __init__(self, source: Iterator[T]):
        self._source = source
        self.closed = False

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> T:
        try:
            return next(self._source)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the stream and release its connection; safe to call twice."""
        if not self.closed:
            self.closed = True
            close_source(self._source)

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncStream(Generic[T]):
    """The async twin of :class:`Stream`: an async iterator and async context manager."""

    def __init__(self, source: AsyncIterator[T]):
        self._source = source
        self.closed = False

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._source.__anext__()
        except BaseException:
            await self.aclose()
            raise

    async def batches(self) -> AsyncIterator[list[T]]:
        """The rest of the stream as lists of the items that arrived together (none empty).

        For consumers that pass items on, such as a server writing events: one
        step per list rather than per item. An in-process engine's items come in
        lists of those that were ready at once; other sources give one item per
        list. Leaving it early, or its end, closes the stream.
        """
        try:
            async for batch in batches_of(self._source):
                yield batch
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream and release its connection; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        await aclose_source(self._source)

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class BatchedIterator(Generic[T]):
    """An async iterator over items that arrive in lists; :meth:`batches` reads the lists themselves.

    Args:
        batches: The lists of items (none empty); closed when this iterator is.
    """

    __slots__ = ('_batches', '_current')

    def __init__(self, batches: AsyncIterator[list[T]]):
        self._batches = batches
        self._current: Iterator[T] = iter(())

    def __aiter__(self) -> BatchedIterator[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            for item in self._current:
                return item
            self._current = iter(await self._batches.__anext__())

    def batches(self) -> AsyncIterator[list[T]]:
        """The items not read yet, as lists (none empty); closing it closes the source."""
        rest = list(self._current)
        if not rest:
            return self._batches
        self._current = iter(())
        return _prepend(rest, self._batches)

    async def aclose(self) -> None:
        """Close the source of the lists."""
        await aclose_source(self._batches)


def batches_of(source: AsyncIterator[T]) -> AsyncIterator[list[T]]:
    """``source`` as lists of items: its own :meth:`~BatchedIterator.batches` if it has
    them, else one item per list. Leaving early closes ``source``."""
    if isinstance(source, (AsyncStream, BatchedIterator)):
        return source.batches()
    return _one_per_list(source)


async def _prepend(first: list[T], batches: AsyncIterator[list[T]]) -> AsyncIterator[list[T]]:
    try:
        yield first
        async for batch in batches:
            yield batch
    finally:
        await aclose_source(batches)


async def _one_per_list(source: AsyncIterator[T]) -> AsyncIterator[list[T]]:
    try:
        async for item in source:
            yield [item]
    finally:
        await aclose_source(source)


def close_source(source: object) -> None:
    """Close an iterator that can be closed (``close``, as generators can); others are left as they are."""
    close = getattr(source, 'close', None)
    if close is not None:
        close()


async def aclose_source(source: object) -> None:
    """Close an async iterator that can be closed (``aclose``); others are left as they are."""
    aclose = getattr(source, 'aclose', None)
    if aclose is not None:
        await aclose()
