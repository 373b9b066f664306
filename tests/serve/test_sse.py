"""The reader between an answer's source and the event stream, and response ids."""

from __future__ import annotations

import re

import pytest

from lagent.llms import ScriptedLLM
from lagent.serve.protocol import new_id
from lagent.serve.sse import BatchReader

REPLY = 'x' * 3000


async def test_the_reader_takes_an_engines_chunks_a_list_at_a_time_and_says_when_it_is_exhausted() -> None:
    llm = ScriptedLLM([REPLY], chunk_size=1)
    texts: list[str] = []
    takes = 0
    async with BatchReader(llm.astream('hi')) as reader:
        while batch := await reader.take():
            takes += 1
            texts += [chunk.text for chunk in batch]
        assert reader.exhausted
    assert ''.join(texts) == REPLY
    assert takes < len(REPLY)


async def test_a_failed_source_is_not_exhausted_and_fails_after_its_items() -> None:
    async def failing():
        yield 1
        yield 2
        raise KeyError('source failed')

    async with BatchReader(failing()) as reader:
        items: list[int] = []
        with pytest.raises(KeyError, match='source failed'):
            while True:
                batch = await reader.take()
                assert not reader.exhausted
                items += batch
    assert items == [1, 2]


def test_response_ids_are_unique_and_keep_openais_shape() -> None:
    ids = {new_id('chatcmpl') for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r'chatcmpl-[0-9a-f]{32}', value) for value in ids)
