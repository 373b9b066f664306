"""``IPythonInterpreter``: a Python session whose variables persist between calls."""

from __future__ import annotations

import sys
import threading

from lagent.actions._sandbox import SandboxLimits, SandboxSession, choose_identity
from lagent.actions.base_action import BaseAction
from lagent.actions.python_interpreter import format_outcome, unfence
from lagent.schema import ActionReturn, ActionStatusCode

__all__ = ['IPythonInterpreter']

_RESTARTED = 'The session was restarted: earlier variables, imports and files are gone.'


class IPythonInterpreter(BaseAction):
    """Runs Python code in one long-lived child process, like the cells of a notebook.

    Variables, imports and functions persist from one call to the next. The
    child is contained like :class:`~lagent.actions.PythonInterpreter`'s
    (same rlimits, scrubbed environment, scratch directory as working
    directory, runs as ``user`` when the parent is root), with these
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
        timeout: Wall-clock seconds per call.
        memory_mb: Address-space limit, MiB (``None``: none).
        cpu_seconds: CPU seconds per call (``None``: ``timeout`` rounded up).
        max_processes: Processes (and threads) the code may add (``None``: no limit).
        file_size_mb: Largest file the code may write, MiB (``None``: none).
        max_output_chars: Characters kept of stdout, of stderr and of the value.
        python: Interpreter to run (only its standard library is used).
        user: User to run as when the parent is root; ``None`` keeps root.
        name: The tool's name (default ``'IPythonInterpreter'``).
    """

    tool_methods = ('run',)

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        memory_mb: int | None = 512,
        cpu_seconds: float | None = None,
        max_processes: int | None = 16,
        file_size_mb: int | None = 64,
        max_output_chars: int = 4000,
        python: str | None = None,
        user: str | None = 'nobody',
        name: str | None = None,
    ):
        super().__init__(name)
        if timeout <= 0:
            raise ValueError(f'timeout must be positive, got {timeout!r}')
        self.limits = SandboxLimits(
            wall_seconds=timeout,
            cpu_seconds=cpu_seconds,
            memory_mb=memory_mb,
            max_processes=max_processes,
            file_size_mb=file_size_mb,
            max_output_chars=max_output_chars,
        )
        """The limits every call runs under."""
        self.python, self.run_as = choose_identity(user, python or sys.executable)
        """The interpreter the child runs, and the ``(uid, gid)`` it runs as
        (``None``: the parent's own user)."""
        self._session: SandboxSession | None = None
        self._lock = threading.Lock()

    def run(self, code: str) -> ActionReturn:
        """Run Python code in a persistent session and return what it printed and
        the value of its last expression (like a notebook cell). Variables,
        imports and functions defined in earlier calls are available; only the
        standard library is installed.

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
