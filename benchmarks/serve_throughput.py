"""What ``lagent serve`` costs: the same engine called in process and through the server.

The engine is synthetic and fast, so that the server's own cost shows: a
``ScriptedLLM`` whose every reply is N one-token chunks (``'tok '``), run
through the real engine machinery (``astream``: stop-word filter, the worker
thread of an in-process engine). It is measured

* **in process**: ``async for chunk in llm.astream(prompt)`` in this process;
* **served**: the same engine class in a ``lagent serve --config`` child
  process, read by lagent's ``OpenAICompatible.astream`` from this one (the
  client's cost is included; every token must arrive).

Three measurements, the two sides taking turns (the one going first alternates), medians of ``--repeats`` runs:

* tokens/s of one stream of ``--tokens`` tokens;
* tokens/s of ``--streams`` concurrent streams of ``--tokens`` / 4 tokens each (all tokens over wall time);
* time to first token, p50 and p90 over ``--requests`` sequential short requests
  (16 tokens; the sides take turns every 10 requests), and the time the server
  adds (served p50 - in-process p50).

Beside each tokens/s figure: the CPU time per token (in process: this process;
served: this process and the server's), which the machine's load does not change.

Both processes keep their start-up heap out of the garbage collector's scans
(``gc.freeze()``; ``lagent serve`` does it once it listens), and each run starts
after a collection, so that the comparison is of the two paths, not of the
heaps the processes happen to hold. The replies are long (50,000 tokens by
default; 16 x 12,500) so that a run lasts tens of milliseconds, well above the
scheduler's noise; what a request costs apart from its tokens is the time to
first token's row.

Targets: served tokens/s >= 0.9x in process (both measurements); added TTFT p50 <= 5 ms.
The process exits 1 when a target is missed.

Run: ``python benchmarks/serve_throughput.py [--tokens 50000] [--streams 16] [--requests 200] [--repeats 15]``
(it starts and stops its own server on a free loopback port).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lagent.llms import OpenAICompatible, ScriptedLLM
from lagent.llms.process import ServerProcess, free_port

TOKEN = 'tok '
PROMPT = 'Count.'
SHORT = 16
HERE = Path(__file__).resolve().parent


class SyntheticLLM(ScriptedLLM):
    """Replies to the prompt ``'N tokens'`` with N one-token chunks ``'tok '``."""

    def __init__(self, requests: int = 100_000, **kwargs: Any):
        super().__init__([_reply] * requests, chunk_size=len(TOKEN), **kwargs)


def _reply(prompt: Any) -> str:
    return TOKEN * int(prompt.split()[0])


async def read_tokens(llm: Any, tokens: int) -> float:
    """Read a reply of ``tokens`` tokens (checking every one arrived); return the seconds to the first.

    The text is checked as it arrives rather than kept, as a consumer that passes
    tokens on would: a reply held whole would make the garbage collector's work,
    not the stream's, grow with its length.
    """
    started = time.perf_counter()
    first = None
    size = 0
    async with llm.astream(f'{tokens} tokens', max_new_tokens=1 << 30) as stream:
        async for chunk in stream:
            text = chunk.text
            if text:
                if first is None:
                    first = time.perf_counter() - started
                if text != TOKEN and text != TOKEN * (len(text) // len(TOKEN)):
                    raise AssertionError(f'a token was changed on the way: {text[:40]!r}')
                size += len(text)
    if size != len(TOKEN) * tokens:
        raise AssertionError(f'tokens were lost on the way: {size // len(TOKEN)} of {tokens} arrived')
    return first or 0.0


async def throughput(llm: Any, streams: int, tokens: int) -> float:
    """Tokens per second of ``streams`` concurrent replies of ``tokens`` tokens."""
    started = time.perf_counter()
    await asyncio.gather(*(read_tokens(llm, tokens) for _ in range(streams)))
    return streams * tokens / (time.perf_counter() - started)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def serve(log: Path) -> ServerProcess:
    """``lagent serve`` of a :class:`SyntheticLLM`, on a free port."""
    config = log.with_suffix('.json')
    config.write_text(json.dumps({'type': 'serve_throughput:SyntheticLLM'}))
    port = free_port()
    path = os.pathsep.join(filter(None, [str(HERE), str(HERE.parent), os.environ.get('PYTHONPATH')]))
    command = [sys.executable, '-m', 'lagent', 'serve', '--config', str(config), '--port', str(port)]
    return ServerProcess(command, port=port, name='lagent-serve', log_path=log, env={**os.environ, 'PYTHONPATH': path})


class Side:
    """One way of calling the engine, with the CPU time it takes (this process, and the server's if any)."""

    def __init__(self, name: str, llm: Any, server_pid: int | None = None):
        self.name = name
        self.llm = llm
        self.server_pid = server_pid

    def cpu_seconds(self) -> float:
        used = time.process_time()
        if self.server_pid is not None:
            fields = Path(f'/proc/{self.server_pid}/stat').read_text().rsplit(')', 1)[1].split()
            used += (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
        return used


async def compare(sides: list[Side], runs: int, streams: int, tokens: int) -> dict[str, tuple[float, float]]:
    """Median tokens/s and CPU microseconds per token of each side, the sides taking turns (the first changes)."""
    rates: dict[str, list[float]] = {side.name: [] for side in sides}
    cpu: dict[str, list[float]] = {side.name: [] for side in sides}
    for run in range(runs):
        for side in sides[run % 2 :] + sides[: run % 2]:
            gc.collect()  # each run starts from the same heap, not one left full by the other side
            before = side.cpu_seconds()
            rates[side.name].append(await throughput(side.llm, streams, tokens))
            cpu[side.name].append((side.cpu_seconds() - before) * 1e6 / (streams * tokens))
    return {name: (statistics.median(rates[name]), statistics.median(cpu[name])) for name in rates}


async def first_token_times(sides: list[Side], requests: int, block: int = 10) -> dict[str, list[float]]:
    """Seconds to the first token of short replies, the sides taking turns every ``block`` requests."""
    times: dict[str, list[float]] = {side.name: [] for side in sides}
    for _ in range(0, requests, block):
        for side in sides:
            times[side.name] += [await read_tokens(side.llm, SHORT) for _ in range(block)]
    return times


async def main(args: argparse.Namespace) -> int:
    per_stream = max(1, args.tokens // 4)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder, serve(Path(folder) / 'serve.log') as server:
        served = OpenAICompatible(server.url, model_name='scripted', idle_timeout=60)
        sides = [Side('in process', SyntheticLLM()), Side('served', served, server.pid)]
        await read_tokens(served, SHORT)  # connect and warm up
        gc.collect()
        gc.freeze()  # as the server does once it listens: the start-up heap stays out of the collector's scans
        one = await compare(sides, args.repeats, 1, args.tokens)
        many = await compare(sides, args.repeats, args.streams, per_stream)
        ttft = await first_token_times(sides, args.requests)
        await served.aclose()

    print(
        f'engine: ScriptedLLM, replies of one-token chunks {TOKEN!r}; medians of {args.repeats} runs, sides alternating'
    )
    print(f'machine load (1 min) at the start: {load:.1f} on {os.cpu_count()} CPUs')
    print(f'{"":34}{"in process":>12}{"served":>12}{"ratio":>8}   CPU us/token (in process / served, both processes)')
    failed = False
    rows = ((f'1 stream x {args.tokens} tokens', one), (f'{args.streams} streams x {per_stream} tokens', many))
    for label, result in rows:
        (local, local_cpu), (remote, remote_cpu) = result['in process'], result['served']
        ratio = remote / local
        failed |= ratio < 0.9
        print(f'{label:34}{local:>12,.0f}{remote:>12,.0f}{ratio:>7.2f}x   {local_cpu:.1f} / {remote_cpu:.1f}')
    p50 = {name: percentile(times, 0.5) * 1000 for name, times in ttft.items()}
    p90 = {name: percentile(times, 0.9) * 1000 for name, times in ttft.items()}
    print(f'{"TTFT p50 (ms)":34}{p50["in process"]:>12.2f}{p50["served"]:>12.2f}')
    print(f'{"TTFT p90 (ms)":34}{p90["in process"]:>12.2f}{p90["served"]:>12.2f}')
    added = p50['served'] - p50['in process']
    failed |= added > 5.0
    print(f'added TTFT p50: {added:.2f} ms (target <= 5 ms); tokens/s target: served >= 0.9x in process')
    print('FAIL: a target was missed' if failed else 'OK: every target met')
    return 1 if failed else 0


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tokens', type=int, default=50_000, help='tokens of the single stream')
    parser.add_argument('--streams', type=int, default=16, help='concurrent streams (of --tokens / 4 tokens each)')
    parser.add_argument('--requests', type=int, default=200, help='requests for the time to first token')
    parser.add_argument('--repeats', type=int, default=15, help='runs per measurement')
    sys.exit(asyncio.run(main(parser.parse_args())))
