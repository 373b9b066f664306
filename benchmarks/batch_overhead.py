"""What running an agent as a batch costs: ``run_batch`` on worker threads and on a
real two-node Ray cluster, against the same agent called in a plain loop.

Every task is a one-turn ``FunctionCallAgent`` run on ``ScriptedLLM`` (no model),
whose reply waits ``--delay-ms`` first: 0 measures pure orchestration (task
hand-out, result transport, one JSON line written and flushed per task), a
delay stands in for model time and shows how the workers overlap it.

* ``loop``: one agent, ``agent.reset(); agent.chat(question)`` per task, nothing
  written — the peer every other row is compared to;
* ``threads`` / ``ray`` with 1 and 2 workers: ``run_batch`` into a fresh results file.

Reported per row: tasks/s over the whole run (workers starting included),
steady tasks/s (first result to last), and the overhead per task against the
loop (each worker's time per task in the steady state, less the loop's time
per task). Each number is the median of ``--repeats`` runs. The Ray
cluster (``ray start --head`` + one ``ray start --address`` node, 1 CPU each)
comes from ``tests/fixtures/ray_cluster.py`` and is stopped afterwards.

Run: ``python benchmarks/batch_overhead.py [--tasks 300] [--delay-ms 0 20] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the cluster and engine live in tests/

from lagent.distributed import AgentConfig, run_batch
from tests.distributed.workloads import QuestionEngine
from tests.fixtures.ray_cluster import ray_cluster


def task_list(count: int) -> list[dict[str, object]]:
    return [{'id': index, 'question': f'question {index}'} for index in range(count)]


def run_loop(config: AgentConfig, count: int) -> tuple[float, float]:
    agent = config.build()
    try:
        started = time.perf_counter()
        for task in task_list(count):
            agent.reset()
            agent.chat(str(task['question']))
        seconds = time.perf_counter() - started
    finally:
        agent.llm.close()
    return count / seconds, count / seconds


def run_pool(config: AgentConfig, count: int, workers: int, ray: str | None, workdir: Path) -> tuple[float, float]:
    arrivals: list[float] = []
    with tempfile.NamedTemporaryFile(dir=workdir, suffix='.jsonl', delete=False) as out:
        path = out.name
    started = time.perf_counter()
    summary = run_batch(
        config,
        task_list(count),
        path,
        workers=workers,
        ray=ray,
        on_result=lambda outcome: arrivals.append(time.perf_counter()),
    )
    seconds = time.perf_counter() - started
    assert summary.done == count and not summary.failed, summary
    steady = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    return count / seconds, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--tasks', type=int, default=300)
    parser.add_argument('--delay-ms', type=float, nargs='+', default=[0.0, 20.0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--no-ray', action='store_true', help='threads only')
    args = parser.parse_args()

    import contextlib

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        address = None
        if not args.no_ray:
            import ray

            cluster = stack.enter_context(ray_cluster([(1, 0), (1, 0)]))
            ray.init(address=cluster.address, logging_level='WARNING', log_to_driver=False)
            stack.callback(ray.shutdown)
            address = cluster.address
        print(
            f'{args.tasks} tasks per run, median of {args.repeats} runs (a busy shared machine: compare rows, not runs)'
        )
        for delay_ms in args.delay_ms:
            config = AgentConfig(llm=QuestionEngine(workdir, delay_s=delay_ms / 1000), options={'max_turn': 1})
            rows: list[tuple[str, float, float]] = []
            plans = [('loop', None, 1), ('threads', None, 1), ('threads', None, 2)]
            if address:
                plans += [('ray', address, 1), ('ray', address, 2)]
            for name, ray_address, workers in plans:
                measured = []
                for _ in range(args.repeats):
                    if name == 'loop':
                        measured.append(run_loop(config, args.tasks))
                    else:
                        measured.append(run_pool(config, args.tasks, workers, ray_address, workdir))
                label = name if name == 'loop' else f'{name}, {workers} worker{"s" if workers > 1 else ""}'
                rows.append(
                    (label, statistics.median(m[0] for m in measured), statistics.median(m[1] for m in measured))
                )
            loop_rate = rows[0][2]
            print(f'\nreply delay {delay_ms:g} ms')
            print(f'{"":<20}{"tasks/s":>10}{"steady":>10}{"x loop":>9}{"overhead/task":>16}')
            for (label, whole, steady), (_, _, workers) in zip(rows, plans, strict=True):
                overhead_ms = (workers / steady - 1 / loop_rate) * 1000  # worker time per task, beyond the loop's
                print(f'{label:<20}{whole:>10.1f}{steady:>10.1f}{steady / loop_rate:>9.2f}{overhead_ms:>13.2f} ms')


if __name__ == '__main__':
    main()
