"""lagent 0.2's interactive Python tools, on the sandboxed interpreter of this package.

* :class:`IPythonInteractive` — one persistent session (an
  :class:`~lagent.actions.IPythonInterpreter` under lagent 0.2's name and
  call shape: ``run(command)``, ``exec(code) -> ExecutionResult``);
* :class:`IPythonInteractiveManager` — one session per ``session_id``, and
  batches of cells (``manager(commands, session_ids)``);
  :class:`BatchIPythonInterpreter` is the same under its other 0.2 name;
* :func:`extract_code` and :func:`escape_ansi`, the helpers 0.2 exported.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

from lagent.actions.base_action import BaseAction
from lagent.actions.ipython_interpreter import IPythonInterpreter
from lagent.actions.parser import BaseParser
from lagent.schema import ActionReturn, ActionStatusCode

__all__ = [
    'BatchIPythonInterpreter',
    'ExecutionResult',
    'IPythonInteractive',
    'IPythonInteractiveManager',
    'Status',
    'escape_ansi',
    'extract_code',
]

_FENCED = re.compile(r'```[^\n]*\n(.+?)```', re.S)
_TICKED = re.compile(r'`([^`]*)`')
_ANSI = re.compile(r'\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]')


class Status(str, Enum):
    """Whether a cell ran."""

    SUCCESS = 'success'
    FAILURE = 'failure'


@dataclass
class ExecutionResult:
    """What running one cell gave (lagent 0.2's shape)."""

    status: Status
    """Whether it ran."""
    value: str | None = None
    """Its output, on success."""
    msg: str | None = None
    """Why it failed."""


def extract_code(text: str) -> str:
    """The code in a model's message: the first ```fenced``` block, else the first
    `ticked` span, else a JSON object's ``"code"``, else the text itself."""
    fenced = _FENCED.search(text)
    if fenced:
        return fenced.group(1)
    ticked = _TICKED.search(text)
    if ticked:
        return ticked.group(1)
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text
    return value['code'] if isinstance(value, dict) and isinstance(value.get('code'), str) else text


def escape_ansi(line: str) -> str:
    """``line`` without ANSI escape sequences (terminal colours and cursor moves)."""
    return _ANSI.sub('', line)


class IPythonInteractive(IPythonInterpreter):
    """A persistent, sandboxed Python session under lagent 0.2's name and call shape.

    Args:
        timeout: Wall-clock seconds per cell.
        max_out_len: Characters kept of the output (negative: the interpreter's most).
        use_signals: Accepted for lagent 0.2 (the cell runs in a child process either way).
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a lagent 0.2 call reads its input.
        enable: Whether the action is offered to models.
        **options: Further options of :class:`~lagent.actions.PythonInterpreter`.
    """

    tool_methods = ('run',)

    def __init__(
        self,
        timeout: float = 20,
        max_out_len: int = 2048,
        use_signals: bool = True,
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] | None = None,
        enable: bool = True,
        **options: Any,
    ):
        if max_out_len >= 0:
            options.setdefault('max_output_chars', max_out_len)
        super().__init__(timeout=timeout, description=description, parser=parser, enable=enable, **options)

    def run(self, command: str, timeout: float | None = None) -> ActionReturn:
        """Run Python code in a persistent session and return what it printed and
        the value of its last expression. Variables, imports and functions defined
        in earlier calls are available.

        Args:
            command: The Python code.
            timeout: Seconds this cell may take (at most the session's own limit).
        """
        return super().run(extract_code(command), timeout)

    def exec(self, code: str) -> ExecutionResult:
        """Run a cell; return lagent 0.2's :class:`ExecutionResult`."""
        returned = self.run(code)
        if returned.state == ActionStatusCode.SUCCESS:
            return ExecutionResult(Status.SUCCESS, value=returned.format_result())
        return ExecutionResult(Status.FAILURE, msg=returned.errmsg)

    extract_code = staticmethod(extract_code)


class IPythonInteractiveManager(BaseAction):
    """One persistent sandboxed session per session id; cells of different
    sessions run in parallel, cells of one session in order.

    Args:
        max_num_workers: Most cells run at once (``None``: one per session of a batch).
        timeout: Wall-clock seconds per cell.
        max_out_len: Characters kept of each output.
        use_signals: Accepted for lagent 0.2.
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a lagent 0.2 call reads its input.
        enable: Whether the action is offered to models.
    """

    tool_methods = ('run',)

    def __init__(
        self,
        max_num_workers: int | None = None,
        timeout: float = 20,
        max_out_len: int = 8192,
        use_signals: bool = True,
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] | None = None,
        enable: bool = True,
    ):
        super().__init__(description, parser, enable)
        self.max_num_workers = max_num_workers
        self.timeout = timeout
        self.max_out_len = max_out_len
        self._sessions: dict[Any, IPythonInteractive] = {}
        self._lock = threading.Lock()

    def run(self, command: str, session_id: int = 0) -> ActionReturn:
        """Run Python code in session ``session_id`` (created on first use); variables persist per session.

        Args:
            command: The Python code.
            session_id: Which session to run it in.
        """
        return self._session(session_id).run(command)

    def __call__(  # type: ignore[override]
        self, commands: str | Sequence[str] | Mapping[str, Any], session_ids: Any = None
    ) -> ActionReturn | list[ActionReturn]:
        """Run one cell, or a batch: ``commands[i]`` in session ``session_ids[i]``
        (default: session ``i``); never raises.

        Returns:
            The result of one command, or the results of a batch in order.
        """
        if isinstance(commands, (str, Mapping)):
            return super().__call__(commands)
        commands = list(commands)
        ids = list(range(len(commands))) if session_ids is None else list(session_ids)
        if len(ids) != len(commands):
            raise ValueError(f'{len(commands)} commands but {len(ids)} session ids')
        by_session: dict[Any, list[int]] = {}
        for index, session in enumerate(ids):
            by_session.setdefault(session, []).append(index)
        results: list[ActionReturn | None] = [None] * len(commands)

        def run_session(indexes: list[int]) -> None:
            for index in indexes:
                results[index] = self.run(commands[index], ids[index])

        workers = self.max_num_workers or len(by_session) or 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run_session, by_session.values()))
        return [result for result in results if result is not None]

    def reset(self) -> None:
        """Forget every session's variables (the sessions restart on their next cell)."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.reset()

    def clear(self) -> None:
        """Stop every session."""
        self.close()

    def close(self) -> None:
        """Stop every session's process."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    def _session(self, session_id: Any) -> IPythonInteractive:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                session = IPythonInteractive(timeout=self.timeout, max_out_len=self.max_out_len)
                self._sessions[session_id] = session
            return session


class BatchIPythonInterpreter(IPythonInteractiveManager):
    """lagent 0.2's other name of :class:`IPythonInteractiveManager` (``interpreter(commands, indexes)``)."""
