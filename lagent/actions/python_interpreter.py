"""``PythonInterpreter``: run model-written Python in a contained child process."""

from __future__ import annotations

import re
import signal
import sys

from lagent.actions._sandbox import SandboxLimits, SandboxResult, choose_identity, run_in_sandbox
from lagent.actions.base_action import BaseAction
from lagent.schema import ActionReturn, ActionStatusCode

__all__ = ['PythonInterpreter']

_TRACEBACK_LINES = 20
_FENCED = re.compile(r'^\s*```[ \t]*(?:python3?|py)?[ \t]*\n(?P<code>.*?)\n?[ \t]*```\s*$', re.DOTALL | re.IGNORECASE)


class PythonInterpreter(BaseAction):
    """Runs Python code in a fresh child process per call, like one notebook cell (Linux only).

    Each call starts ``python -I`` (isolated mode: no user site, no ``PYTHON*``
    variables) with:

    * a wall-clock limit: when it expires, the code and every process it
      started are killed;
    * rlimits on address space (``RLIMIT_AS``), CPU time (``RLIMIT_CPU``),
      file size (``RLIMIT_FSIZE``) and process count (``RLIMIT_NPROC``);
    * a fresh scratch directory as working directory and ``HOME``, deleted
      afterwards;
    * an environment holding only ``PATH``, ``HOME``, ``TMPDIR`` and the
      locale: none of the parent's variables (API keys...) reach the code;
    * stdin at ``/dev/null``; stdout and stderr captured, read in bounded
      amounts and truncated, so a flood of output costs no memory.

    The child's supervisor is a *subreaper*: processes the code starts, even
    ones that leave the process group with ``setsid()``, are re-parented to it
    and killed when the run ends, so none outlive the call.

    What is **not** contained, so only run code you would run as the sandbox
    user:

    * This is not a security boundary like a container or a VM: there is no
      filesystem or network isolation. The code can read whatever its user
      can read and write wherever its user can write (``/tmp`` included) and
      open network connections.
    * ``RLIMIT_NPROC`` counts all processes of a user and is not enforced for
      root. When the parent runs as root, the child therefore runs as
      ``user`` (``'nobody'`` by default), which also keeps it out of root's
      files; a ``python`` that user cannot execute makes it fall back to a
      system ``python3``, or else to root (logged), where a fork bomb is
      bounded only by the wall-clock limit and the process cleanup.
    * When the parent does not run as root, the child runs as the same user
      and could read the parent's files and ``/proc/<pid>/environ``: only the
      environment it is given is scrubbed.
    * Limits are per process: ``n`` processes may use ``n`` times the memory.
      ``RLIMIT_AS`` bounds *address space*, not resident memory: libraries
      that start many threads reserve much of it, so raise ``memory_mb`` for them.

    Args:
        timeout: Wall-clock seconds per call.
        memory_mb: Address-space limit per process, MiB (``None``: none).
        cpu_seconds: CPU seconds per process (``None``: ``timeout`` + 1, rounded up).
        max_processes: Processes (and threads) the code may add (``None``: no limit).
        file_size_mb: Largest file the code may write, MiB (``None``: none).
        max_output_chars: Characters kept of stdout, of stderr and of the value.
        python: Interpreter to run; defaults to the current one. The code can
            import what is installed for it.
        user: User to run as when the parent is root; ``None`` keeps root.
        name: The tool's name (default: the class name).

    Raises:
        ValueError: ``timeout`` is not positive.
        RuntimeError: Not on Linux.
    """

    tool_methods = ('run',)

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        memory_mb: int | None = 512,
        cpu_seconds: float | None = None,
        max_processes: int | None = 64,
        file_size_mb: int | None = 64,
        max_output_chars: int = 4000,
        python: str | None = None,
        user: str | None = 'nobody',
        name: str | None = None,
    ):
        super().__init__(name)
        if not sys.platform.startswith('linux'):
            raise RuntimeError(f'{type(self).__name__} needs Linux (it relies on /proc and prctl)')
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

    def run(self, code: str) -> ActionReturn:
        """Run Python code in a fresh process and return what it printed and the
        value of its last expression (like a notebook cell). No state is kept
        between calls.

        Args:
            code: The Python source to run.
        """
        outcome = run_in_sandbox(unfence(code), self.limits, python=self.python, ids=self.run_as)
        return format_outcome(outcome, self.limits)


def unfence(code: str) -> str:
    """Return the code inside a Markdown code block (```python ... ```) if
    ``code`` is exactly one such block, as models often send; else ``code``."""
    fenced = _FENCED.match(code)
    return fenced['code'] if fenced else code


def format_outcome(outcome: SandboxResult, limits: SandboxLimits) -> ActionReturn:
    """Turn a sandbox run into what the model reads: stdout, then stderr, then
    the last value on success; the cause (traceback tail, timeout, signal) on failure."""
    output = [outcome.stdout.rstrip('\n')] if outcome.stdout else []
    if outcome.stderr:
        output.append('[stderr]\n' + outcome.stderr.rstrip('\n'))
    if outcome.ok and not outcome.timed_out and outcome.signal is None:
        if outcome.value is not None:
            output.append(outcome.value)
        return ActionReturn(
            result=[{'type': 'text', 'content': '\n'.join(output) or '(no output)'}], state=ActionStatusCode.SUCCESS
        )
    if outcome.timed_out:
        cause = f'timed out after {limits.wall_seconds:g}s (wall-clock limit); the process was killed'
    elif outcome.signal is not None:
        cause = _describe_signal(outcome.signal, limits)
    elif outcome.error is None and outcome.exit_code is not None:
        cause = f'the process exited with status {outcome.exit_code} before the code finished'
    else:
        cause = '\n'.join((outcome.error or 'the code failed').rstrip('\n').splitlines()[-_TRACEBACK_LINES:])
    errmsg = '\n'.join([*output, cause])
    return ActionReturn(errmsg=errmsg, state=ActionStatusCode.API_ERROR)


def _describe_signal(number: int, limits: SandboxLimits) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f'signal {number}'
    if number == signal.SIGXCPU:
        return f'killed by {name}: CPU time limit exceeded'
    if number == signal.SIGXFSZ:
        return f'killed by {name}: file size limit of {limits.file_size_mb} MiB exceeded'
    if number == signal.SIGKILL:
        return f'killed by {name} (out of memory, or the CPU time hard limit)'
    return f'killed by {name}'
