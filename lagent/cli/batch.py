"""``lagent batch``: the agent of ``lagent agent`` over a file of tasks, on worker
threads or Ray actors (see :func:`lagent.distributed.run_batch`)."""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

from lagent.cli._common import engine_config, note, positive_int, say
from lagent.cli.agent import add_agent_options, make_tools

__all__ = ['add_parser', 'run_batch_command']


def add_parser(commands: Any, engine: argparse.ArgumentParser) -> None:
    """Add the ``batch`` subcommand."""
    batch = commands.add_parser(
        'batch',
        parents=[engine],
        help='run the agent over a file of tasks, on threads or a Ray cluster',
        description='Run the function-calling agent on every task of TASKS.jsonl ({"id": ..., "question": ...} '
        'a line) and append each result to RESULTS.jsonl as soon as it is done. Ids already in RESULTS.jsonl are '
        'skipped, so an interrupted run resumes; a task whose worker dies runs again on another worker.',
    )
    batch.add_argument('tasks', metavar='TASKS.jsonl', help='the tasks, one JSON object a line')
    batch.add_argument('--out', required=True, metavar='RESULTS.jsonl', help='the results file (appended to)')
    add_agent_options(batch)
    batch.add_argument(
        '--workers', type=positive_int, default=1, help='tasks run at once, one per worker (default: %(default)s)'
    )
    batch.add_argument(
        '--ray',
        nargs='?',
        const='',
        metavar='ADDRESS',
        help='run the workers as Ray actors on the cluster at ADDRESS (without ADDRESS: a local Ray instance, '
        'or the cluster RAY_ADDRESS names); needs the ray extra',
    )
    batch.add_argument(
        '--cpus-per-worker', type=float, default=1.0, help='CPUs each Ray worker reserves (default: %(default)s)'
    )
    batch.add_argument(
        '--gpus-per-worker',
        type=float,
        help='GPUs each Ray worker reserves (default: what the engine asks for: tp for lmdeploy engines, else 0)',
    )
    batch.add_argument(
        '--max-attempts',
        type=positive_int,
        default=3,
        help='times a task is started when its worker keeps dying under it (default: %(default)s)',
    )
    batch.add_argument('--no-progress', action='store_true', help='no progress bar')
    batch.set_defaults(handler=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    """``lagent batch``: run the batch, show progress, and report what failed."""
    from lagent.bench.report import progress_bar
    from lagent.distributed import AgentConfig, RayOptions, run_batch

    config = AgentConfig(llm=engine_config(args), tools=make_tools(args.tools), options={'max_turn': args.max_turn})
    ray = None
    if args.ray is not None:
        ray = RayOptions(address=args.ray or None, num_cpus=args.cpus_per_worker, num_gpus=args.gpus_per_worker)
    with contextlib.ExitStack() as stack:
        advance: list[Any] = []

        def start(count: int) -> None:
            advance.append(
                stack.enter_context(progress_bar(count, enabled=not args.no_progress and count > 0, unit='task'))
            )

        summary = run_batch(
            config,
            args.tasks,
            args.out,
            workers=args.workers,
            ray=ray,
            max_attempts=args.max_attempts,
            on_start=start,
            on_result=lambda outcome: advance[0](outcome),
        )
    say(
        f'lagent batch: {summary.total} tasks: {summary.done} done, {summary.skipped} already in {args.out}, '
        f'{len(summary.failed)} failed; {summary.retried} restarted after their worker was lost '
        f'({summary.workers_lost} worker{"" if summary.workers_lost == 1 else "s"} lost), {summary.seconds:.1f}s'
    )
    for task_id, reason in summary.failed.items():
        note(f'lagent: task {json.dumps(task_id)} failed: {reason}')
    return 1 if summary.failed else 0
