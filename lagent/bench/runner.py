"""Send a workload to an engine over ``astream`` and time every streamed event.

Requests are sent at their arrival times (see
:func:`lagent.bench.workload.poisson_arrivals`), at most ``concurrency`` at
once; a request that arrives while all slots are busy waits for one and its
latencies count from when it is actually sent.

Timing is per event, as vLLM's serving benchmark measures it: served engines
are read with :func:`lagent.llms.http.per_event_items`, so every event the
server sent is its own chunk, timed when it arrives (events that arrived in one
network read get the same time, and an inter-token gap of about zero). Token
counts come from the engine's ``usage``, or from a tokenizer, never from
counting chunks.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lagent.bench.workload import BenchRequest, poisson_arrivals
from lagent.llms.base import BaseLLM
from lagent.llms.protocols import per_event_items

__all__ = ['BenchRun', 'RequestRecord', 'run_benchmark']


@dataclass
class RequestRecord:
    """What happened to one request. Times are in seconds."""

    index: int
    """Position of the request in the workload."""
    scheduled_s: float
    """When it arrived, from the start of the run."""
    start_s: float = 0.0
    """When it was sent, from the start of the run (later than ``scheduled_s`` when it waited for a slot)."""
    event_s: list[float] = field(default_factory=list)
    """When each streamed event with text arrived, from sending."""
    latency_s: float = 0.0
    """From sending to the end of the reply (or to the error)."""
    output_tokens: int | None = None
    """Tokens generated (``None``: the engine reported no usage and no tokenizer was given)."""
    output_tokens_source: str = 'unknown'
    """``'usage'`` (the engine reported it), ``'tokenizer'`` (the reply's text was tokenized) or ``'unknown'``."""
    prompt_tokens: int | None = None
    """Prompt tokens, when the engine reports them."""
    output_chars: int = 0
    """Characters of text generated."""
    finish_reason: str | None = None
    """Why generation ended."""
    error: str | None = None
    """``'ErrorType: message'`` when the request failed, else ``None``. A reply that ends
    with no text and no finish reason counts as failed (``'EmptyReply: ...'``)."""

    @property
    def ttft_s(self) -> float | None:
        """Time to first token: from sending to the first event with text (``None``: no text came)."""
        return self.event_s[0] if self.event_s else None

    @property
    def itl_s(self) -> list[float]:
        """Inter-token latencies: the gap before each event with text, after the first."""
        times = self.event_s
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first; ``None`` with fewer than two tokens or no count."""
        ttft, tokens = self.ttft_s, self.output_tokens
        if self.error is not None or ttft is None or tokens is None or tokens < 2:
            return None
        return (self.latency_s - ttft) / (tokens - 1)


@dataclass
class BenchRun:
    """The records of a run and how long it took."""

    records: list[RequestRecord]
    """One record per request, in workload order."""
    duration_s: float
    """Wall time from the start of the run to the last reply."""


async def run_benchmark(
    llm: BaseLLM,
    requests: Sequence[BenchRequest],
    *,
    concurrency: int = 1,
    request_rate: float = math.inf,
    seed: int | None = None,
    on_record: Callable[[RequestRecord], None] | None = None,
    count_tokens: Callable[[str], int] | None = None,
    **gen_params: Any,
) -> BenchRun:
    """Send ``requests`` to ``llm`` and time them.

    Args:
        llm: Any engine.
        requests: The workload.
        concurrency: Most requests in flight at once.
        request_rate: Mean arrivals per second of a Poisson process; ``math.inf``
            makes every request arrive at the start.
        seed: Seed of the arrival times.
        on_record: Called with each record as its request finishes (e.g. a progress bar).
        count_tokens: Counts the tokens of a reply's text, for engines that
            report no usage (see :func:`lagent.bench.tokens.token_counter`).
        **gen_params: Generation settings for every request (``temperature``, ``ignore_eos``...).

    Returns:
        The records, in workload order, and the duration of the run. A failed
        request is recorded with its error; it does not stop the run.

    Raises:
        ValueError: An invalid ``concurrency``, ``request_rate`` or generation parameter.
    """
    if concurrency < 1:
        raise ValueError(f'concurrency must be at least 1, got {concurrency}')
    llm.params(**gen_params)  # fail once, here, rather than in every request
    arrivals = poisson_arrivals(len(requests), request_rate, seed=seed)
    slots = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def one(index: int, request: BenchRequest, arrival: float) -> RequestRecord:
        await asyncio.sleep(max(0.0, started + arrival - time.perf_counter()))
        async with slots:
            record = RequestRecord(index=index, scheduled_s=arrival)
            await _measure(llm, request, record, started, gen_params, count_tokens)
        if on_record is not None:
            on_record(record)
        return record

    records = await asyncio.gather(*(one(i, r, t) for i, (r, t) in enumerate(zip(requests, arrivals, strict=True))))
    return BenchRun(records=list(records), duration_s=time.perf_counter() - started)


async def _measure(
    llm: BaseLLM,
    request: BenchRequest,
    record: RequestRecord,
    started: float,
    gen_params: dict[str, Any],
    count_tokens: Callable[[str], int] | None,
) -> None:
    params = dict(gen_params)
    if request.max_new_tokens is not None:
        params['max_new_tokens'] = request.max_new_tokens
    texts: list[str] = []
    arrivals = record.event_s
    usage = None
    clock = time.perf_counter
    sent = clock()
    record.start_s = sent - started
    try:
        with per_event_items():
            async with llm.astream(request.messages, **params) as stream:
                async for chunk in stream:
                    if chunk.text:
                        arrivals.append(clock() - sent)
                        texts.append(chunk.text)
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if chunk.finish_reason is not None:
                        record.finish_reason = chunk.finish_reason
    except Exception as exc:  # a failed request is a result of the benchmark, not a crash
        record.error = f'{type(exc).__name__}: {" ".join(str(exc).split())}'
    record.latency_s = clock() - sent
    if record.error is None and not texts and record.finish_reason is None:
        # e.g. llama.cpp's server ends a request with a bare [DONE] when a newer one interrupts it
        record.error = 'EmptyReply: the stream ended with no text and no finish reason (interrupted by the server?)'
    text = ''.join(texts)
    record.output_chars = len(text)
    if usage is not None and usage.completion_tokens:
        record.output_tokens, record.output_tokens_source = usage.completion_tokens, 'usage'
    elif count_tokens is not None and record.error is None:
        record.output_tokens, record.output_tokens_source = count_tokens(text), 'tokenizer'
    if usage is not None and usage.prompt_tokens:
        record.prompt_tokens = usage.prompt_tokens
