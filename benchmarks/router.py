"""Throughput of a Router over three servers, against one server alone.

Each synthetic server (a separate process: a bare asyncio HTTP/1.1 server)
speaks the OpenAI completions API with real SSE (``data: {json}\\n\\n`` events,
a usage event, ``data: [DONE]``, chunked transfer encoding). Like a GPU server
with a batch limit, it streams at most ``--capacity`` replies at once (more
requests wait their turn) and sends one token every ``--token-ms``, so one
server's throughput is bounded and three can do three times as much.

Measured, with the same async client load (``--concurrency`` streams in
flight, ``--requests`` requests; every reply's text checked):

* ``one server``: ``OpenAICompatible`` against one server — the peer;
* ``router, 1 server``: a ``Router`` over that one server (what routing costs);
* ``router, 3 servers``: a ``Router`` (least-in-flight) over three servers.

Target (printed as a ratio): ``router, 3 servers`` >= 2.5x ``one server``.
Each number is the median of ``--repeats`` runs, the setups interleaved.

Run: ``python benchmarks/router.py [--requests 240] [--concurrency 24] [--capacity 4] [--tokens 32] [--token-ms 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

from _bare_server import STREAM_HEAD, forked_servers, http_chunk, models_answer, take_requests
from _timing import interleaved_medians

from lagent.llms.base import BaseLLM
from lagent.llms.openai_compatible import OpenAICompatible
from lagent.llms.router import Router

MODEL = 'synthetic'
TARGET = 2.5


def token(index: int) -> str:
    return f' t{index}'


def expected_text(tokens: int) -> str:
    return ''.join(token(index) for index in range(tokens))


class _Server(asyncio.Protocol):
    """HTTP/1.1 keep-alive; each completion request waits for a free slot, then streams."""

    slots: asyncio.Semaphore
    token_s: float

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b''
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self.answer_in_order())

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        requests, self.buffer = take_requests(self.buffer + data)
        for path, body in requests:
            self.queue.put_nowait({'path': path, **body})

    async def answer_in_order(self) -> None:
        while (request := await self.queue.get()) is not None:
            if request['path'].endswith('/models'):
                self.transport.write(models_answer(MODEL))
                continue
            async with self.slots:
                await self.stream(int(request['max_tokens']))

    async def stream(self, tokens: int) -> None:
        write = self.transport.write
        write(STREAM_HEAD)
        head = {'id': 'cmpl-1', 'object': 'text_completion', 'created': 1700000000, 'model': MODEL}
        for index in range(tokens):
            await asyncio.sleep(self.token_s)
            finish = 'length' if index == tokens - 1 else None
            choice = {'index': 0, 'text': token(index), 'logprobs': None, 'finish_reason': finish}
            write(http_chunk(f'data: {json.dumps({**head, "choices": [choice]})}\n\n'.encode()))
        usage = {'prompt_tokens': 4, 'completion_tokens': tokens, 'total_tokens': tokens + 4}
        write(http_chunk(f'data: {json.dumps({**head, "choices": [], "usage": usage})}\n\n'.encode()))
        write(http_chunk(b'data: [DONE]\n\n') + b'0\r\n\r\n')


def serve(sock: socket.socket, capacity: int, token_s: float) -> None:
    async def main() -> None:
        _Server.slots = asyncio.Semaphore(capacity)
        _Server.token_s = token_s
        server = await asyncio.get_running_loop().create_server(_Server, sock=sock, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


async def measure(llm: BaseLLM, requests: int, concurrency: int, tokens: int) -> float:
    """Requests per second of ``requests`` streams, ``concurrency`` at a time."""
    limit = asyncio.Semaphore(concurrency)
    expected = expected_text(tokens)

    async def one() -> None:
        async with limit:
            text = ''.join([chunk.text async for chunk in llm.astream('Count.', max_new_tokens=tokens)])
            if text != expected:
                raise SystemExit(f'{llm!r} streamed the wrong text: {text[:60]!r}...')

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    return requests / (time.perf_counter() - started)


def client(url: str) -> OpenAICompatible:
    return OpenAICompatible(url, model_name=MODEL, max_retries=0)


def run(urls: list[str], args: argparse.Namespace) -> dict[str, float]:
    setups = {
        'one server': lambda: client(urls[0]),
        'router, 1 server': lambda: Router([client(urls[0])]),
        'router, 3 servers': lambda: Router([client(url) for url in urls]),
    }

    async def rate(make: Callable[[], BaseLLM]) -> float:
        llm = make()
        try:
            await measure(llm, args.concurrency, args.concurrency, args.tokens)  # warm the connections
            return await measure(llm, args.requests, args.concurrency, args.tokens)
        finally:
            await llm.aclose()

    loop = asyncio.new_event_loop()  # one loop for every measurement
    try:
        measures = {name: (lambda make=make: loop.run_until_complete(rate(make))) for name, make in setups.items()}
        return interleaved_medians(measures, args.repeats)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--requests', type=int, default=240)
    parser.add_argument('--concurrency', type=int, default=24, help='streams in flight')
    parser.add_argument('--capacity', type=int, default=4, help='streams each server serves at once')
    parser.add_argument('--tokens', type=int, default=32, help='tokens per reply')
    parser.add_argument('--token-ms', type=float, default=5.0, help='milliseconds between two tokens of a stream')
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()

    with forked_servers(serve, args.capacity, args.token_ms / 1000, count=3) as urls:
        rates = run(urls, args)

    bound = args.capacity / (args.tokens * args.token_ms / 1000)
    print(
        f'{args.requests} requests, {args.concurrency} in flight, {args.tokens} tokens each, one token every '
        f'{args.token_ms:g} ms, {args.capacity} streams at once per server (at most {bound:.1f} requests/s each); '
        f'median of {args.repeats} runs'
    )
    peer = rates['one server']
    print(f'{"":<20}{"requests/s":>12}{"x one server":>14}')
    for name, rate in rates.items():
        print(f'{name:<20}{rate:>12.1f}{rate / peer:>14.2f}')
    ratio = rates['router, 3 servers'] / peer
    print(f'target: router over 3 servers >= {TARGET}x one server: {"met" if ratio >= TARGET else "NOT met"}')


if __name__ == '__main__':
    main()
