"""The daemon thread pool behind the async methods of in-process engines."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from lagent.llms._threads import DaemonThreadPool
from lagent.llms.base import iterate_in_thread
from lagent.llms.streaming import AsyncStream


def _run(pool: DaemonThreadPool, job) -> None:
    done = threading.Event()
    pool.submit(lambda: (job(), done.set()))
    assert done.wait(10)


def test_an_idle_thread_is_reused() -> None:
    pool = DaemonThreadPool('test-pool')
    names: list[str] = []
    for _ in range(5):
        _run(pool, lambda: names.append(threading.current_thread().name))
    assert len(set(names)) == 1 and names[0].startswith('test-pool-')
    assert threading.current_thread().name not in names


def test_concurrent_jobs_get_threads_of_their_own_and_threads_are_daemons() -> None:
    pool = DaemonThreadPool('test-pool')
    release, started = threading.Event(), threading.Barrier(4)
    seen: list[tuple[str, bool]] = []

    def job() -> None:
        seen.append((threading.current_thread().name, threading.current_thread().daemon))
        started.wait(10)  # all four run at once, or this times out
        release.wait(10)

    for _ in range(3):
        pool.submit(job)
    started.wait(10)
    release.set()
    assert len({name for name, _ in seen}) == 3 and all(daemon for _, daemon in seen)


# ---------------------------------------------------------------------- iterate_in_thread


def test_items_arrive_in_order_and_an_error_after_the_items_before_it() -> None:
    def items():
        yield from range(5000)
        raise KeyError('source failed')

    async def read() -> list[int]:
        seen = []
        with pytest.raises(KeyError, match='source failed'):
            async for item in iterate_in_thread(items):
                seen.append(item)
        return seen

    assert asyncio.run(read()) == list(range(5000))


def test_a_fast_source_does_not_keep_the_loops_other_tasks_waiting() -> None:
    # a source that is always ahead of its reader must not hold the event loop for the whole stream
    async def read() -> tuple[int, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        started, during = ticks, 0
        count = 0
        async for _ in iterate_in_thread(lambda: iter(range(50_000))):
            count += 1
            sum(range(100))  # the reader is the slower side: the source stays ahead
            if count == 40_000:
                during = ticks - started
        ticker.cancel()
        return count, during

    count, ticks_while_reading = asyncio.run(read())
    assert count == 50_000
    assert ticks_while_reading >= 40_000 // 256 // 2


@pytest.mark.parametrize('read', ['items', 'lists'])
def test_closing_the_reader_stops_the_source_in_its_thread(read: str) -> None:
    closed = threading.Event()
    produced = 0

    def endless():
        nonlocal produced
        try:
            while True:
                produced += 1
                yield produced
        finally:
            closed.set()

    async def read_some() -> None:
        if read == 'items':
            stream = iterate_in_thread(endless)
            async for item in stream:
                if item == 10:
                    break
            await stream.aclose()
            return
        stream = AsyncStream(iterate_in_thread(endless))  # leaving the lists early
        async for batch in stream.batches():
            assert batch[0] == 1
            break
        await stream.aclose()
        assert stream.closed

    asyncio.run(read_some())
    assert closed.wait(10)
    stopped_at = produced
    time.sleep(0.05)
    assert produced == stopped_at
