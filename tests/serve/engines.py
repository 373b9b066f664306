"""Engines for server tests. ``TickingLLM``: an in-process engine whose generation can be watched:
it yields ``'tick '`` at a fixed pace and records how many ticks it produced
and when its stream was closed. It runs through the real engine machinery
(parameters, stop words, the worker thread of ``astream``); only the model is
replaced by a clock.

Importable by ``lagent serve --config`` as ``tests.serve.engines:TickingLLM``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from lagent.llms.base import BaseLLM
from lagent.schema import Chunk, FunctionCall, GenerationParams, ToolCall, Usage

TICK = 'tick '


def calculator_script(messages: Any) -> Any:
    """A ``ScriptedLLM`` reply: a model that calls the calculator, then answers with its result."""
    results = [message for message in messages[-2:] if message['role'] == 'tool']
    if results:  # the result, perhaps followed by the agent's request for the answer
        return f'37 * 12 is {results[-1]["content"]}.'
    return ToolCall(id='call_1', function=FunctionCall(name='Calculator', arguments='{"expression": "37 * 12"}'))


class TickingLLM(BaseLLM):
    """Streams ``ticks`` pieces ``'tick '``, one every ``interval`` seconds.

    Args:
        ticks: Pieces per reply (``max_new_tokens`` also bounds them).
        interval: Seconds before each piece.

    Attributes:
        produced: Pieces generated so far, over all requests.
        closed: Set when a stream was closed (finished, or stopped early).
        started: Set when a stream produced its first piece.
    """

    accepts_messages = True

    def __init__(self, ticks: int = 1000, interval: float = 0.01, **kwargs: Any):
        super().__init__(path='ticking', **kwargs)
        self.ticks = ticks
        self.interval = interval
        self.produced = 0
        self.started = threading.Event()
        self.closed = threading.Event()

    def _ticks(self, params: GenerationParams) -> Iterator[Chunk]:
        count = min(self.ticks, params.max_new_tokens)
        try:
            for _ in range(count):
                time.sleep(self.interval)
                self.produced += 1
                self.started.set()
                yield Chunk(TICK)
            yield Chunk(finish_reason='length' if count < self.ticks else 'stop', usage=Usage(completion_tokens=count))
        finally:
            self.closed.set()

    def _stream(self, request: Any, params: GenerationParams) -> Iterator[Chunk]:
        return self._ticks(params)

    def reset(self) -> None:
        """Forget what was recorded."""
        self.produced = 0
        self.started.clear()
        self.closed.clear()
