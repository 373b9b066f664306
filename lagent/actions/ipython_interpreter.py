"""``IPythonInterpreter``: a Python session whose variables persist between calls."""

from __future__ import annotations

import dataclasses
import threading
import warnings
from typing import Any

from lagent.actions._sandbox import SandboxSession
from lagent.actions.python_interpreter import PythonInterpreter, format_outcome, unfence
from lagent.schema import ActionReturn, ActionStatusCode

__all__ = ['IPythonInterpreter']

_RESTARTED = 'The session was restarted: earlier variables, imports and files are gone.'


class IPythonInterpreter(PythonInterpreter):
    """Runs Python code in one long-lived sandbox, like the cells of a notebook.

    Variables, imports and functions persist from one call to the next. The
    sandbox is :class:`~lagent.actions.PythonInterpreter`'s (same options,
    namespaces, uid, rlimits and scrubbed environment), with these differences:

    * The wall-clock limit applies per call: on expiry the session is killed
      and the next call starts a new one (the result says so).
    * The CPU-time limit is a per-call *soft* limit the code could raise
      itself; the wall-clock limit is what bounds a call.
    * Processes a call starts are killed when the call ends.
    * The private ``/tmp`` (the working directory) lives as long as the session.

    The child is stopped by :meth:`close` (also on garbage collection and at
    interpreter exit) and restarted by :meth:`reset`. Calls are serialized.

    Args:
        user_data_dir: Accepted for code written for the original lagent, whose
            Jupyter kernel started in that directory; here the code starts in
            its private ``/tmp`` and reads host files by their path. Any value
            but ``None`` and ``'ENV'`` warns.
        work_dir: Accepted for the original's signature (where it saved images);
            any value but ``None`` warns.
        **options: The options of :class:`~lagent.actions.PythonInterpreter`
            (``timeout``, ``memory_mb``, ``cpu_seconds``, ``max_processes``,
            ``file_size_mb``, ``max_output_chars``, ``scratch_mb``, ``network``,
            ``python``, ``user``, ``answer_expr``, ...).
    """

    def __init__(self, *, user_data_dir: str | None = None, work_dir: str | None = None, **options: Any):
        super().__init__(**options)
        for keyword, value, ignored in (
            ('user_data_dir', user_data_dir, (None, 'ENV')),
            ('work_dir', work_dir, (None,)),
        ):
            if value not in ignored:
                warnings.warn(
                    f'IPythonInterpreter ignores {keyword}={value!r}: the code runs in a sandbox whose working '
                    'directory is its private /tmp; it reads host files by their path',
                    DeprecationWarning,
                    stacklevel=2,
                )
        self._session: SandboxSession | None = None
        self._lock = threading.Lock()

    def run(self, command: str, timeout: float | None = None) -> ActionReturn:
        """Run Python code in a persistent session and return what it printed and
        the value of its last expression (like a notebook cell). Variables,
        imports and functions defined in earlier calls are available.

        Args:
            command: The Python source to run.
            timeout: Seconds this call may take, at most the interpreter's own timeout.
        """
        if timeout is not None and timeout <= 0:
            return ActionReturn(errmsg=f'timeout must be positive, got {timeout!r}', state=ActionStatusCode.ARGS_ERROR)
        limits = self.limits
        if timeout is not None:
            limits = dataclasses.replace(limits, wall_seconds=min(timeout, limits.wall_seconds))
        with self._lock:
            if self._session is None or not self._session.alive:
                try:
                    self._session = SandboxSession(
                        self.limits, python=self.python, run_as=self.run_as, network=self.network, answer=self.answer
                    )
                except (OSError, RuntimeError) as exc:
                    return ActionReturn(errmsg=f'could not start Python: {exc}', state=ActionStatusCode.API_ERROR)
            outcome = self._session.execute(unfence(command), limits.wall_seconds)
            restarted = not self._session.alive
            if restarted:
                self._session = None
        result = format_outcome(outcome, limits, last_line_only=self.answer_from_stdout)
        if restarted:
            result.errmsg = f'{result.errmsg}\n{_RESTARTED}' if result.errmsg else _RESTARTED
        return result

    @property
    def pid(self) -> int | None:
        """Process id of the running session's supervisor (the process group id), if one runs."""
        session = self._session
        return session.pid if session is not None and session.alive else None

    @property
    def isolation(self) -> tuple[str, ...] | None:
        """The protections the running session has (names as in docs/tools.md), if one runs."""
        session = self._session
        return session.isolation if session is not None and session.alive else None

    def reset(self) -> None:
        """Forget every variable: stop the session; the next call starts a fresh one."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def close(self) -> None:
        """Stop the session's processes and delete its scratch directory."""
        self.reset()
