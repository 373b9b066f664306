"""Agent runs and conversations read from files, and the filters that choose which to learn from.

A file holds one or more conversations in one of these forms:

* an agent memory saved by :meth:`lagent.agents.AgentMemory.save`
  (``{"version": 1, "messages": [...]}``);
* a conversation record: ``{"messages": [...], "tools": [...], "status": ...}``
  (``tools`` and ``status`` optional);
* a list of messages (one conversation), or a list of records;
* JSON Lines (``.jsonl``): one record, memory or list of messages per line.

Messages are in the OpenAI format (tool calls and ``tool`` messages
included). ``status`` is how the run ended: an
:class:`~lagent.schema.AgentStatusCode` name or value (``"END"``, ``0``,
``"SESSION_OUT_OF_LIMIT"``...) or ``"success"``/``"ok"``/``"failed"``/``"error"``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from lagent.agents.memory import AgentMemory
from lagent.prompts import normalize_messages
from lagent.schema import AgentStatusCode, Message

__all__ = ['SUCCESS_STATUSES', 'Trajectory', 'TrajectoryFilter', 'load_trajectories', 'read_trajectories']

SUCCESS_STATUSES = frozenset({'END', 'SUCCESS', 'OK'})
"""Recorded statuses (upper-cased) of a run that ended well."""


@dataclass
class Trajectory:
    """One conversation to learn from.

    Attributes:
        messages: The conversation.
        tools: Tool schemas (OpenAI format) the conversation could call, if any.
        status: How the run ended, upper-cased (see the module docstring); ``None`` if not recorded.
        source: Where it was read (``file`` or ``file:line``).
    """

    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    status: str | None = None
    source: str = ''

    @property
    def failed(self) -> bool:
        """Whether the run failed: its recorded status is not a success, or it does
        not end with an assistant's answer (text and no tool calls pending)."""
        if self.status is not None and self.status not in SUCCESS_STATUSES:
            return True
        last = self.messages[-1] if self.messages else None
        return last is None or last.role != 'assistant' or bool(last.tool_calls) or not last.text.strip()

    def to_openai(self) -> list[dict[str, Any]]:
        """The messages as OpenAI dicts."""
        return [message.to_openai() for message in self.messages]

    def fingerprint(self) -> str:
        """A digest of the messages and tools: equal conversations have equal fingerprints."""
        canonical = json.dumps([self.to_openai(), self.tools or []], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode('utf-8')).hexdigest()


def read_trajectories(path: str | os.PathLike[str]) -> Iterator[Trajectory]:
    """Read the conversations of one file (see the module docstring for the forms).

    Raises:
        OSError: The file cannot be read.
        ValueError: A conversation is malformed; the message names the file (and line).
    """
    path = Path(path)
    name = os.fspath(path)
    if path.suffix.lower() == '.jsonl':
        with path.open(encoding='utf-8') as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield from _parse(_load_json(line, f'{name}:{number}'), f'{name}:{number}')
        return
    yield from _parse(_load_json(path.read_text(encoding='utf-8'), name), name)


def load_trajectories(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Trajectory]:
    """Read the conversations of several files, in order (see :func:`read_trajectories`)."""
    for path in paths:
        yield from read_trajectories(path)


def _load_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f'{where}: not valid JSON: {exc}') from None


def _parse(data: Any, where: str) -> Iterator[Trajectory]:
    if isinstance(data, list) and data and all(isinstance(item, Mapping) and 'role' in item for item in data):
        yield _trajectory({'messages': data}, where)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            if not isinstance(item, Mapping):
                raise ValueError(f'{where}[{index}]: expected a conversation record, got {type(item).__name__}')
            yield _trajectory(item, f'{where}[{index}]')
    elif isinstance(data, Mapping):
        yield _trajectory(data, where)
    else:
        raise ValueError(f'{where}: expected a conversation (a record, a memory or a list of messages)')


def _trajectory(record: Mapping[str, Any], where: str) -> Trajectory:
    if not isinstance(record.get('messages'), list) or not record['messages']:
        raise ValueError(f'{where}: a conversation record needs a non-empty "messages" list')
    try:
        if 'version' in record:  # a saved agent memory
            messages = AgentMemory.from_json(json.dumps(dict(record))).messages
        else:
            messages = cast('list[Message]', normalize_messages(record['messages'], allow_strings=False))
    except ValueError as exc:
        raise ValueError(f'{where}: {exc}') from None
    tools = record.get('tools')
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(tool, Mapping) for tool in tools)):
        raise ValueError(f'{where}: "tools" must be a list of tool schemas')
    return Trajectory(
        messages=messages,
        tools=[dict(tool) for tool in tools] if tools else None,
        status=_status_name(record.get('status'), where),
        source=where,
    )


def _status_name(status: Any, where: str) -> str | None:
    if status is None:
        return None
    if isinstance(status, bool) or not isinstance(status, (int, str)):
        raise ValueError(f'{where}: "status" must be a name or a number, got {status!r}')
    if isinstance(status, int):
        try:
            return AgentStatusCode(status).name
        except ValueError:
            raise ValueError(f'{where}: {status} is not an agent status code') from None
    return status.strip().upper()


@dataclass
class TrajectoryFilter:
    """Chooses the conversations to learn from, and counts what it left out.

    Args:
        statuses: Keep only runs whose recorded status is one of these (names,
            any case); runs without a status are left out too. ``None``: any status.
        drop_failed: Leave out failed runs (see :attr:`Trajectory.failed`).
        deduplicate: Keep the first of equal conversations (same messages and tools).
    """

    statuses: Collection[str] | None = None
    drop_failed: bool = False
    deduplicate: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    """How many were left out, by reason: ``'status'``, ``'failed'``, ``'duplicate'``."""
    _seen: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.statuses is not None:
            self.statuses = frozenset(str(status).strip().upper() for status in self.statuses)

    def __call__(self, trajectories: Iterable[Trajectory]) -> Iterator[Trajectory]:
        """Yield the trajectories that pass, in order."""
        for trajectory in trajectories:
            reason = self.reason_to_drop(trajectory)
            if reason is None:
                yield trajectory
            else:
                self.counts[reason] = self.counts.get(reason, 0) + 1

    def reason_to_drop(self, trajectory: Trajectory) -> str | None:
        """Why ``trajectory`` is left out (``None``: it is kept; a kept one counts for deduplication)."""
        if self.statuses is not None and trajectory.status not in self.statuses:
            return 'status'
        if self.drop_failed and trajectory.failed:
            return 'failed'
        if self.deduplicate:
            fingerprint = trajectory.fingerprint()
            if fingerprint in self._seen:
                return 'duplicate'
            self._seen.add(fingerprint)
        return None
