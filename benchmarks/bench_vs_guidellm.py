"""``lagent bench`` against guidellm: the same server, the same requests, TTFT,
ITL and output tokens/s side by side.

Two servers, each measured by both tools in alternating rounds (after one
untimed request):

* a real ``python -m llama_cpp.server`` serving SmolLM2-135M on the CPU. Both
  tools send the same raw prompts to ``/v1/completions`` with the same body
  (greedy, ``max_tokens`` fixed, the same ``stream_options``; the script checks
  that the bodies are equal), one request at a time (lagent ``concurrency=1``,
  guidellm's ``synchronous`` profile; the script checks that no two requests
  overlapped);
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

The llama.cpp server must run at the same speed for both tools. On a machine
shared with other work it does not by itself: with two threads at normal
priority its time per token swings between 20 and 470 ms as the other load
comes and goes (two threads on two shared cores stall whenever one of them is
preempted, since each step waits for both), and rounds measured minutes apart
then differ by that much whichever tool sent them. Raising the server's
threads' nice value is not enough where the kernel groups processes by
session (autogroup scheduling, ``/proc/sys/kernel/sched_autogroup_enabled``):
nice then ranks threads only within their own group, and the server, started
in a session of its own, is alone in its group. So the script raises the nice
value of the server's autogroup too (``/proc/PID/autogroup``; needs root or
CAP_SYS_NICE), and runs llama.cpp on one thread by default
(``--server-threads``). What the server's own clock said during each tool's
rounds is printed too, from llama.cpp's log: its prompt evaluation per
request (the bulk of a TTFT) and its time per generated token (what an ITL
measures), so that a difference between the tools can be told apart from a
difference in the server's speed.

guidellm pins other versions of what lagent uses, so it runs from a virtualenv
of its own, made on first use (``--venv``, default ``.venv-guidellm``; a CPU
build of torch is installed first, as guidellm depends on torch).

Target: every lagent/guidellm ratio within 10% of 1 (medians over the rounds).

Run: ``python benchmarks/bench_vs_guidellm.py [--requests 8] [--output-tokens 48] [--rounds 9]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import itertools
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the chaos server and the threaded HTTP server live in tests/

from lagent.bench import BenchRequest, BenchRun, run_benchmark, summarize  # noqa: E402
from lagent.bench.tokens import token_counter  # noqa: E402
from lagent.llms.default_model import smollm2_gguf_path  # noqa: E402
from lagent.llms.llama_cpp_server import llama_cpp_server_command  # noqa: E402
from lagent.llms.openai_compatible import OpenAICompatible  # noqa: E402
from lagent.llms.process import ServerProcess, free_port  # noqa: E402
from tests.faults.campaign import chaos_server  # noqa: E402
from tests.fixtures.threaded_http import serve_in_thread  # noqa: E402

GUIDELLM = 'guidellm==0.8.1'
TORCH_CPU = 'torch==2.13.0'
MODEL = 'smollm2'
RAW_PROMPT = [  # a meta_template that sends a user message's text as the raw prompt, as guidellm does
    {'role': 'user', 'begin': '', 'end': ''},
    {'role': 'assistant', 'begin': '', 'end': '', 'generate': True},
]
SAMPLING = {'temperature': 0.0, 'top_p': 1.0}  # greedy; both tools send both fields
STREAM_OPTIONS = {'include_usage': True, 'continuous_usage_stats': True}  # guidellm's; lagent sends the same
METRICS = ('TTFT mean (ms)', 'ITL mean (ms)', 'output tokens/s')
SERVER_NICE = -10


def prompts(count: int) -> list[str]:
    """Prompts a small model answers at length (so that every reply runs to ``max_tokens``)."""
    return [f'Count from {start} to 1000, separated by commas: {start}, {start + 1},' for start in range(1, count + 1)]


@dataclass
class Target:
    name: str
    url: str
    model: str
    log: Path | None = None
    """The server's log, where llama.cpp reports its own time per generated token."""

    def server_clock(self) -> dict[str, float]:
        """What llama.cpp's log says it spent so far: milliseconds evaluating prompts (and how many prompts), and
        milliseconds generating tokens after the first (and how many tokens)."""
        text = self.log.read_text(errors='replace') if self.log is not None else ''
        prompts = [float(match['ms']) for match in _PROMPT_TIME.finditer(text)]
        evals = [(float(match['ms']), int(match['runs'])) for match in _EVAL_TIME.finditer(text)]
        return {
            'prompt ms': sum(prompts),
            'prompts': len(prompts),
            'eval ms': sum(ms for ms, _ in evals),
            'eval tokens': sum(runs for _, runs in evals),
        }


