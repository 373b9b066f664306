"""The async runner: timing, concurrency, arrivals, token counting and errors.

The engines here are tiny ``BaseLLM`` subclasses whose timing the test
controls; the runner against real engines is covered by ``tests/test_cli.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator

import pytest

from lagent.bench.runner import run_benchmark
from lagent.bench.workload import BenchRequest, synthetic_requests
from lagent.errors import LLMConnectionError
from lagent.llms.base import BaseLLM, LLMRequest
from lagent.llms.openai_compatible import OpenAICompatible
from lagent.llms.scripted import ScriptedLLM
from lagent.schema import Chunk, GenerationParams, Usage
from tests.faults.campaign import chaos_server


class PacedLLM(BaseLLM):
    """Waits ``first_delay`` before the first token and ``gap`` between tokens;
    reports usage only if asked; fails every request whose prompt contains 'FAIL'."""

    def __init__(self, *, first_delay: float, gap: float, report_usage: bool, **kwargs):
        super().__init__(**kwargs)
        self.first_delay, self.gap, self.report_usage = first_delay, gap, report_usage
        self.in_flight = self.most_in_flight = 0
        self.max_new_tokens_seen: list[int] = []

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        raise AssertionError('the runner must use the async path')

    async def _astream(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        prompt = request.prompt
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.max_new_tokens_seen.append(params.max_new_tokens)
        try:
            await asyncio.sleep(self.first_delay)
            if 'FAIL' in prompt:
                raise LLMConnectionError('connection reset\nby peer')
            for index in range(params.max_new_tokens):
                if index:
                    await asyncio.sleep(self.gap)
                yield Chunk(text=f' t{index}')
            usage = Usage(completion_tokens=params.max_new_tokens * 2) if self.report_usage else None
            yield Chunk(finish_reason='length', usage=usage)
        finally:
            self.in_flight -= 1


def _requests(count: int, tokens: int) -> list[BenchRequest]:
    return synthetic_requests(count, input_len=4, output_len=tokens, seed=0)


async def test_records_time_every_token() -> None:
    llm = PacedLLM(first_delay=0.05, gap=0.01, report_usage=False)
    run = await run_benchmark(llm, _requests(3, 5))
    assert [record.index for record in run.records] == [0, 1, 2]
    for record in run.records:
        assert record.error is None
        assert record.ttft_s >= 0.05
        assert len(record.itl_s) == 4 and all(gap >= 0.009 for gap in record.itl_s)
        assert record.latency_s >= record.ttft_s + sum(record.itl_s) - 1e-6
        assert (record.output_tokens, record.output_tokens_source) == (None, 'unknown')  # chunks are not tokens
        assert record.output_chars == len(' t0 t1 t2 t3 t4')
        assert record.finish_reason == 'length'
        assert record.tpot_s is None  # no token count, no time per token
    assert run.duration_s >= sum(record.latency_s for record in run.records) - 1e-6  # concurrency 1: one by one


async def test_token_count_comes_from_usage_when_reported() -> None:
    llm = PacedLLM(first_delay=0, gap=0, report_usage=True)
    run = await run_benchmark(llm, _requests(2, 3), count_tokens=lambda text: 1000)
    assert [(r.output_tokens, r.output_tokens_source) for r in run.records] == [(6, 'usage')] * 2


async def test_token_count_comes_from_the_tokenizer_without_usage() -> None:
    seen: list[str] = []

    def count(text: str) -> int:
        seen.append(text)
        return len(text.split()) * 3

    run = await run_benchmark(
        PacedLLM(first_delay=0, gap=0.01, report_usage=False), _requests(2, 4), count_tokens=count
    )
    assert seen == [' t0 t1 t2 t3'] * 2  # the whole reply, once, after it ended
    assert [(r.output_tokens, r.output_tokens_source) for r in run.records] == [(12, 'tokenizer')] * 2
    assert run.records[0].tpot_s == pytest.approx((run.records[0].latency_s - run.records[0].ttft_s) / 11)


async def test_concurrency_is_the_most_in_flight() -> None:
    llm = PacedLLM(first_delay=0.02, gap=0.005, report_usage=False)
    run = await run_benchmark(llm, _requests(8, 3), concurrency=3)
    assert llm.most_in_flight == 3
    assert len(run.records) == 8
    assert run.duration_s < sum(record.latency_s for record in run.records)  # they overlapped


async def test_requests_wait_for_their_arrival_time() -> None:
    llm = PacedLLM(first_delay=0, gap=0, report_usage=False)
    run = await run_benchmark(llm, _requests(6, 1), concurrency=6, request_rate=20.0, seed=4)
    scheduled = [record.scheduled_s for record in run.records]
    assert scheduled == sorted(scheduled) and scheduled[0] > 0
    for record in run.records:
        assert record.start_s >= record.scheduled_s
        assert record.start_s - record.scheduled_s < 0.25  # nothing else held it back
    assert run.duration_s >= scheduled[-1]


async def test_failures_are_recorded_and_the_run_goes_on() -> None:
    llm = PacedLLM(first_delay=0, gap=0, report_usage=False)
    requests = [*_requests(2, 2), BenchRequest([{'role': 'user', 'content': 'FAIL please'}], 2)]
    run = await run_benchmark(llm, requests, concurrency=2)
    failed = run.records[2]
    assert failed.error == 'LLMConnectionError: connection reset by peer'  # one line
    assert failed.ttft_s is None and failed.output_tokens is None
    assert [r.error for r in run.records[:2]] == [None, None]


async def test_per_request_max_new_tokens_and_shared_settings() -> None:
    llm = PacedLLM(first_delay=0, gap=0, report_usage=False, max_new_tokens=7)
    requests = [BenchRequest([{'role': 'user', 'content': 'a'}], 2), BenchRequest([{'role': 'user', 'content': 'b'}])]
    await run_benchmark(llm, requests)
    assert llm.max_new_tokens_seen == [2, 7]


async def test_bad_settings_fail_before_any_request() -> None:
    llm = ScriptedLLM([])
    with pytest.raises(ValueError, match='temperature'):
        await run_benchmark(llm, _requests(1, 1), temperature=-1)
    with pytest.raises(ValueError, match='concurrency'):
        await run_benchmark(llm, _requests(1, 1), concurrency=0)
    with pytest.raises(ValueError, match='rate'):
        await run_benchmark(llm, _requests(1, 1), request_rate=0)
    assert llm.requests == []


async def test_progress_callback_sees_each_record_once() -> None:
    seen = []
    llm = ScriptedLLM(['one two three'] * 4, chunk_size=4)
    run = await run_benchmark(llm, _requests(4, 3), concurrency=2, request_rate=math.inf, on_record=seen.append)
    assert sorted(record.index for record in seen) == [0, 1, 2, 3]
    assert seen[0] in run.records


class InterruptedLLM(BaseLLM):
    """Ends every stream at once with no text and no finish reason, as llama.cpp's
    server does (a bare ``[DONE]``) to a request a newer one interrupted."""

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        return iter(())


async def test_a_reply_with_no_text_and_no_finish_reason_is_an_error() -> None:
    run = await run_benchmark(InterruptedLLM(), _requests(2, 3))
    assert all(record.error.startswith('EmptyReply: ') for record in run.records)


async def test_an_empty_reply_that_finished_is_not_an_error() -> None:
    run = await run_benchmark(ScriptedLLM(['']), _requests(1, 3))
    assert run.records[0].error is None and run.records[0].output_tokens == 1  # ScriptedLLM reports one piece


async def test_every_event_a_server_sends_is_timed_even_when_read_together() -> None:
    with chaos_server() as server:
        tokens = [f' w{i}' for i in range(12)]
        server.plan(tokens=tokens, writes='all')  # the whole stream in one write: one network read
        async with OpenAICompatible(server.url, 'chaos', max_new_tokens=12) as llm:
            run = await run_benchmark(llm, _requests(1, 12))
            streamed = [chunk async for chunk in llm.astream('Count.')]
    (record,) = run.records
    assert len(streamed) < len(tokens)  # outside the benchmark the read is one merged chunk
    assert len(record.event_s) == len(tokens)  # the benchmark sees every event
    assert record.itl_s == pytest.approx([0.0] * 11, abs=0.05)  # they arrived together
    assert record.output_chars == len(''.join(tokens)) and record.output_tokens == 12  # from usage
