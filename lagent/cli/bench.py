"""``lagent bench``: latency and throughput of an engine under load."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from lagent.cli._common import build_engine, positive_int, rate
from lagent.llms.base import BaseLLM

__all__ = ['add_parser', 'run_bench']

T = TypeVar('T')

DEFAULT_LENGTH = 128
"""Synthetic prompt and reply length when no option sets it."""


def add_parser(commands: Any, engine: argparse.ArgumentParser) -> None:
    """Add the ``bench`` subcommand."""
    bench = commands.add_parser(
        'bench',
        parents=[engine],
        help='measure latency and throughput under load',
        description='Send a workload to the engine and report time to first token (TTFT), time per output token '
        '(TPOT), inter-token latency (ITL), throughput and errors.',
    )
    workload = bench.add_mutually_exclusive_group(required=True)
    workload.add_argument(
        '--dataset', metavar='FILE.jsonl', help='requests, one JSON object a line: "prompt" or "messages"'
    )
    workload.add_argument('--synthetic', action='store_true', help='random prompts of --input-len words')
    bench.add_argument(
        '--input-len', type=positive_int, help=f'synthetic prompt length in words, ~tokens (default: {DEFAULT_LENGTH})'
    )
    bench.add_argument(
        '--output-len',
        type=positive_int,
        help=f'synthetic max new tokens per request (default: --max-new-tokens if given, else {DEFAULT_LENGTH})',
    )
    bench.add_argument('--num-requests', type=positive_int, default=16, help='requests to send (default: %(default)s)')
    bench.add_argument(
        '--concurrency', type=positive_int, default=1, help='most requests in flight (default: %(default)s)'
    )
    bench.add_argument(
        '--request-rate',
        type=rate,
        default=math.inf,
        help='mean requests per second, Poisson arrivals; inf sends all at once (default: %(default)s)',
    )
    bench.add_argument(
        '--ignore-eos', action='store_true', help='generate the full output length (engines that support it)'
    )
    bench.add_argument(
        '--seed', type=int, default=0, help='seed of the synthetic prompts and arrivals (default: %(default)s)'
    )
    bench.add_argument(
        '--tokenizer',
        metavar='PATH',
        help='count output tokens with this tokenizer (a directory or a .gguf file) when the engine reports no usage',
    )
    bench.add_argument('--json', metavar='OUT', help='write the settings, summary and per-request records as JSON')
    bench.add_argument('--plot', metavar='OUT.png', help='save a latency/throughput figure (needs matplotlib)')
    bench.add_argument('--no-progress', action='store_true', help='no progress bar')
    bench.set_defaults(handler=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    """``lagent bench``: run the workload, print the summary, write the JSON and figure."""
    from lagent.bench import load_dataset, run_benchmark, summarize, synthetic_requests
    from lagent.bench.report import format_summary, plot_run, progress_bar, run_to_json, write_json

    input_len, output_len = workload_lengths(args)
    for path in (args.json, args.plot):  # fail before the run, not after it
        if path:
            check_writable(path)
    if args.plot:
        from lagent._optional import import_optional

        import_optional('matplotlib', package='matplotlib', extra='bench')
    if args.dataset:
        requests = load_dataset(args.dataset, limit=args.num_requests)
    else:
        requests = synthetic_requests(args.num_requests, input_len=input_len, output_len=output_len, seed=args.seed)
    gen_params = {'ignore_eos': True} if args.ignore_eos else {}
    count_tokens = None
    if args.tokenizer:
        from lagent.bench.tokens import token_counter

        count_tokens = token_counter(args.tokenizer)
    llm = build_engine(args)
    with progress_bar(len(requests), enabled=not args.no_progress) as advance:
        measuring = run_benchmark(
            llm,
            requests,
            concurrency=args.concurrency,
            request_rate=args.request_rate,
            seed=args.seed,
            on_record=advance,
            count_tokens=count_tokens,
            **gen_params,
        )
        run = asyncio.run(_closing(llm, measuring))
    summary = summarize(run.records, run.duration_s)
    sys.stdout.write(
        f'lagent bench: {type(llm).__name__}, {len(requests)} requests, concurrency {args.concurrency}, '
        f'request rate {args.request_rate}/s\n{format_summary(summary)}\n'
    )
    if args.json:
        settings = {
            'engine': type(llm).__name__,
            'workload': args.dataset or 'synthetic',
            'num_requests': len(requests),
            'concurrency': args.concurrency,
            'request_rate': args.request_rate,
            'seed': args.seed,
            'tokenizer': args.tokenizer,
            **({} if args.dataset else {'input_len': input_len, 'output_len': output_len}),
            **gen_params,
        }
        write_json(args.json, run_to_json(run, summary, settings))
    if args.plot:
        plot_run(args.plot, run, summary)
    if summary.completed == 0:
        first = next(record.error for record in run.records if record.error)
        sys.stderr.write(f'lagent: error: all {summary.num_requests} requests failed; first error: {first}\n')
        return 1
    return 0


def workload_lengths(args: argparse.Namespace) -> tuple[int, int]:
    """The synthetic prompt and reply lengths the options ask for.

    Raises:
        ValueError: Lengths given for a dataset (which has its own), or
            ``--output-len`` and ``--max-new-tokens`` that disagree.
    """
    if args.dataset:
        given = [
            option for option, value in (('--input-len', args.input_len), ('--output-len', args.output_len)) if value
        ]
        if given:
            verb = 'apply' if len(given) > 1 else 'applies'
            raise ValueError(f'{" and ".join(given)} {verb} to --synthetic only; a dataset sets its own lengths')
        return 0, 0
    if args.output_len and args.max_new_tokens and args.output_len != args.max_new_tokens:
        raise ValueError(
            f'--output-len {args.output_len} and --max-new-tokens {args.max_new_tokens} disagree; give one of them'
        )
    return args.input_len or DEFAULT_LENGTH, args.output_len or args.max_new_tokens or DEFAULT_LENGTH


def check_writable(path: str) -> None:
    """Check that an output file can be written, before a long run produces it.

    Raises:
        ValueError: The path is a directory, or its directory does not exist or is not writable.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path('.')
    if target.is_dir():
        raise ValueError(f'{path} is a directory; give a file name')
    if not folder.is_dir():
        raise ValueError(f'cannot write {path}: no directory {folder}')
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ValueError(f'cannot write {path}: permission denied')


async def _closing(llm: BaseLLM, work: Awaitable[T]) -> T:
    try:
        return await work
    finally:
        await llm.aclose()