_PROMPT_TIME = re.compile(r'^llama_perf_context_print:\s+prompt eval time =\s+(?P<ms>[\d.]+) ms', re.M)
_EVAL_TIME = re.compile(r'^llama_perf_context_print:\s+eval time =\s+(?P<ms>[\d.]+) ms /\s+(?P<runs>\d+) runs', re.M)


def one_at_a_time(spans: list[tuple[float, float]]) -> bool:
    """Whether no two of the ``(start, end)`` spans of requests overlap."""
    ordered = sorted(spans)
    return all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(ordered))


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
        'extras': {'body': {'max_tokens': output_tokens, **SAMPLING}},
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
    timings = [record['info']['timings'] for record in records]
    failed = [r['info']['error'] or r['info']['status'] for r in (*benchmark['requests']['errored'],
                                                                 *benchmark['requests']['incomplete'])]  # fmt: skip
    return {
        'TTFT mean (ms)': metrics['time_to_first_token_ms']['successful']['mean'],
        'ITL mean (ms)': metrics['inter_token_latency_ms']['successful']['mean'],
        'output tokens/s': metrics['output_tokens_per_second']['successful']['mean'],
        'completed': len(records),
        'failed': failed,
        'output tokens': metrics['output_token_count']['successful']['total_sum'],
        'one at a time': one_at_a_time([(t['request_start'], t['request_end']) for t in timings]),
        'body': json.loads(records[0]['request_args'])['body'],
        'CPU s': _children_cpu() - cpu,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------- lagent


def lagent_engine(url: str, model: str) -> OpenAICompatible:
    """The engine lagent measures with: raw prompts, and the same body fields as guidellm's requests."""
    return OpenAICompatible(url, model, meta_template=RAW_PROMPT, extra_body={'stream_options': STREAM_OPTIONS},
                            **SAMPLING)  # fmt: skip


def run_lagent(target: Target, texts: list[str], output_tokens: int, count_tokens: Callable[[str], int]) -> dict:
    requests = [BenchRequest([{'role': 'user', 'content': text}], output_tokens) for text in texts]

    async def measure() -> BenchRun:
        async with lagent_engine(target.url, target.model) as llm:
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
        'failed': [record.error for record in run.records if record.error is not None],
        'output tokens': summary.output_tokens,
        'events with text': sum(len(record.event_s) for record in run.records),
        'one at a time': one_at_a_time([(r.start_s, r.start_s + r.latency_s) for r in run.records]),
        'CPU s': cpu,
    }


