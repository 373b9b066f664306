"""``PythonInterpreter``: run model-written Python in a contained child process."""

from __future__ import annotations

import re
import signal
import sys
from typing import Any

from lagent.actions._sandbox import AnswerConvention, SandboxLimits, SandboxResult, choose_identity, run_in_sandbox
from lagent.actions._sandbox_users import PER_SESSION
from lagent.actions.base_action import BaseAction
from lagent.schema import ActionReturn, ActionStatusCode

__all__ = ['PythonInterpreter', 'visible_controls']

_TRACEBACK_LINES = 20
_FENCED = re.compile(r'^\s*```[ \t]*(?:python3?|py)?[ \t]*\n(?P<code>.*?)\n?[ \t]*```\s*$', re.DOTALL | re.IGNORECASE)
_CONTROLS = re.compile('\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]')


class PythonInterpreter(BaseAction):
    """Runs Python code in a fresh sandbox per call, like one notebook cell (Linux only).

    Each call starts ``python -I`` (isolated mode: no user site, no ``PYTHON*``
    variables) in a sandbox that uses the kernel's isolation where it can
    (docs/tools.md has the full threat model, attack by attack):

    * a PID namespace of its own: when the call ends, every process it started
      is killed, and the code sees and can signal no process outside it;
    * a mount namespace: the file system is read-only except a private,
      size-limited ``/tmp`` (the working directory and ``HOME``) and
      ``/dev/shm``, and ``/proc`` shows only the sandbox's processes;
    * no network (a loopback interface of its own) unless ``network=True``;
    * when the parent runs as root, a uid of its own per call, no capabilities,
      and ``no_new_privs`` (set-user-ID programs gain nothing);
    * a wall-clock limit, and rlimits on address space, CPU time, file size
      and process count;
    * an environment holding only ``PATH``, ``HOME``, ``TMPDIR`` and the
      locale: none of the parent's variables (API keys...) reach the code;
    * stdin at ``/dev/null``; stdout and stderr captured, read in bounded
      amounts and truncated, and control characters (terminal escape
      sequences) shown as ``\\x1b``-style escapes.

    Where the kernel refuses a namespace (an unprivileged parent without user
    namespaces, a container without the capability), the sandbox still runs
    and a warning names what is missing: then processes are ended as
    descendants of a subreaper, and the code shares the parent's file system,
    network and (when not root) user.

    A cell that defines ``solution`` (``answer_expr``) and prints nothing
    returns ``str(solution())``, the convention of lagent agents' prompts.

    This is a sandbox against runaway and curious code, not against kernel
    exploits: the code runs on the host's kernel. The code can read what its
    user can read of the host's files (read-only).

    Args:
        timeout: Wall-clock seconds per call.
        memory_mb: Address-space limit per process, MiB (``None``: none).
        cpu_seconds: CPU seconds per process (``None``: ``timeout`` + 1, rounded up).
        max_processes: Processes (and threads) the code may add (``None``: no limit).
        file_size_mb: Largest file the code may write, MiB (``None``: none).
        max_output_chars: Characters kept of stdout, of stderr and of the value.
        scratch_mb: Size of the private ``/tmp`` and of ``/dev/shm``, MiB (each in memory).
        network: Let the code use the network (and the host's ``/run``).
        python: Interpreter to run; defaults to the current one. The code can
            import what is installed for it.
        user: Who the code runs as when the parent is root: ``'auto'`` (a uid
            of its own per call), a user name, or ``None`` to keep root.
        answer_expr: An expression whose ``str`` is the result when a cell
            defines the first name it uses and prints nothing (``None``: off).
        answer_symbol: A variable whose ``str`` is the result when a cell sets
            it and prints nothing (checked before ``answer_expr``).
        answer_from_stdout: Return only the last line the code printed.
        name: The tool's name (default: the class name).
        **base_options: Further options of :class:`~lagent.actions.BaseAction`.

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
        scratch_mb: int = 256,
        network: bool = False,
        python: str | None = None,
        user: str | None = PER_SESSION,
        answer_expr: str | None = 'solution()',
        answer_symbol: str | None = None,
        answer_from_stdout: bool = False,
        name: str | None = None,
        **base_options: Any,
    ):
        super().__init__(name=name, **base_options)
        if not sys.platform.startswith('linux'):
            raise RuntimeError(f'{type(self).__name__} needs Linux (it relies on namespaces, /proc and prctl)')
        if timeout <= 0:
            raise ValueError(f'timeout must be positive, got {timeout!r}')
        if scratch_mb <= 0:
            raise ValueError(f'scratch_mb must be positive, got {scratch_mb!r}')
        self.limits = SandboxLimits(
            wall_seconds=timeout,
            cpu_seconds=cpu_seconds,
            memory_mb=memory_mb,
            max_processes=max_processes,
            file_size_mb=file_size_mb,
            max_output_chars=max_output_chars,
            scratch_mb=scratch_mb,
        )
        """The limits every call runs under."""
        self.network = network
        """Whether the code may use the network."""
        self.answer = AnswerConvention(answer_expr, answer_symbol) if answer_expr or answer_symbol else None
        """Which value is the answer of a cell that prints nothing, if any."""
        self.answer_from_stdout = answer_from_stdout
        """Whether the result is only the last line the code printed."""
        self.python, self.run_as = choose_identity(user, python or sys.executable)
        """The interpreter the child runs, and who the code runs as."""

    def run(self, command: str) -> ActionReturn:
        """Run Python code in a fresh process and return what it printed and the
        value of its last expression (like a notebook cell). Code that only
        defines a function ``solution()`` returns that function's result. No
        state is kept between calls.

        Args:
            command: The Python source to run.
        """
        outcome = run_in_sandbox(
            unfence(command),
            self.limits,
            python=self.python,
            run_as=self.run_as,
            network=self.network,
            answer=self.answer,
        )
        return format_outcome(outcome, self.limits, last_line_only=self.answer_from_stdout)


def unfence(code: str) -> str:
    """Return the code inside a Markdown code block (```python ... ```) if
    ``code`` is exactly one such block, as models often send; else ``code``."""
    fenced = _FENCED.match(code)
    return fenced['code'] if fenced else code


def visible_controls(text: str) -> str:
    """Show control characters as escapes: terminal escape sequences (``\\x1b[...``),
    other C0/C1 controls, a carriage return not followed by a newline, and the
    bidirectional-override characters become visible text such as ``\\x1b``,
    ``\\r`` or ``\\u202e``; newlines and tabs stay.
    """
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    if character == '\r':
        return '\\r'
    code = ord(character)
    return f'\\x{code:02x}' if code < 0x100 else f'\\u{code:04x}'


def format_outcome(outcome: SandboxResult, limits: SandboxLimits, *, last_line_only: bool = False) -> ActionReturn:
    """Turn a sandbox run into what the model reads: stdout, then stderr, then
    the last value on success; the cause (traceback tail, timeout, signal) on failure.
    Control characters are made visible (:func:`visible_controls`)."""
    stdout = visible_controls(outcome.stdout)
    stderr = visible_controls(outcome.stderr)
    succeeded = outcome.ok and not outcome.timed_out and outcome.signal is None
    if succeeded and last_line_only:
        lines = stdout.rstrip('\n').splitlines()
        return _success(lines[-1] if lines else '')
    output = [stdout.rstrip('\n')] if stdout else []
    if stderr:
        output.append('[stderr]\n' + stderr.rstrip('\n'))
    if succeeded:
        if outcome.value is not None:
            output.append(visible_controls(outcome.value))
        return _success('\n'.join(output))
    if outcome.timed_out:
        cause = f'FunctionTimedOut: timed out after {limits.wall_seconds:g}s (wall-clock limit); the process was killed'
    elif outcome.signal is not None:
        cause = _describe_signal(outcome.signal, limits)
    elif outcome.error is None and outcome.exit_code is not None:
        cause = f'the process exited with status {outcome.exit_code} before the code finished'
    else:
        error = visible_controls(outcome.error or 'the code failed')
        cause = '\n'.join(error.rstrip('\n').splitlines()[-_TRACEBACK_LINES:])
    return ActionReturn(errmsg='\n'.join([*output, cause]), state=ActionStatusCode.API_ERROR)


def _success(text: str) -> ActionReturn:
    return ActionReturn(result=[{'type': 'text', 'content': text or '(no output)'}], state=ActionStatusCode.SUCCESS)


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
