"""Server-Sent Event streams that keep up with their source and stop it when the client goes.

An answer is read from its source (an engine's chunks, an agent's events) by
:class:`BatchReader`, in a task of its own, while the handler writes to the
client. Whatever arrived while the previous write was under way is sent as
one event: a client that reads slower than the engine writes gets fewer,
larger deltas instead of an ever longer queue, and a fast engine is not held
to one network write per token. Nothing is dropped or reordered.

Closing the reader (the client disconnected, or the server is shutting down)
cancels its task, which closes the source: an in-process engine stops after
its current token, an HTTP engine closes its connection to the upstream server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from aiohttp import web

from lagent.llms.streaming import aclose_source, batches_of

__all__ = ['BatchReader', 'open_event_stream']

T = TypeVar('T')

_HEADERS = {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache',
    'X-Accel-Buffering': 'no',  # proxies must not hold events back
}


class BatchReader(Generic[T]):
    """Reads an async iterator in a task of its own; :meth:`take` returns every
    item that arrived since the last call.

    Use as an async context manager (or call :meth:`aclose`): leaving it cancels
    the reading task and closes the source.

    Args:
        source: The items to read; closed when reading ends.
    """

    __slots__ = ('_done', '_error', '_items', '_ready', '_source', '_task')

    def __init__(self, source: AsyncIterator[T]):
        self._source = source
        self._items: list[T] = []
        self._ready = asyncio.Event()
        self._done = False
        self._error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        source, ready = self._source, self._ready
        batches = batches_of(source)  # an in-process engine's chunks come a list at a time
        try:
            async for batch in batches:
                self._items += batch
                ready.set()
        except Exception as exc:  # handed to take(), after the items that came before it
            self._error = exc
        finally:
            self._done = True
            self._ready.set()
            await aclose_source(batches)
            await aclose_source(source)  # closing lists never started does not reach their source

    async def take(self) -> list[T]:
        """Wait until something arrived and return it all; ``[]`` once the source is exhausted.

        Raises:
            Exception: What the source raised, once the items before it were taken.
        """
        while not self._items and not self._done:
            self._ready.clear()
            await self._ready.wait()
        items = self._items
        if items:
            self._items = []
            return items
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return items

    @property
    def exhausted(self) -> bool:
        """Whether the source ended without an error and every item was taken."""
        return self._done and not self._items and self._error is None

    async def aclose(self) -> None:
        """Stop reading and close the source (waits until it is closed)."""
        task = self._task
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> BatchReader[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _EventStream(web.StreamResponse):
    # aiohttp's own switch (its whole-body Response sets it too): the headers leave with the
    # first event, in one packet, rather than alone a moment before it
    _send_headers_immediately = False


async def open_event_stream(request: web.Request) -> web.StreamResponse:
    """Start an event-stream response (status 200, chunked); its headers go with the first write."""
    response = _EventStream(status=200, headers=_HEADERS)
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response
