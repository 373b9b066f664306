"""How much the HTTP client costs: lagent's served-engine streaming against raw readers.

A local server (a separate process: a bare asyncio HTTP/1.1 server, so it is
never the bottleneck) streams N tokens of ``/v1/completions`` as fast as it can,
in the SSE shape of lmdeploy/vLLM (``data: {json}\\n\\n`` ... ``data: [DONE]``,
chunked transfer encoding), once with one SSE event per write and once with 64.
Every reader gets the same bytes and must recover the same text; each
measurement is the median of 5 runs, the readers interleaved.

The readers (what each does per event):

* ``raw requests``: ``iter_lines(chunk_size=65536)``, keep lines starting with
  ``data: ``, stop at ``[DONE]``, ``json.loads`` the rest and take
  ``choices[0].text`` — the minimum work to get the text out, sync.
* ``raw aiohttp``: ``resp.content.iter_any()``, split the bytes into lines,
  then the same as above — the minimum, async.
* ``openai``: the official client, ``completions.create(stream=True)``, reading
  ``chunk.choices[0].text`` (it builds a pydantic object per event); measured
  up to ``--openai-max-n`` tokens only, as it is an order of magnitude slower.
* ``lagent stream`` / ``astream``: ``OpenAICompatible.stream(prompt)``, typed
  ``Chunk`` deltas (stop-word filter on the way, as always).
* ``lagent stream_chat`` / ``astream_chat``: ``stream_chat(messages)`` with a
  meta_template (same endpoint), which hands out the whole text so far at
  every step, as the lagent contract says.

Then 256 concurrent async streams: lagent ``astream`` against raw aiohttp.

Targets (printed as ratios): ``stream``/``astream`` >= 0.8x the fastest raw
reader, and linear (rate at the large N within 10% of the rate at the small
N); ``stream_chat`` >= 0.8x raw at the small N and >= 50k tokens/s at the
large N; 256 concurrent streams with 0 errors and >= 0.8x raw aiohttp.

Run: ``python benchmarks/client_overhead.py [--sizes 2000 80000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import requests
from _bare_server import STREAM_HEAD, forked_servers, http_chunk, models_answer, take_requests
from _timing import interleaved_medians

from lagent.llms.openai_compatible import OpenAICompatible

PROMPT = 'Count.'
TEMPLATE = [
    dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
    dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
]
MESSAGES = [{'role': 'user', 'content': PROMPT}]
MODEL = 'bench'


# ---------------------------------------------------------------------- the server


def token(index: int) -> str:
    return f' w{index % 997}'


def expected_text(n: int) -> str:
    return ''.join(token(i) for i in range(n))


def sse_writes(n: int, per_write: int) -> list[bytes]:
    """The response body as HTTP chunks, ``per_write`` SSE events per chunk (one chunk per write)."""
    head = {'id': 'cmpl-8d1f3a', 'object': 'text_completion', 'created': 1700000000, 'model': MODEL}
    events = []
    for i in range(n):
        choice = {'index': 0, 'text': token(i), 'logprobs': None, 'finish_reason': 'length' if i == n - 1 else None}
        events.append(f'data: {json.dumps({**head, "choices": [choice]})}\n\n'.encode())
    usage = {'prompt_tokens': 5, 'completion_tokens': n, 'total_tokens': n + 5}
    events.append(f'data: {json.dumps({**head, "choices": [], "usage": usage})}\n\n'.encode())
    events.append(b'data: [DONE]\n\n')
    writes = [http_chunk(b''.join(events[start : start + per_write])) for start in range(0, len(events), per_write)]
    writes.append(b'0\r\n\r\n')
    return writes


_BODIES: dict[tuple[int, int], list[bytes]] = {}


class _Server(asyncio.Protocol):
    """HTTP/1.1 keep-alive; POST bodies carry ``max_tokens`` (N) and ``events_per_write``."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = b''

    def data_received(self, data: bytes) -> None:
        requests, self.buffer = take_requests(self.buffer + data)
        for path, body in requests:
            self.answer(path, body)

    def answer(self, path: str, body: dict[str, Any]) -> None:
        if path.endswith('/models'):
            self.transport.write(models_answer(MODEL))
            return
        key = (int(body['max_tokens']), int(body.get('events_per_write', 1)))
        if key not in _BODIES:
            _BODIES[key] = sse_writes(*key)
        self.transport.write(STREAM_HEAD)
        write = self.transport.write
        for chunk in _BODIES[key]:
            write(chunk)


def serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Server, sock=sock, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


# ---------------------------------------------------------------------- the readers


