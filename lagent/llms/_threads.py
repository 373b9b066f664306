"""Reusable daemon threads for the blocking side of async streams, and the hand-off
of their items to the event loop that reads them.

An async call on an in-process engine runs the engine's blocking iterator in
a worker thread. Starting a thread makes the caller wait until the new thread
is scheduled, which on a busy machine costs the event loop milliseconds per
request; an idle thread of this pool takes the job at once. The threads are
daemons, so a worker stuck in a long read never holds up interpreter exit, and
one that waits idle for a minute ends.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

__all__ = ['DaemonThreadPool', 'LoopHandoff', 'stream_threads']

T = TypeVar('T')

_IDLE_S = 60.0
_END: Any = object()
_BATCH = 256  # items the reader takes before it lets the loop's other tasks run


class DaemonThreadPool:
    """Runs jobs on daemon threads, reusing idle ones and starting more when none is free.

    Args:
        name: Prefix of the threads' names.
    """

    def __init__(self, name: str):
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job, less the jobs already queued for them
        self._started = 0

    def submit(self, job: Callable[[], object]) -> None:
        """Run ``job`` on an idle thread, or on a new one if none is idle."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put(job)
                return
            self._started += 1
            number = self._started
        threading.Thread(target=self._work, args=(job,), name=f'{self.name}-{number}', daemon=True).start()

    def _work(self, job: Callable[[], object]) -> None:
        while True:
            job()
            del job  # drop the finished job's references while idle
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=_IDLE_S)
            except queue.Empty:
                with self._lock:
                    try:
                        job = self._jobs.get_nowait()  # queued for this thread just as it timed out
                    except queue.Empty:
                        self._idle -= 1
                        return


stream_threads = DaemonThreadPool('lagent-stream')
"""The pool that runs the blocking iterators of :func:`lagent.llms.base.iterate_in_thread`."""


class LoopHandoff(Generic[T]):
    """Hands items from other threads (or another event loop) to one reader on ``loop``.

    The sender wakes the loop only when the reader is waiting: items that
    arrive while the reader is busy are picked up in batches (at most
    ``_BATCH``), without a wake-up each, and the loop runs its other tasks
    between batches. Nothing is dropped or reordered.

    Args:
        loop: The event loop the reader runs on.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._items: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        """What the sender ended with (see :meth:`end`), once the items are exhausted."""
        self.stopped = False
        """True once the reader is gone (it stopped reading, or its loop closed): senders should stop."""

    def send(self, item: T) -> None:
        """Hand over one item (from any thread)."""
        with self._lock:
            self._items.append(item)
            wake = self._waiter
            self._waiter = None
        if wake is not None:
            self._wake(wake)

    def end(self, error: BaseException | None = None) -> None:
        """Say that no more items come; ``error``, if given, is what the source failed with."""
        self.error = error  # set before the end marker is visible: the reader reads it after the marker
        self.send(_END)

    def _wake(self, waiter: asyncio.Future[None]) -> None:
        try:
            self._loop.call_soon_threadsafe(_wake, waiter)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.stopped = True

    async def batches(self) -> AsyncIterator[list[T]]:
        """The items, in order, as lists of those that arrived together (never empty), until
        :meth:`end`; then :attr:`error` holds what it was given."""
        items, lock = self._items, self._lock
        try:
            while True:
                with lock:
                    count = min(len(items), _BATCH)
                    if not count:
                        self._waiter = wait = self._loop.create_future()
                    batch = [items.popleft() for _ in range(count)]
                if not count:
                    await wait
                    continue
                if batch[-1] is _END:
                    batch.pop()
                    if batch:
                        yield batch
                    return
                yield batch
                await asyncio.sleep(0)  # let the loop's other tasks run between batches
        finally:
            self.stopped = True


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