def lagent_body(model: str, text: str, output_tokens: int) -> dict[str, Any]:
    """The body lagent sends for ``text``, as a server receives it (a recording server)."""
    bodies: list[dict[str, Any]] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        """Keeps each request's JSON body and answers with one streamed completion event."""

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
            bodies.append(body)
            event = {'id': 'rec', 'object': 'text_completion', 'created': 0, 'model': body.get('model'),
                     'choices': [{'index': 0, 'text': 'ok', 'logprobs': None, 'finish_reason': 'length'}]}  # fmt: skip
            payload = f'data: {json.dumps(event)}\n\ndata: [DONE]\n\n'.encode()
            self.send_response(200)
            self.send_header('Content-Type', 'text/event-stream')
            self.send_header('Content-Length', str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    requests = [BenchRequest([{'role': 'user', 'content': text}], output_tokens)]

    async def send(url: str) -> BenchRun:
        async with lagent_engine(url, model) as llm:
            return await run_benchmark(llm, requests)

    with serve_in_thread(Recorder, 'request recorder') as url:
        run = asyncio.run(send(url))
    assert run.records[0].error is None, run.records[0].error
    return bodies[0]


# ---------------------------------------------------------------------- servers


def raise_priority(pid: int, nice: int) -> str:
    """Run process ``pid`` ahead of the rest of the machine, and say how (or why not).

    Every thread's nice value is set; where the kernel schedules by autogroup,
    that only ranks the threads within their group, so the nice value of the
    process's autogroup is set too (for a server started in a session of its
    own, a group it has to itself).
    """
    try:
        for thread in (Path('/proc') / str(pid) / 'task').iterdir():  # Linux: a thread's nice value is its own
            os.setpriority(os.PRIO_PROCESS, int(thread.name), nice)
        how = f'its threads at nice {nice}'
        if Path('/proc/sys/kernel/sched_autogroup_enabled').read_text().strip() == '1':
            (Path('/proc') / str(pid) / 'autogroup').write_text(str(nice))
            how += f', its autogroup at nice {nice}'
    except PermissionError:
        return 'normal priority (raising it needs root or CAP_SYS_NICE): expect the other load to show in the figures'
    return how


@contextlib.contextmanager
def llamacpp(scratch: Path, threads: int) -> Iterator[Target]:
    """The real llama.cpp server, its model locked in memory (another tool's start-up cannot push it out of
    the page cache), at a raised CPU priority."""
    log, port = scratch / 'server.log', free_port()
    command = llama_cpp_server_command(smollm2_gguf_path(), model_name=MODEL, host='127.0.0.1', port=port,
                                       n_threads=threads, server_cfg={'use_mlock': True})  # fmt: skip
    with ServerProcess(command, port=port, name='llama_cpp.server', log_path=log, ready_timeout=300) as server:
        assert server.pid is not None
        priority = raise_priority(server.pid, SERVER_NICE)
        with OpenAICompatible(server.url, MODEL, temperature=0, max_new_tokens=8) as llm:
            llm.generate('Hello')  # warm up
        yield Target(f'llama.cpp server (python -m llama_cpp.server), SmolLM2-135M on the CPU, {threads} '
                     f'thread{"s" if threads > 1 else ""}, {priority}', server.url, MODEL, log)  # fmt: skip


@contextlib.contextmanager
def paced(output_tokens: int, ttft_s: float, itl_s: float) -> Iterator[Target]:
    """The chaos server without faults, sending an event every ``itl_s`` seconds (and reporting usage)."""
    with chaos_server() as server:
        server.plan(tokens=[f' w{i}' for i in range(output_tokens)], delay=itl_s, first_delay=ttft_s)
        yield Target(f'paced server (real HTTP and OpenAI SSE; {ttft_s * 1000:.0f} ms to the first event, then one '
                     f'every {itl_s * 1000:.0f} ms)', server.url, 'chaos')  # fmt: skip


# ---------------------------------------------------------------------- main


def compare(target: Target, guidellm: Path, texts: list[str], args: argparse.Namespace,
            count_tokens: Callable[[str], int], scratch: Path) -> tuple[bool, dict]:  # fmt: skip
    data = scratch / 'prompts.jsonl'
    data.write_text(''.join(json.dumps({'prompt': text}) + '\n' for text in texts), encoding='utf-8')
    rounds: dict[str, list[dict]] = {'lagent': [], 'guidellm': []}
    # untimed: first-time set-up in this process done, and the server left as every round leaves it (last prompt)
    run_lagent(target, texts[-1:], args.output_tokens, count_tokens)
    print(f'\n{target.name}\n{args.requests} requests of {args.output_tokens} tokens, one at a time', flush=True)
    for index in range(args.rounds):
        started = time.monotonic()
        rounds['lagent'].append(_timed(target, partial(run_lagent, target, texts, args.output_tokens, count_tokens)))
        out = scratch / f'guidellm-{index}.json'
        measure = partial(run_guidellm, guidellm, target, data, args.requests, args.output_tokens, out)
        rounds['guidellm'].append(_timed(target, measure))
        print(f'  round {index + 1}/{args.rounds} ({time.monotonic() - started:.0f}s, load {os.getloadavg()[0]:.1f}): '
              f'lagent {_short(rounds["lagent"][-1])} | guidellm {_short(rounds["guidellm"][-1])}', flush=True)  # fmt: skip
    ours_body = lagent_body(target.model, texts[0], args.output_tokens)
    theirs_body = rounds['guidellm'][0]['body']
    same_body = ours_body == theirs_body
    print(f'  same request body: {"yes" if same_body else "NO"} {json.dumps(ours_body, sort_keys=True)}')
    if not same_body:
        print(f'  guidellm sent {json.dumps(theirs_body, sort_keys=True)}')
    serial = all(r['one at a time'] for runs in rounds.values() for r in runs)
    print(f'  one request at a time, every round of both tools: {"yes" if serial else "NO"}')
    names = (*METRICS, 'CPU s')
    medians = {
        tool: {name: statistics.median(r[name] for r in runs) for name in names} for tool, runs in rounds.items()
    }
    print(f'  medians of {args.rounds} rounds')
    print(f'  {"metric":<18}{"lagent bench":>14}{"guidellm":>12}{"ratio":>8}')
    ok = same_body and serial
    for name in names:
        ours, theirs = medians['lagent'][name], medians['guidellm'][name]
        ratio = ours / theirs
        verdict = ('ok' if abs(ratio - 1) <= 0.10 else 'MISSED') if name in METRICS else '(not a target)'
        ok &= name not in METRICS or abs(ratio - 1) <= 0.10
        print(f'  {name:<18}{ours:>14.2f}{theirs:>12.2f}{ratio:>8.3f}   {verdict}')
    if target.log is not None:
        # what each tool measured against the server's own clock during that tool's rounds
        clock = {
            tool: {key: statistics.median(r[key] for r in runs) for key in ('server prompt ms', 'server ms/token')}
            for tool, runs in rounds.items()
        }
        beyond = {
            tool: statistics.median(r['TTFT mean (ms)'] - r['server prompt ms'] for r in runs)
            for tool, runs in rounds.items()
        }
        own = {
            tool: statistics.median(r['ITL mean (ms)'] / r['server ms/token'] for r in runs)
            for tool, runs in rounds.items()
        }
        print("  llama.cpp's own clock during each tool's rounds (medians):")
        print(f"    prompt evaluation per request: lagent's {clock['lagent']['server prompt ms']:.1f} ms, "
              f"guidellm's {clock['guidellm']['server prompt ms']:.1f} ms")  # fmt: skip
        print(f"    time per generated token: lagent's {clock['lagent']['server ms/token']:.1f} ms, "
              f"guidellm's {clock['guidellm']['server ms/token']:.1f} ms")  # fmt: skip
        print(f"  TTFT beyond the server's prompt evaluation: lagent {beyond['lagent']:.1f} ms, "
              f"guidellm {beyond['guidellm']:.1f} ms")  # fmt: skip
        print(f"  ITL / the server's own time per token: lagent {own['lagent']:.3f}, guidellm {own['guidellm']:.3f}, "
              f"ratio {own['lagent'] / own['guidellm']:.3f}")  # fmt: skip
        medians['server clock'] = {'medians': clock, 'TTFT beyond prompt ms': beyond, 'ITL per server ms': own}
    for tool, runs in rounds.items():
        completed = [r['completed'] for r in runs]
        failures = [failure for r in runs for failure in r['failed']]
        print(f'  {tool} requests completed per round: {completed}'
              + (f'; failed: {failures}' if failures else ''))  # fmt: skip
    tokens = [r['output tokens'] for r in rounds['lagent']], [r['output tokens'] for r in rounds['guidellm']]
    events = [r['events with text'] for r in rounds['lagent']]
    print(f'  output tokens per round: lagent {tokens[0]} (tokenizer; {events} events with text), '
          f'guidellm {tokens[1]} (events)')  # fmt: skip
    return ok, {'server': target.name, 'rounds': rounds, 'medians': medians, 'body': ours_body}


def _timed(target: Target, measure: Callable[[], dict]) -> dict:
    """``measure()``, with what the server's own clock said while it ran (llama.cpp only): its milliseconds per
    generated token after the first, and its mean milliseconds evaluating a prompt (the bulk of a TTFT)."""
    before = target.server_clock()
    result = measure()
    after = target.server_clock()
    spent = {key: after[key] - before[key] for key in after}
    if spent['eval tokens'] and spent['prompts']:
        result['server ms/token'] = spent['eval ms'] / spent['eval tokens']
        result['server prompt ms'] = spent['prompt ms'] / spent['prompts']
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--requests', type=int, default=8, help='requests per round')
    parser.add_argument('--output-tokens', type=int, default=48, help='max_tokens of every request')
    parser.add_argument('--rounds', type=int, default=9, help='rounds of each tool, alternating')
    parser.add_argument('--servers', nargs='+', default=['llamacpp', 'paced'], choices=['llamacpp', 'paced'])
    parser.add_argument('--server-threads', type=int, default=1, help="llama.cpp's threads (--n_threads)")
    parser.add_argument('--venv', type=Path, default=ROOT / '.venv-guidellm', help="guidellm's own virtualenv")
    parser.add_argument('--json', metavar='OUT', help='write every round and the medians')
    args = parser.parse_args()

    guidellm = ensure_guidellm(args.venv)
    count_tokens = token_counter(smollm2_gguf_path())
    texts = prompts(args.requests)
    results, all_ok = [], True
    print(f'load average at the start: {" ".join(f"{x:.1f}" for x in os.getloadavg())} ({os.cpu_count()} cores)')
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for name in args.servers:
            server = (
                llamacpp(scratch, args.server_threads) if name == 'llamacpp' else paced(args.output_tokens, 0.1, 0.02)
            )
            with server as target:
                ok, result = compare(target, guidellm, texts, args, count_tokens, scratch)
            all_ok &= ok
            results.append(result)
    print(f'\nload average at the end: {" ".join(f"{x:.1f}" for x in os.getloadavg())} ({os.cpu_count()} cores)')
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + '\n')
    return 0 if all_ok else 1


def _short(result: dict) -> str:
    return ', '.join(f'{name} {result[name]:.1f}' for name in METRICS)


if __name__ == '__main__':
    sys.exit(main())