def body(n: int, per_write: int) -> dict[str, Any]:
    return {'model': MODEL, 'prompt': PROMPT, 'max_tokens': n, 'stream': True, 'events_per_write': per_write}


def raw_requests(url: str, n: int, per_write: int) -> str:
    parts = []
    with requests.post(url + '/v1/completions', json=body(n, per_write), stream=True, timeout=60) as response:
        for line in response.iter_lines(chunk_size=65536):
            if line.startswith(b'data: '):
                payload = line[6:]
                if payload == b'[DONE]':
                    break
                choices = json.loads(payload)['choices']
                if choices:
                    parts.append(choices[0]['text'])
    return ''.join(parts)


async def raw_aiohttp_read(session: aiohttp.ClientSession, url: str, n: int, per_write: int) -> str:
    parts, buffer = [], b''
    async with session.post(url + '/v1/completions', json=body(n, per_write)) as response:
        async for data in response.content.iter_any():
            lines = (buffer + data).split(b'\n')
            buffer = lines.pop()
            for line in lines:
                if line.startswith(b'data: '):
                    payload = line[6:]
                    if payload == b'[DONE]':
                        return ''.join(parts)
                    choices = json.loads(payload)['choices']
                    if choices:
                        parts.append(choices[0]['text'])
    return ''.join(parts)


def raw_aiohttp(url: str, n: int, per_write: int) -> str:
    async def main() -> str:
        async with aiohttp.ClientSession() as session:
            return await raw_aiohttp_read(session, url, n, per_write)

    return asyncio.run(main())


def openai_client(url: str, n: int, per_write: int) -> str:
    import openai

    client = openai.OpenAI(base_url=url + '/v1', api_key='none', max_retries=0)
    parts = []
    stream = client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=n, stream=True, extra_body={'events_per_write': per_write}
    )
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].text)
    client.close()
    return ''.join(parts)


def lagent_engine(url: str, n: int, per_write: int, **kwargs: Any) -> OpenAICompatible:
    return OpenAICompatible(
        url, model_name=MODEL, max_new_tokens=n, extra_body={'events_per_write': per_write}, **kwargs
    )


def lagent_stream(url: str, n: int, per_write: int) -> str:
    with lagent_engine(url, n, per_write) as llm:
        return ''.join(chunk.text for chunk in llm.stream(PROMPT))


def lagent_astream(url: str, n: int, per_write: int) -> str:
    async def main() -> str:
        async with lagent_engine(url, n, per_write) as llm:
            return ''.join([chunk.text async for chunk in llm.astream(PROMPT)])

    return asyncio.run(main())


def lagent_stream_chat(url: str, n: int, per_write: int) -> str:
    with lagent_engine(url, n, per_write, meta_template=TEMPLATE) as llm:
        for _, text, _ in llm.stream_chat(MESSAGES):  # noqa: B007 (the last text is the result)
            pass
    return text


def lagent_astream_chat(url: str, n: int, per_write: int) -> str:
    async def main() -> str:
        async with lagent_engine(url, n, per_write, meta_template=TEMPLATE) as llm:
            async for _, text, _ in llm.astream_chat(MESSAGES):  # noqa: B007 (the last text is the result)
                pass
        return text

    return asyncio.run(main())


READERS: dict[str, Callable[[str, int, int], str]] = {
    'raw requests': raw_requests,
    'raw aiohttp': raw_aiohttp,
    'openai': openai_client,
    'lagent stream': lagent_stream,
    'lagent astream': lagent_astream,
    'lagent stream_chat': lagent_stream_chat,
    'lagent astream_chat': lagent_astream_chat,
}


# ---------------------------------------------------------------------- concurrency


async def _concurrent(url: str, streams: int, n: int, per_write: int, use_lagent: bool) -> tuple[float, int]:
    expected = expected_text(n)
    if use_lagent:
        llm = lagent_engine(url, n, per_write)

        async def one() -> str:
            return ''.join([chunk.text async for chunk in llm.astream(PROMPT)])

    else:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def one() -> str:
            return await raw_aiohttp_read(session, url, n, per_write)

    start = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(streams)), return_exceptions=True)
    elapsed = time.perf_counter() - start
    await (llm.aclose() if use_lagent else session.close())
    errors = sum(1 for result in results if result != expected)
    return streams * n / elapsed, errors


def concurrent(url: str, streams: int, n: int, per_write: int, use_lagent: bool) -> tuple[float, int]:
    return asyncio.run(_concurrent(url, streams, n, per_write, use_lagent))


