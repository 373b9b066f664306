"""``lagent bench`` against guidellm: the same server, the same requests, TTFT,
ITL and output tokens/s side by side.

Two servers, each measured by both tools in alternating rounds:

* a real ``python -m llama_cpp.server`` serving SmolLM2-135M on the CPU. Both
  tools send the same raw prompts to ``/v1/completions`` (greedy,
  ``max_tokens`` fixed), one request at a time (lagent ``concurrency=1``,
  guidellm's ``synchronous`` profile). The server runs at a raised CPU priority
  with its model locked in memory, so that neither client's start-up (nor the
  rest of a busy machine) slows it down for one tool and not the other; the
  CPU seconds each tool spent are printed;
* a paced server (``tests/faults/chaos_server.py``: real HTTP, OpenAI SSE) that
  sends each event a fixed time after the previous one: its true TTFT and ITL
  are known, so it checks the measurement itself.

The metrics are defined alike: TTFT from sending to the first event with text;
ITL the mean gap between consecutive events with text over all requests
(guidellm: ``(last - first) / (tokens - 1)`` per request, weighted by tokens,
the same quantity); output tokens/s the tokens of the completed requests over
the run's duration. llama.cpp's server reports no usage in streams: lagent
counts the tokens of each reply with the model's tokenizer (the GGUF's),
guidellm counts streamed events, one token each.

On a busy machine the server's speed drifts from one round to the next, and
the tools differ in how much CPU they take from it. So for llama.cpp each
tool's ITL is also set against the server's own clock: the time per generated
token llama.cpp logs for the requests of that tool's rounds. Both tools should
measure the same multiple of it, whatever the load.

guidellm pins other versions of what lagent uses, so it runs from a virtualenv
of its own, made on first use (``--venv``, default ``.venv-guidellm``; a CPU
build of torch is installed first, as guidellm depends on torch).

Target: every lagent/guidellm ratio within 10% of 1 (medians over the rounds),
and for llama.cpp the ratio of their ITLs per server millisecond too.

Run: ``python benchmarks/bench_vs_guidellm.py [--requests 4] [--output-tokens 48] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the llama.cpp server fixture lives in tests/fixtures

from lagent.bench import BenchRequest, BenchRun, run_benchmark, summarize  # noqa: E402
from lagent.bench.tokens import token_counter  # noqa: E402
from lagent.llms.default_model import smollm2_gguf_path  # noqa: E402
from lagent.llms.llama_cpp_server import llama_cpp_server_command  # noqa: E402
from lagent.llms.openai_compatible import OpenAICompatible  # noqa: E402
from lagent.llms.process import ServerProcess, free_port  # noqa: E402
from tests.faults.campaign import chaos_server  # noqa: E402

GUIDELLM = 'guidellm==0.8.1'
TORCH_CPU = 'torch==2.13.0'
MODEL = 'smollm2'
RAW_PROMPT = [  # a meta_template that sends a user message's text as the raw prompt, as guidellm does
    {'role': 'user', 'begin': '', 'end': ''},
    {'role': 'assistant', 'begin': '', 'end': '', 'generate': True},
]
METRICS = ('TTFT mean (ms)', 'ITL mean (ms)', 'output tokens/s')


def prompts(count: int) -> list[str]:
    """Prompts a small model answers at length (so that every reply runs to ``max_tokens``)."""
    return [f'Count from {start} to 1000, separated by commas: {start}, {start + 1},' for start in range(1, count + 1)]


# ---------------------------------------------------------------------- guidellm, in its own virtualenv


def ensure_guidellm(venv: Path) -> Path:
    """The ``guidellm`` command of ``venv``, installing it there first if needed."""
    command = venv / 'bin' / 'guidellm'
    if command.exists():
        return command
    print(f'making {venv} for {GUIDELLM} (once)...', flush=True)
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    pip = [str(venv / 'bin' / 'python'), '-m', 'pip', 'install', '--quiet']
    subprocess.run([*pip, '--upgrade', 'pip'], check=True)
    subprocess.run([*pip, TORCH_CPU], check=True)  # before guidellm, or pip picks a CUDA build
    subprocess.run([*pip, GUIDELLM], check=True)
    return command


def run_guidellm(command: Path, target: Target, data: Path, requests: int, output_tokens: int, out: Path) -> dict:
    backend = {
        'kind': 'openai_http',
        'target': target.url,
        'model': target.model,
        'request_format': '/v1/completions',
        'validate_backend': False,
        'extras': {'body': {'max_tokens': output_tokens, 'temperature': 0}},
    }
    cpu = _children_cpu()
    subprocess.run(
        [
            str(command), 'run',
            '--backend', json.dumps(backend),
            '--profile', 'kind=synchronous',
            '--constraint', f'kind=max_requests,count={requests}',
            '--data', f'kind=json_file,path={data}',
            '--output', f'kind=json,path={out}',
            '--disable-console',
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, 'HF_HUB_OFFLINE': '1'},
    )  # fmt: skip
    benchmark = json.loads(out.read_text())['benchmarks'][0]
    metrics, records = benchmark['metrics'], benchmark['requests']['successful']
    return {
        'TTFT mean (ms)': metrics['time_to_first_token_ms']['successful']['mean'],
        'ITL mean (ms)': metrics['inter_token_latency_ms']['successful']['mean'],
        'output tokens/s': metrics['output_tokens_per_second']['successful']['mean'],
        'completed': len(records),
        'output tokens': metrics['output_token_count']['successful']['total_sum'],
        'CPU s': _children_cpu() - cpu,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------- lagent


def run_lagent(target: Target, texts: list[str], output_tokens: int, count_tokens: Callable[[str], int]) -> dict:
    requests = [BenchRequest([{'role': 'user', 'content': text}], output_tokens) for text in texts]

    async def measure() -> BenchRun:
        async with OpenAICompatible(target.url, target.model, meta_template=RAW_PROMPT, temperature=0) as llm:
            return await run_benchmark(llm, requests, concurrency=1, count_tokens=count_tokens)

    cpu = time.process_time()
    run = asyncio.run(measure())
    cpu = time.process_time() - cpu
    summary = summarize(run.records, run.duration_s)
    assert summary.ttft is not None and summary.itl is not None and summary.output_tokens_per_s is not None
    return {
        'TTFT mean (ms)': summary.ttft.mean * 1000,
        'ITL mean (ms)': summary.itl.mean * 1000,
        'output tokens/s': summary.output_tokens_per_s,
        'completed': summary.completed,
        'output tokens': summary.output_tokens,
        'events with text': sum(len(record.event_s) for record in run.records),
        'CPU s': cpu,
    }


# ---------------------------------------------------------------------- servers


@dataclass
class Target:
    name: str
    url: str
    model: str
    log: Path | None = None
    """The server's log, where llama.cpp reports its own time per generated token."""

    def decode_clock(self) -> tuple[float, int]:
        """Milliseconds llama.cpp spent generating tokens so far, and how many it generated (after the first)."""
        if self.log is None:
            return 0.0, 0
        total, runs = 0.0, 0
        for match in _EVAL_TIME.finditer(self.log.read_text(errors='replace')):
            total, runs = total + float(match['ms']), runs + int(match['runs'])
        return total, runs


