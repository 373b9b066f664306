"""Agents over batches of tasks, on worker threads or on a Ray cluster.

:func:`run_batch` runs an agent (built once per worker from an
:class:`AgentConfig`) over a JSONL file of ``{"id": ..., "question": ...}``
tasks and appends each result to a JSONL file as soon as it is done: each id
exactly once, ids already there skipped (an interrupted run resumes), and a
task whose worker dies retried on another worker. ``lagent batch`` is its
command line. Ray is optional (the ``ray`` extra) and imported only when
asked for.
"""

from lagent.distributed.agent_config import AgentConfig, gpus_needed
from lagent.distributed.batch import BatchSummary, run_batch
from lagent.distributed.ray_pool import RayOptions
from lagent.distributed.results import ResultsFile
from lagent.distributed.tasks import Task, load_tasks
from lagent.distributed.worker import AgentWorker, TaskOutcome

__all__ = [
    'AgentConfig',
    'AgentWorker',
    'BatchSummary',
    'RayOptions',
    'ResultsFile',
    'Task',
    'TaskOutcome',
    'gpus_needed',
    'load_tasks',
    'run_batch',
]
