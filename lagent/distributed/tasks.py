"""The tasks of a batch: one ``{"id": ..., "question": ...}`` JSON object a line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

__all__ = ['Task', 'TaskId', 'TasksLike', 'check_task_id', 'load_tasks']

TaskId = Union[str, int]
"""A task id: a JSON string or integer, unique within a batch."""


@dataclass(frozen=True)
class Task:
    """One question for the agent."""

    id: TaskId
    """Names the task in the results; unique within a batch."""
    question: str
    """The user message the agent answers."""


TasksLike = Union[str, 'os.PathLike[str]', Iterable[Union[Task, Mapping[str, Any]]]]
"""Tasks for a batch: the path of a JSONL file, or tasks (or mappings with
``id`` and ``question``) in order."""


def check_task_id(value: Any, where: str) -> TaskId:
    """Return ``value`` if it can be a task id (a string or an integer, not a bool).

    Raises:
        ValueError: It cannot; the message starts with ``where``.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f'{where}: "id" must be a string or an integer, got {json.dumps(value)}')
    return value


def load_tasks(tasks: TasksLike) -> list[Task]:
    """Read and check the tasks of a batch.

    Args:
        tasks: The path of a JSONL file (one JSON object with ``id`` and
            ``question`` a line; blank lines are skipped; other keys are
            ignored), or tasks given directly.

    Returns:
        The tasks, in order.

    Raises:
        ValueError: A line that is not a JSON object, a missing or malformed
            ``id`` or ``question``, or an id used twice (named with its line or
            position).
        OSError: The file cannot be read.
    """
    if isinstance(tasks, (str, os.PathLike)):
        name = os.fspath(tasks)
        with open(tasks, encoding='utf-8') as file:
            items = list(_parse_lines(file, name))
    else:
        items = [(f'task {index + 1}', item) for index, item in enumerate(tasks)]
    result: list[Task] = []
    seen: dict[TaskId, str] = {}
    for where, item in items:
        task = _as_task(item, where)
        if task.id in seen:
            raise ValueError(f'{where}: id {json.dumps(task.id)} is used twice (first at {seen[task.id]})')
        seen[task.id] = where
        result.append(task)
    return result


def _parse_lines(lines: Iterable[str], name: str) -> Iterable[tuple[str, Any]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f'{name}:{number}'
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f'{where}: not valid JSON ({exc.msg})') from None


def _as_task(item: Any, where: str) -> Task:
    if isinstance(item, Task):
        check_task_id(item.id, where)
        if not isinstance(item.question, str):
            raise ValueError(f'{where}: "question" must be a string')
        return item
    if not isinstance(item, Mapping):
        raise ValueError(f'{where}: a task must be a JSON object with "id" and "question"')
    if 'id' not in item:
        raise ValueError(f'{where}: the task has no "id"')
    question = item.get('question')
    if not isinstance(question, str):
        raise ValueError(f'{where}: "question" must be a string, got {json.dumps(question)}')
    return Task(id=check_task_id(item['id'], where), question=question)
