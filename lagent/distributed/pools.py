"""Where a batch's workers run: threads of this process, or Ray actors
(:mod:`lagent.distributed.ray_pool`). The scheduler in
:mod:`lagent.distributed.batch` sees only this interface."""

from __future__ import annotations

import concurrent.futures
import copy
from collections.abc import Collection
from typing import Any, Protocol

from lagent.distributed.agent_config import AgentConfig
from lagent.distributed.tasks import Task
from lagent.distributed.worker import AgentWorker

__all__ = ['ThreadPool', 'WorkerLost', 'WorkerPool']


class WorkerLost(Exception):
    """A worker died (its process was killed, its node went away); its task did not finish."""


class WorkerPool(Protocol):
    """Starts workers and runs one task at a time on each; everything returns futures."""

    def spawn(self, slot: int) -> tuple[Any, Any]:
        """Start a worker; return its handle and a future of its :meth:`AgentWorker.start`."""

    def submit(self, worker: Any, task: Task) -> Any:
        """Run a task on an idle worker; return a future of its :class:`TaskOutcome`."""

    def wait(self, futures: Collection[Any]) -> list[Any]:
        """Block until at least one of ``futures`` is done; return those that are."""

    def result(self, future: Any) -> Any:
        """The value of a done future.

        Raises:
            WorkerLost: The worker died before answering.
            Exception: What the worker's method raised.
        """

    def discard(self, worker: Any) -> None:
        """Forget a worker that died."""

    def close(self, *, wait: bool) -> None:
        """Close every worker's agent and stop the workers (``wait``: for running tasks too)."""


class ThreadPool:
    """Workers as threads of this process, one thread each; each worker gets its own
    deep copy of the config, so workers share no engine, tools or memory."""

    def __init__(self, config: AgentConfig):
        self.config = config
        self._workers: list[tuple[concurrent.futures.ThreadPoolExecutor, AgentWorker]] = []

    def spawn(self, slot: int) -> tuple[Any, Any]:
        thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f'lagent-batch-{slot}')
        worker = AgentWorker(copy.deepcopy(self.config), slot)
        self._workers.append((thread, worker))
        return (thread, worker), thread.submit(worker.start)

    def submit(self, worker: Any, task: Task) -> Any:
        thread, agent_worker = worker
        return thread.submit(agent_worker.run, task)

    def wait(self, futures: Collection[Any]) -> list[Any]:
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
        return list(done)

    def result(self, future: Any) -> Any:
        return future.result()

    def discard(self, worker: Any) -> None:
        """Nothing to do: a thread worker is never lost (a failed task raises in it)."""

    def close(self, *, wait: bool) -> None:
        # Each thread runs at most one task at a time, so close runs right after it.
        for thread, worker in self._workers:
            thread.submit(worker.close)
            thread.shutdown(wait=wait)
        self._workers.clear()
