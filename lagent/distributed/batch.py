"""``run_batch``: an agent over a file of tasks, on worker threads or Ray actors,
each result written exactly once.

The driver (this process) is the only writer of the results file: a worker
returns its result and the driver appends it, so a task whose worker dies
before answering is simply run again elsewhere, and a result can never be
written twice. Each worker runs one task at a time.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lagent.distributed.agent_config import AgentConfig
from lagent.distributed.pools import ThreadPool, WorkerLost, WorkerPool
from lagent.distributed.ray_pool import RayOptions, RayPool
from lagent.distributed.results import ResultsFile
from lagent.distributed.tasks import Task, TaskId, TasksLike, load_tasks
from lagent.distributed.worker import TaskOutcome

__all__ = ['BatchSummary', 'run_batch']

logger = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    """What a batch run did."""

    total: int
    """Tasks given."""
    skipped: int
    """Tasks whose result was already in the results file (not run again)."""
    done: int
    """Results written by this run."""
    failed: dict[TaskId, str] = field(default_factory=dict)
    """Tasks without a result, with the reason: the agent's error, or the worker
    lost ``max_attempts`` times. Running the batch again retries them."""
    retried: int = 0
    """Attempts started again because their worker was lost mid-task."""
    workers_lost: int = 0
    """Workers that died (each one that died mid-task is replaced)."""
    seconds: float = 0.0
    """Wall-clock time of the run."""


def run_batch(
    agent: AgentConfig,
    tasks: TasksLike,
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    ray: RayOptions | str | bool | None = None,
    max_attempts: int = 3,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[TaskOutcome], None] | None = None,
) -> BatchSummary:
    """Run an agent on every task not yet in ``out``, appending each result as soon as it is done.

    Args:
        agent: How each worker builds its agent (once per worker).
        tasks: A JSONL file of ``{"id": ..., "question": ...}`` lines, or the tasks.
        out: The results file (JSONL, one result a line, see
            :meth:`AgentWorker.run <lagent.distributed.worker.AgentWorker.run>`);
            ids already in it are skipped, so an interrupted run resumes.
        workers: How many tasks run at once (one per worker).
        ray: Run the workers as Ray actors: :class:`RayOptions`, a cluster address,
            or ``True`` for a local Ray instance. ``None``: threads of this process.
        max_attempts: Times a task is started before it counts as failed when its
            worker keeps dying under it (a task whose agent raises is not retried
            in the run).
        on_start: Called once, before any task runs, with the number of tasks
            to run (those not yet in ``out``).
        on_result: Called in this thread with each task's outcome (success or
            failure) as it arrives.

    Returns:
        The counts of the run, and the tasks that failed.

    Raises:
        ValueError: Bad tasks, a results file with lines that are not results or
            another batch writing it, or a worker count below 1.
        MissingExtraError: ``ray`` was asked for and is not installed.
        Exception: What building the engine or the agent raised in a worker.
    """
    if workers < 1:
        raise ValueError(f'workers must be at least 1, got {workers}')
    if max_attempts < 1:
        raise ValueError(f'max_attempts must be at least 1, got {max_attempts}')
    started = time.perf_counter()
    task_list = load_tasks(tasks)
    with ResultsFile(out) as results:
        todo = [task for task in task_list if task.id not in results.done_ids]
        summary = BatchSummary(total=len(task_list), skipped=len(task_list) - len(todo), done=0)
        if on_start is not None:
            on_start(len(todo))
        if todo:
            pool = _pool(agent, ray)
            scheduler = _Scheduler(pool, results, summary, max_attempts, on_result)
            try:
                scheduler.run(todo, min(workers, len(todo)))
            except BaseException:
                pool.close(wait=False)
                raise
            pool.close(wait=True)
    summary.seconds = time.perf_counter() - started
    return summary


def _pool(agent: AgentConfig, ray: RayOptions | str | bool | None) -> WorkerPool:
    if ray is None or ray is False:
        return ThreadPool(agent)
    if ray is True:
        options = RayOptions()
    elif isinstance(ray, str):
        options = RayOptions(address=ray)
    else:
        options = ray
    return RayPool(agent, options)


class _Scheduler:
    """Hands tasks to idle workers, writes results, and sends a lost worker's task elsewhere."""

    def __init__(
        self,
        pool: WorkerPool,
        results: ResultsFile,
        summary: BatchSummary,
        max_attempts: int,
        on_result: Callable[[TaskOutcome], None] | None,
    ):
        self.pool = pool
        self.results = results
        self.summary = summary
        self.max_attempts = max_attempts
        self.on_result = on_result
        self.attempts: Counter[TaskId] = Counter()
        self.in_flight: dict[Any, tuple[Any, Task | None]] = {}  # future -> (worker, task; None while starting)
        self.slots = 0

    def run(self, todo: list[Task], workers: int) -> None:
        pending = deque(todo)
        idle: list[Any] = []
        for _ in range(workers):
            self._spawn()
        while pending or any(task is not None for _, task in self.in_flight.values()):
            while idle and pending:
                task, worker = pending.popleft(), idle.pop()
                self.attempts[task.id] += 1
                self.in_flight[self.pool.submit(worker, task)] = (worker, task)
            if not self.in_flight:
                break  # every worker is gone
            for future in self.pool.wait(list(self.in_flight)):
                worker, task = self.in_flight.pop(future)
                try:
                    value = self.pool.result(future)
                except WorkerLost as exc:
                    self._lost(worker, task, exc, pending)
                    continue
                idle.append(worker)
                if task is not None:
                    self._finish(value)
        for task in pending:
            self._fail(task.id, 'no worker was left to run it')

    def _spawn(self) -> None:
        worker, started = self.pool.spawn(self.slots)
        self.slots += 1
        self.in_flight[started] = (worker, None)

    def _lost(self, worker: Any, task: Task | None, exc: WorkerLost, pending: deque[Task]) -> None:
        self.pool.discard(worker)
        self.summary.workers_lost += 1
        if task is None:
            logger.warning('a worker died while starting (not replaced): %s', exc)
            return
        tries = self.attempts[task.id]
        if tries < self.max_attempts:
            logger.warning('worker lost during task %r (%s); running it again elsewhere', task.id, exc)
            self.summary.retried += 1
            pending.appendleft(task)
        else:
            self._fail(task.id, f'its worker was lost on each of {tries} attempts; last: {exc}')
        if pending:
            self._spawn()

    def _finish(self, outcome: TaskOutcome) -> None:
        if outcome.record is None:
            self.summary.failed[outcome.id] = outcome.error or 'failed'
        else:
            self.results.write(outcome.record)
            self.summary.done += 1
        if self.on_result is not None:
            self.on_result(outcome)

    def _fail(self, task_id: TaskId, reason: str) -> None:
        logger.warning('task %r failed: %s', task_id, reason)
        self._finish(TaskOutcome(id=task_id, error=reason))