_EVAL_TIME = re.compile(r'^llama_perf_context_print:\s+eval time =\s+(?P<ms>[\d.]+) ms /\s+(?P<runs>\d+) runs', re.M)


@contextlib.contextmanager
def llamacpp(scratch: Path) -> Iterator[Target]:
    """The real llama.cpp server: its model locked in memory (another tool's start-up cannot push it out
    of the page cache) and its threads at a raised CPU priority while it runs."""
    log, port = scratch / 'server.log', free_port()
    command = llama_cpp_server_command(smollm2_gguf_path(), model_name=MODEL, host='127.0.0.1', port=port,
                                       n_threads=2, server_cfg={'use_mlock': True})  # fmt: skip
    with ServerProcess(command, port=port, name='llama_cpp.server', log_path=log, ready_timeout=300) as server:
        assert server.pid is not None
        for thread in (Path('/proc') / str(server.pid) / 'task').iterdir():  # Linux: a thread's priority is its own
            os.setpriority(os.PRIO_PROCESS, int(thread.name), -10)
        with OpenAICompatible(server.url, MODEL, temperature=0, max_new_tokens=8) as llm:
            llm.generate('Hello')  # warm up
        yield Target('llama.cpp server, SmolLM2-135M on the CPU', server.url, MODEL, log)


@contextlib.contextmanager
def paced(output_tokens: int, ttft_s: float, itl_s: float) -> Iterator[Target]:
    """The chaos server without faults, sending an event every ``itl_s`` seconds (and reporting usage)."""
    with chaos_server() as server:
        server.plan(tokens=[f' w{i}' for i in range(output_tokens)], delay=itl_s, first_delay=ttft_s)
        yield Target(f'paced server ({ttft_s * 1000:.0f} ms to the first event, then one every '
                     f'{itl_s * 1000:.0f} ms)', server.url, 'chaos')  # fmt: skip


# ---------------------------------------------------------------------- main


