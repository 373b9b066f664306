"""Streams read a list at a time (``AsyncStream.batches``): what a server uses to pass
an in-process engine's chunks on without a step per chunk."""

from __future__ import annotations

import pytest

from lagent.llms import ScriptedLLM
from lagent.llms.base import iterate_in_thread
from lagent.llms.streaming import AsyncStream, BatchedIterator, batches_of

REPLY = ''.join(chr(ord('a') + i % 26) for i in range(5000))


async def _read_batches(stream: AsyncStream) -> list[list]:
    async with stream:
        return [batch async for batch in stream.batches()]


async def test_an_in_process_engine_streams_lists_of_the_chunks_ready_together() -> None:
    llm = ScriptedLLM([REPLY], chunk_size=1)
    batches = await _read_batches(llm.astream('hi'))
    chunks = [chunk for batch in batches for chunk in batch]
    assert ''.join(chunk.text for chunk in chunks) == REPLY  # every chunk, in order
    assert chunks[-1].finish_reason == 'stop' and chunks[-1].usage is not None
    assert all(batch for batch in batches)
    assert len(batches) < len(chunks)  # the worker runs ahead of the reader: lists of many


async def test_stop_words_apply_across_lists_and_close_the_engine() -> None:
    # the stop word's characters are separate chunks that may fall in different lists
    llm = ScriptedLLM([REPLY[:3000] + '<STOP>' + REPLY], chunk_size=1)
    async with llm.astream('hi', stop_words=['<STOP>']) as stream:
        batches = [batch async for batch in stream.batches()]
    chunks = [chunk for batch in batches for chunk in batch]
    assert ''.join(chunk.text for chunk in chunks) == REPLY[:3000]
    assert chunks[-1].finish_reason == 'stop'
    assert stream.closed


async def test_items_read_one_by_one_then_the_rest_as_lists_lose_nothing() -> None:
    llm = ScriptedLLM([REPLY], chunk_size=1)
    async with llm.astream('hi') as stream:
        first = [(await stream.__anext__()).text for _ in range(3)]
        rest = [chunk.text for batch in await _read_batches(stream) for chunk in batch]
    assert ''.join(first + rest) == REPLY


async def test_a_plain_async_source_gives_one_item_per_list_and_is_closed_early() -> None:
    closed = []

    async def source():
        try:
            for item in range(10):
                yield item
        finally:
            closed.append(True)

    batches = batches_of(source())
    assert [await batches.__anext__() for _ in range(2)] == [[0], [1]]
    await batches.aclose()
    assert closed == [True]


async def test_an_error_comes_after_every_list_before_it() -> None:
    def failing():
        yield from range(3000)
        raise KeyError('source failed')

    seen: list[int] = []
    with pytest.raises(KeyError, match='source failed'):
        async for batch in iterate_in_thread(failing).batches():
            seen += batch
    assert seen == list(range(3000))


async def test_a_batched_iterator_skips_empty_lists_when_read_item_by_item() -> None:
    async def lists():
        for batch in ([], [1, 2], [], [3]):
            yield batch

    assert [item async for item in BatchedIterator(lists())] == [1, 2, 3]