# ---------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[2000, 80000], help='tokens per stream')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--streams', type=int, default=256, help='concurrent async streams (0: skip that part)')
    parser.add_argument('--stream-tokens', type=int, default=2000, help='tokens per concurrent stream')
    parser.add_argument('--readers', nargs='+', default=list(READERS), choices=list(READERS))
    parser.add_argument(
        '--openai-max-n', type=int, default=2000, help='measure the (slow) openai client only up to this N'
    )
    args = parser.parse_args()

    with forked_servers(serve) as (url,):
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    small, large = min(args.sizes), max(args.sizes)
    rates: dict[tuple[str, int, int], float] = {}
    for per_write in (1, 64):
        for n in args.sizes:
            expected = expected_text(n)
            readers = [name for name in args.readers if name != 'openai' or n <= args.openai_max_n]
            measures = {name: _timer(name, url, n, per_write, expected) for name in readers}
            for name, seconds in interleaved_medians(measures, args.repeats).items():
                rates[name, n, per_write] = n / seconds

    print(f'\ntokens/s (median of {args.repeats}, interleaved)')
    columns = [(n, w) for w in (1, 64) for n in args.sizes]
    print(f'{"reader":<22}' + ''.join(f'{f"N={n} {w}/write":>18}' for n, w in columns))
    for name in args.readers:
        print(f'{name:<22}' + ''.join(_cell(rates.get((name, n, w))) for n, w in columns))

    print('\nratios against the targets')
    raw_names = [name for name in ('raw requests', 'raw aiohttp') if name in args.readers]
    for per_write in (1, 64):
        for n in args.sizes:
            if not raw_names:
                break
            fastest = max(rates[name, n, per_write] for name in raw_names)
            for name in ('lagent stream', 'lagent astream'):
                if name in args.readers:
                    _report(f'{name} / fastest raw, N={n} {per_write}/write', rates[name, n, per_write] / fastest, 0.8)
            if n == small:
                for name in ('lagent stream_chat', 'lagent astream_chat'):
                    if name in args.readers:
                        ratio = rates[name, n, per_write] / fastest
                        _report(f'{name} / fastest raw, N={n} {per_write}/write', ratio, 0.8)
        if small != large:
            for name in ('lagent stream', 'lagent astream'):
                if name in args.readers:
                    ratio = rates[name, large, per_write] / rates[name, small, per_write]
                    _report(f'{name} rate N={large} / N={small}, {per_write}/write', ratio, 0.9)
            for name in ('lagent stream_chat', 'lagent astream_chat'):
                if name in args.readers:
                    rate = rates[name, large, per_write]
                    _report(f'{name} tokens/s at N={large}, {per_write}/write (k)', rate / 1000, 50)

    if args.streams < 1:
        return
    print(f'\n{args.streams} concurrent async streams of {args.stream_tokens} tokens (1 event/write)')
    lagent_runs, raw_runs = [], []
    for _ in range(max(1, args.repeats // 2)):
        lagent_runs.append(concurrent(url, args.streams, args.stream_tokens, 1, True))
        raw_runs.append(concurrent(url, args.streams, args.stream_tokens, 1, False))
    lagent_rate = statistics.median(rate for rate, _ in lagent_runs)
    raw_rate = statistics.median(rate for rate, _ in raw_runs)
    errors = sum(e for _, e in lagent_runs), sum(e for _, e in raw_runs)
    print(f'lagent astream: {lagent_rate:,.0f} tokens/s, {errors[0]} errors')
    print(f'raw aiohttp:    {raw_rate:,.0f} tokens/s, {errors[1]} errors')
    _report('lagent / raw aiohttp, concurrent', lagent_rate / raw_rate, 0.8)
    print(f'{"lagent errors, concurrent":<58}{errors[0]:>8}   (target 0)  {"ok" if errors[0] == 0 else "MISSED"}')


def _timer(name: str, url: str, n: int, per_write: int, expected: str) -> Callable[[], float]:
    """Seconds one read by ``name`` takes; it must read ``expected``."""

    def seconds() -> float:
        start = time.perf_counter()
        text = READERS[name](url, n, per_write)
        elapsed = time.perf_counter() - start
        if text != expected:
            raise SystemExit(f'{name} got the wrong text at N={n}, {per_write}/write')
        return elapsed

    return seconds


def _cell(rate: float | None) -> str:
    return f'{rate:>18,.0f}' if rate is not None else f'{"-":>18}'


def _report(label: str, value: float, target: float) -> None:
    print(f'{label:<58}{value:>8.2f}   (target >= {target:g})  {"ok" if value >= target else "MISSED"}')


if __name__ == '__main__':
    main()
