"""``AgentWorker``: builds an agent once and runs tasks on it one at a time.

The same class runs in a thread of the driver and, wrapped by Ray, as an actor.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from lagent.agents.base import BaseAgent
from lagent.distributed.agent_config import AgentConfig
from lagent.distributed.tasks import Task, TaskId

__all__ = ['AgentWorker', 'TaskOutcome']

logger = logging.getLogger(__name__)


@dataclass
class TaskOutcome:
    """What one attempt at a task gave: a result record, or the error it raised."""

    id: TaskId
    """The task's id."""
    record: dict[str, Any] | None = None
    """The line written to the results file (``None`` on error)."""
    error: str | None = None
    """``'ErrorType: message'`` when the agent raised (``None`` on success)."""


class AgentWorker:
    """Runs tasks one at a time with an agent built once from an :class:`AgentConfig`.

    Args:
        config: How to build the agent.
        slot: The worker's number in its batch (recorded with each result).
    """

    def __init__(self, config: AgentConfig, slot: int):
        self.config = config
        self.slot = slot
        self.agent: BaseAgent | None = None

    def node(self) -> str:
        """The machine this worker runs on (recorded with each result)."""
        return socket.gethostname()

    def start(self) -> dict[str, Any]:
        """Build the agent (the engine is built here, once); return who this worker is.

        Raises:
            Exception: Whatever building the engine or the agent raised.
        """
        self.agent = self.config.build()
        return self.identity()

    def identity(self) -> dict[str, Any]:
        """The worker's slot, node and process id."""
        return {'slot': self.slot, 'node': self.node(), 'pid': os.getpid()}

    def run(self, task: Task) -> TaskOutcome:
        """Answer one task with a fresh conversation.

        Returns:
            The result record (the task's id and question, the
            :class:`~lagent.agents.AgentResult` fields ``answer``, ``status`` and
            ``steps``, the worker and the seconds it took), or the error the
            agent raised. Never raises for a failed task.
        """
        if self.agent is None:
            raise RuntimeError('the worker was not started')
        self.agent.reset()
        started = time.perf_counter()
        try:
            result = self.agent.chat(task.question)
        except Exception as exc:
            logger.warning('task %r failed: %s: %s', task.id, type(exc).__name__, exc)
            return TaskOutcome(id=task.id, error=f'{type(exc).__name__}: {exc}')
        record = {
            'id': task.id,
            'question': task.question,
            **result.model_dump(mode='json'),
            'worker': self.identity(),
            'seconds': round(time.perf_counter() - started, 6),
        }
        return TaskOutcome(id=task.id, record=record)

    def close(self) -> None:
        """Close the agent's engine and tools."""
        agent, self.agent = self.agent, None
        if agent is not None:
            try:
                agent.executor.close()
            finally:
                agent.llm.close()