def compare(target: Target, guidellm: Path, texts: list[str], args: argparse.Namespace,
            count_tokens: Callable[[str], int], scratch: Path) -> tuple[bool, dict]:  # fmt: skip
    data = scratch / 'prompts.jsonl'
    data.write_text(''.join(json.dumps({'prompt': text}) + '\n' for text in texts), encoding='utf-8')
    rounds: dict[str, list[dict]] = {'lagent': [], 'guidellm': []}
    print(f'\n{target.name}: {args.requests} requests of {args.output_tokens} tokens, one at a time', flush=True)
    for index in range(args.rounds):
        started = time.monotonic()
        rounds['lagent'].append(_timed(target, partial(run_lagent, target, texts, args.output_tokens, count_tokens)))
        out = scratch / f'guidellm-{index}.json'
        measure = partial(run_guidellm, guidellm, target, data, args.requests, args.output_tokens, out)
        rounds['guidellm'].append(_timed(target, measure))
        print(f'  round {index + 1}/{args.rounds} ({time.monotonic() - started:.0f}s): '
              f'lagent {_short(rounds["lagent"][-1])} | guidellm {_short(rounds["guidellm"][-1])}', flush=True)  # fmt: skip
    names = (*METRICS, 'CPU s')
    medians = {
        tool: {name: statistics.median(r[name] for r in runs) for name in names} for tool, runs in rounds.items()
    }
    print(f'  medians of {args.rounds} rounds')
    print(f'  {"metric":<18}{"lagent bench":>14}{"guidellm":>12}{"ratio":>8}')
    ok = True
    for name in names:
        ours, theirs = medians['lagent'][name], medians['guidellm'][name]
        ratio = ours / theirs
        verdict = ('ok' if abs(ratio - 1) <= 0.10 else 'MISSED') if name in METRICS else '(not a target)'
        ok &= name not in METRICS or abs(ratio - 1) <= 0.10
        print(f'  {name:<18}{ours:>14.2f}{theirs:>12.2f}{ratio:>8.3f}   {verdict}')
    if target.log is not None:
        # what each tool measured against the server's own clock during that tool's rounds
        clock = {tool: statistics.median(r['server ms/token'] for r in runs) for tool, runs in rounds.items()}
        own = {
            tool: statistics.median(r['ITL mean (ms)'] / r['server ms/token'] for r in runs)
            for tool, runs in rounds.items()
        }
        ratio = own['lagent'] / own['guidellm']
        ok_own = abs(ratio - 1) <= 0.10
        print(f"  llama.cpp's own time per token during the rounds: lagent's {clock['lagent']:.1f} ms, "
              f"guidellm's {clock['guidellm']:.1f} ms")  # fmt: skip
        print(f"  ITL / the server's own time per token: lagent {own['lagent']:.3f}, guidellm {own['guidellm']:.3f}, "
              f'ratio {ratio:.3f}   {"ok" if ok_own else "MISSED"}')  # fmt: skip
        medians['server clock'] = {'lagent': clock, 'ITL per server ms': own}
    tokens = [r['output tokens'] for r in rounds['lagent']], [r['output tokens'] for r in rounds['guidellm']]
    events = [r['events with text'] for r in rounds['lagent']]
    print(f'  output tokens per round: lagent {tokens[0]} ({events} events with text), guidellm {tokens[1]}')
    return ok, {'server': target.name, 'rounds': rounds, 'medians': medians}


def _timed(target: Target, measure: Callable[[], dict]) -> dict:
    """``measure()``, with the server's own milliseconds per generated token while it ran (llama.cpp only)."""
    before = target.decode_clock()
    result = measure()
    after = target.decode_clock()
    if after[1] > before[1]:
        result['server ms/token'] = (after[0] - before[0]) / (after[1] - before[1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--requests', type=int, default=4, help='requests per round')
    parser.add_argument('--output-tokens', type=int, default=48, help='max_tokens of every request')
    parser.add_argument('--rounds', type=int, default=5, help='rounds of each tool, alternating')
    parser.add_argument('--servers', nargs='+', default=['llamacpp', 'paced'], choices=['llamacpp', 'paced'])
    parser.add_argument('--venv', type=Path, default=ROOT / '.venv-guidellm', help="guidellm's own virtualenv")
    parser.add_argument('--json', metavar='OUT', help='write every round and the medians')
    args = parser.parse_args()

    guidellm = ensure_guidellm(args.venv)
    count_tokens = token_counter(smollm2_gguf_path())
    texts = prompts(args.requests)
    results, all_ok = [], True
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for name in args.servers:
            server = llamacpp(scratch) if name == 'llamacpp' else paced(args.output_tokens, 0.1, 0.02)
            with server as target:
                ok, result = compare(target, guidellm, texts, args, count_tokens, scratch)
            all_ok &= ok
            results.append(result)
    print('\nmeasured on a shared, busy machine (2 cores): the ratios matter, not the absolute numbers')
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + '\n')
    return 0 if all_ok else 1


def _short(result: dict) -> str:
    return ', '.join(f'{name} {result[name]:.1f}' for name in METRICS)


if __name__ == '__main__':
    sys.exit(main())
