"""``IPythonInterpreter``: a Python session whose variables persist between calls."""

from __future__ import annotations

import threading
from typing import Any

from lagent.actions._sandbox import SandboxSession
from lagent.actions.python_interpreter import PythonInterpreter, format_outcome, unfence
from lagent.schema import ActionReturn, ActionStatusCode

__all__ = ['IPythonInterpreter']

_RESTARTED = 'The session was restarted: earlier variables, imports and files are gone.'


class IPythonInterpreter(PythonInterpreter):
    """Runs Python code in one long-lived child process, like the cells of a notebook.

    Variables, imports and functions persist from one call to the next. The
    child is contained like :class:`~lagent.actions.PythonInterpreter`'s
    (same options and rlimits, scrubbed environment, scratch directory as
    working directory, runs as ``user`` when the parent is root), with these
    differences:

    * The wall-clock limit applies per call: on expiry the session is killed
      and the next call starts a new one (the result says so).
    * The CPU-time limit is a per-call *soft* limit the code could raise
      itself; the wall-clock limit is what bounds a call.
    * Processes a call starts are killed when the call ends.
    * The scratch directory lives as long as the session.

    The child is stopped by :meth:`close` (also on garbage collection and at
    interpreter exit) and restarted by :meth:`reset`. Calls are serialized.

    Args:
        **options: The options of :class:`~lagent.actions.PythonInterpreter`
            (``timeout``, ``memory_mb``, ``cpu_seconds``, ``max_processes``,
            ``file_size_mb``, ``max_output_chars``, ``python``, ``user``, ``name``).
    """

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._session: SandboxSession | None = None
        self._lock = threading.Lock()

    def run(self, code: str) -> ActionReturn:
        """Run Python code in a persistent session and return what it printed and
        the value of its last expression (like a notebook cell). Variables,
        imports and functions defined in earlier calls are available.

        Args:
            code: The Python source to run.
        """
        with self._lock:
            if self._session is None or not self._session.alive:
                try:
                    self._session = SandboxSession(self.limits, python=self.python, ids=self.run_as)
                except (OSError, RuntimeError) as exc:
                    return ActionReturn(errmsg=f'could not start Python: {exc}', state=ActionStatusCode.API_ERROR)
            outcome = self._session.execute(unfence(code))
            restarted = not self._session.alive
            if restarted:
                self._session = None
        result = format_outcome(outcome, self.limits)
        if restarted:
            result.errmsg = f'{result.errmsg}\n{_RESTARTED}' if result.errmsg else _RESTARTED
        return result

    @property
    def pid(self) -> int | None:
        """Process id of the running session's supervisor (the process group id), if one runs."""
        session = self._session
        return session.pid if session is not None and session.alive else None

    def reset(self) -> None:
        """Forget every variable: stop the session; the next call starts a fresh one."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def close(self) -> None:
        """Stop the session's processes and delete its scratch directory."""
        self.reset()
