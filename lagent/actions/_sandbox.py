"""Run Python code in contained child processes (the parent's side).

:func:`run_in_sandbox` runs one cell in a fresh sandbox; :class:`SandboxSession`
keeps one worker process alive across cells. The child program, and how it
uses the kernel's namespaces, is in :mod:`lagent.actions._sandbox_child`;
who the code runs as is decided in :mod:`lagent.actions._sandbox_users`.
What is and is not contained is documented on
:class:`lagent.actions.PythonInterpreter` and in ``docs/tools.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lagent.actions._sandbox_child import PROGRAM
from lagent.actions._sandbox_users import SAFE_PATH, RunAs, UidLease, executable_by, lease_session_uid, run_as_user

__all__ = [
    'ISOLATION',
    'AnswerConvention',
    'SandboxLimits',
    'SandboxResult',
    'SandboxSession',
    'choose_identity',
    'run_in_sandbox',
]

logger = logging.getLogger(__name__)

ISOLATION = {
    'pid': 'a PID namespace of its own',
    'proc': 'a /proc of its own',
    'readonly': 'a read-only file system',
    'tmp': 'a private /tmp',
    'network': 'network isolation',
    'uid': 'a uid of its own',
    'seccomp': 'a system-call filter',
}
"""The protections the kernel may give a sandbox, by the name the child reports them with."""

_BACKSTOP_GRACE = 5.0
"""Seconds the parent waits past the child's own deadline, or for a session to
stop, before killing the child's process group itself."""
_STARTUP_TIMEOUT = 30.0
"""Seconds a session's worker may take to start."""
_MESSAGE_BYTES = 1 << 20
"""The longest result message kept; a longer line (only code writing to the result pipe makes one) is dropped."""
_warned: set[frozenset[str]] = set()
_warned_lock = threading.Lock()
_usable: dict[tuple[str, RunAs], bool] = {}


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run; every size but ``scratch_mb`` is per process of the run."""

    wall_seconds: float = 10.0
    """Wall-clock limit of a run; on expiry every process of the run is killed."""
    cpu_seconds: float | None = None
    """CPU-time limit (``RLIMIT_CPU``); ``None``: the wall-clock limit rounded up."""
    memory_mb: int | None = 512
    """Address-space limit (``RLIMIT_AS``) in MiB; ``None`` for none."""
    max_processes: int | None = 64
    """Processes (threads count) the code may add (``RLIMIT_NPROC``)."""
    file_size_mb: int | None = 64
    """Largest file the code may write (``RLIMIT_FSIZE``) in MiB; ``None`` for no limit."""
    max_output_chars: int = 4000
    """Characters of stdout, of stderr and of the last value kept; the rest is cut."""
    scratch_mb: int = 256
    """Size of the private ``/tmp`` and of ``/dev/shm`` (each a tmpfs, held in memory) in MiB."""

    def as_request(self) -> dict[str, Any]:
        """The limits in the form the child program reads."""
        # by default the CPU limit is a backstop one second past the wall clock, which bounds a call:
        # the interpreter's own start-up counts as CPU time, so an equal limit could fire first
        cpu = self.cpu_seconds if self.cpu_seconds is not None else self.wall_seconds + 1
        return {
            'wall_seconds': self.wall_seconds,
            'cpu_seconds': max(1, math.ceil(cpu)),
            'memory_bytes': self.memory_mb * 2**20 if self.memory_mb else None,
            'file_size_bytes': self.file_size_mb * 2**20 if self.file_size_mb else None,
            'max_processes': self.max_processes,
            'max_value_chars': self.max_output_chars,
            'scratch_kb': self.scratch_mb * 1024,
        }


@dataclass(frozen=True)
class AnswerConvention:
    """Which value stands for a cell's answer when the cell prints nothing and ends without an expression.

    The cell must (re)define the name involved; its value is then shown with ``str()``.
    """

    expr: str | None = 'solution()'
    """An expression to evaluate, e.g. ``'solution()'``; it applies when the cell defines the first name it uses."""
    symbol: str | None = None
    """A variable whose value is the answer when the cell sets it (checked before ``expr``)."""


@dataclass(frozen=True)
class SandboxResult:
    """What one run produced."""

    stdout: str
    """Captured standard output (truncated)."""
    stderr: str
    """Captured standard error (truncated)."""
    ok: bool
    """The code ran to its end without an uncaught exception."""
    value: str | None
    """``repr`` of the last expression's value (or the answer's ``str``), if there is one that is not ``None``."""
    error: str | None
    """The traceback of the uncaught exception, or why the child failed."""
    timed_out: bool
    """The wall-clock limit expired and the code was killed."""
    signal: int | None
    """The signal that killed the code, if one did."""
    exit_code: int | None = None
    """The status the code's process exited with, when it exited without finishing the cell (``os._exit``)."""
    isolation: tuple[str, ...] = ()
    """The protections of :data:`ISOLATION` the run had."""


def run_in_sandbox(
    code: str,
    limits: SandboxLimits,
    *,
    python: str = sys.executable,
    run_as: RunAs = RunAs(),
    network: bool = False,
    answer: AnswerConvention | None = None,
    namespaces: bool = True,
) -> SandboxResult:
    """Run ``code`` in a fresh sandbox under ``limits``.

    Args:
        code: Python source; its last expression's ``repr`` is returned.
        limits: The limits of this run.
        python: The interpreter to run (the child program needs only its standard library).
        run_as: Who the code runs as, from :func:`~lagent.actions._sandbox_users.choose_identity`.
        network: Whether the code may use the network.
        answer: The answer convention, if any.
        namespaces: Use the kernel's namespaces where it allows (``False`` only to test the fallback).

    Returns:
        Output, value or traceback, and how the run ended.
    """
    child = _Child.spawn(
        {'mode': 'cell', 'code': code, 'namespaces': namespaces}, limits, python, run_as, network, answer
    )
    try:
        captures = _Captures(limits)
        finished = child.read(captures, time.monotonic() + limits.wall_seconds + _BACKSTOP_GRACE)
    finally:
        child.stop()
    return captures.result(limits, backstop_hit=not finished)


def choose_identity(user: str | None, python: str, *, namespaces: bool = True) -> tuple[str, RunAs]:
    """Choose the interpreter and the user the code runs as.

    Only root can switch users; an unprivileged parent keeps its own. Root
    runs the code as ``user`` (``'auto'``: a uid of its own per run) with
    ``python`` if that user can reach it: directly, or through the sandbox's
    private file system, which binds the interpreter's directories into the
    directories that would keep the user out (``/root``...; tried once per
    interpreter). Else it uses the first ``python3`` on a system path the user
    can execute; failing both, it keeps root and logs a warning.

    Args:
        user: ``'auto'``, a user name, or ``None`` to keep root.
        python: The preferred interpreter.
        namespaces: Let the sandbox use namespaces (``False`` only to test the fallback).

    Returns:
        ``(interpreter, run_as)``.
    """
    if user is None or os.geteuid() != 0:
        return python, RunAs()
    run_as = run_as_user(user)
    if run_as is None:
        logger.warning('sandbox user %r does not exist; the sandbox runs as root', user)
        return python, RunAs()
    ids = run_as.typical_ids
    if executable_by(Path(python), *ids) or (namespaces and _usable_in_sandbox(python, run_as)):
        return python, run_as
    for directory in SAFE_PATH.split(':'):
        if executable_by(Path(directory) / 'python3', *ids):
            return str(Path(directory) / 'python3'), run_as
    logger.warning('the sandbox user (%s) cannot run %s nor a system python3; the sandbox runs as root', run_as, python)
    return python, RunAs()


def _usable_in_sandbox(python: str, run_as: RunAs) -> bool:
    """Whether the sandbox's user can import the standard library of ``python`` in a sandbox (tried once)."""
    key = (python, run_as)
    if key not in _usable:
        try:
            result = run_in_sandbox('import decimal', SandboxLimits(wall_seconds=30), python=python, run_as=run_as)
        except (OSError, RuntimeError):
            _usable[key] = False
        else:
            _usable[key] = result.ok and {'readonly', 'tmp'} <= set(result.isolation)
    return _usable[key]


class SandboxSession:
    """One long-lived worker process that runs cells in a shared namespace.

    Calls must not overlap (the caller serializes them). After a timeout or a
    crash the session is dead (:attr:`alive` is false) and must be replaced.

    Args:
        limits: The limits of every cell.
        python: The interpreter to run.
        run_as: Who the code runs as.
        network: Whether the code may use the network.
        answer: The answer convention, if any.
        namespaces: Use the kernel's namespaces where it allows (``False`` only to test the fallback).

    Raises:
        RuntimeError: The worker did not start.
    """

    def __init__(
        self,
        limits: SandboxLimits,
        *,
        python: str = sys.executable,
        run_as: RunAs = RunAs(),
        network: bool = False,
        answer: AnswerConvention | None = None,
        namespaces: bool = True,
    ):
        self.limits = limits
        request = {'mode': 'session', 'namespaces': namespaces}
        self._child = _Child.spawn(request, limits, python, run_as, network, answer)
        self._finalizer = weakref.finalize(self, self._child.shut_down)  # also runs at interpreter exit
        captures = _Captures(limits)
        with contextlib.suppress(OSError):
            self._child.read(captures, time.monotonic() + _STARTUP_TIMEOUT, until='ready')
        if captures.ready is None:
            self.close()
            detail = captures.stderr.text(limits.max_output_chars).strip()
            raise RuntimeError(f'the Python session did not start: {detail or "no reply"}')
        self.isolation = captures.isolation
        """The protections of :data:`ISOLATION` the session has."""

    @property
    def pid(self) -> int:
        """Process id of the supervisor, which is also its process group id."""
        return self._child.process.pid

    @property
    def alive(self) -> bool:
        """Whether the worker can run another cell."""
        return self._finalizer.alive and self._child.process.poll() is None

    def execute(self, code: str, wall_seconds: float | None = None) -> SandboxResult:
        """Run one cell; on timeout or crash the session stops and the result says why.

        Args:
            code: The cell.
            wall_seconds: This cell's wall-clock limit; ``None``: the session's.

        Raises:
            RuntimeError: The session is not alive.
        """
        if not self.alive:
            raise RuntimeError('the Python session has stopped')
        limits = self.limits
        if wall_seconds is not None:
            limits = replace(limits, wall_seconds=wall_seconds)
        cell = secrets.token_hex(8)  # a stale or forged outcome of another cell is not taken for this one's
        captures = _Captures(limits, isolation=self.isolation, cell=cell)
        deadline = time.monotonic() + limits.wall_seconds
        try:
            self._child.send({'code': code, 'cell': cell})
            answered = self._child.read(captures, deadline, until='ok')
        except OSError:
            answered = False
        if answered:
            self._child.drain(captures)
            return captures.result(limits, backstop_hit=False)
        timed_out = time.monotonic() >= deadline
        self._child.end_run()
        self._child.read(captures, time.monotonic() + _BACKSTOP_GRACE)  # the supervisor's report, if any
        self.close()
        return captures.result(limits, backstop_hit=timed_out)

    def close(self) -> None:
        """Stop the worker and every process it started, and delete the scratch directory (idempotent)."""
        self._finalizer()


class _Capture:
    """Bytes read from one pipe, kept up to a limit; the rest is counted and dropped."""

    def __init__(self, limit: int):
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self, max_chars: int) -> str:
        text = self.data.decode('utf-8', errors='replace')
        cut = len(text) > max_chars or self.dropped
        if len(text) > max_chars:
            text = text[:max_chars]
        if cut:
            text += '\n... [output truncated]'
        return text


class _Captures:
    """What one run sent on stdout and stderr, and the messages of the result pipe that matter.

    Of each kind of message the first is kept where only the sandbox's own
    processes send it before any code runs (``isolation``, ``ready``), the last
    where it ends a cell or a run (``ok``, ``timed_out``): code that writes to
    the result pipe can only add messages in between. A session's cell outcome
    counts only with the cell's id.
    """

    def __init__(self, limits: SandboxLimits, isolation: tuple[str, ...] | None = None, cell: str | None = None):
        byte_limit = limits.max_output_chars * 4  # UTF-8: at most 4 bytes a character
        self.stdout = _Capture(byte_limit)
        self.stderr = _Capture(byte_limit)
        self.isolation = isolation
        self.ready: int | None = None
        self.outcome: dict[str, Any] = {}
        self.report: dict[str, Any] = {}
        self._cell = cell
        self._partial = bytearray()

    def feed_results(self, chunk: bytes) -> set[str]:
        """Take bytes of the result pipe; return the kinds of the whole messages they completed."""
        self._partial += chunk
        *lines, rest = self._partial.split(b'\n')
        self._partial = bytearray(rest if len(rest) <= _MESSAGE_BYTES else b'')
        kinds = set()
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if 'isolation' in message and self.isolation is None:
                self.isolation = tuple(message['isolation'])
                _warn_about_missing(message.get('missing') or {})
            elif 'ready' in message and self.ready is None:
                self.ready = message['ready']
            elif 'ok' in message:
                if message.get('cell') != self._cell:
                    continue
                self.outcome = message
            elif 'timed_out' in message:
                self.report = message
            kinds.update(message)
        return kinds

    def result(self, limits: SandboxLimits, *, backstop_hit: bool) -> SandboxResult:
        outcome, report = self.outcome, self.report
        stderr = self.stderr.text(limits.max_output_chars)
        error = outcome.get('error')
        if not outcome and not report and not backstop_hit:
            error = f'the sandbox process failed to run the code:\n{stderr}'
        return SandboxResult(
            stdout=self.stdout.text(limits.max_output_chars),
            stderr=stderr,
            ok=bool(outcome.get('ok')),
            value=outcome.get('value'),
            error=error,
            timed_out=bool(report.get('timed_out')) or backstop_hit,
            signal=report.get('signal'),
            exit_code=None if outcome else report.get('exit_code'),
            isolation=self.isolation or (),
        )


class _Child:
    """A supervisor process with its pipes, scratch directory and uid lease."""

    def __init__(self, process: subprocess.Popen, result_read: int, scratch: Path, lease: UidLease | None):
        self.process = process
        self.scratch = scratch
        self.lease = lease
        self._open = {'stdout': process.stdout.fileno(), 'stderr': process.stderr.fileno(), 'results': result_read}
        self._result_read = result_read
        self._lock = threading.Lock()
        self._stopped = False

    @classmethod
    def spawn(
        cls,
        request: dict[str, Any],
        limits: SandboxLimits,
        python: str,
        run_as: RunAs,
        network: bool,
        answer: AnswerConvention | None,
    ) -> _Child:
        lease = lease_session_uid() if run_as.per_session else None
        ids = (lease.uid, lease.uid) if lease is not None else run_as.ids
        scratch = Path(tempfile.mkdtemp(prefix='lagent-sandbox-'))  # the working directory without namespaces
        result_read, result_write = os.pipe()
        try:
            if ids is not None:
                os.chown(scratch, *ids)
            config = {
                **request,
                'limits': limits.as_request(),
                'result_fd': result_write,
                'ids': ids,
                'unique_uid': lease is not None,
                'keep_root': os.geteuid() == 0 and ids is None,
                'network': network,
                'scratch': str(scratch),
                'answer': None if answer is None else {'expr': answer.expr, 'symbol': answer.symbol},
            }
            process = subprocess.Popen(
                [python, '-I', '-u', '-X', 'utf8', '-c', PROGRAM],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=scratch,
                env={
                    'PATH': SAFE_PATH,
                    'HOME': str(scratch),
                    'TMPDIR': str(scratch),
                    'LANG': 'C.UTF-8',
                    'LC_ALL': 'C.UTF-8',
                },
                pass_fds=(result_write,),
                start_new_session=True,
            )
        except BaseException:
            os.close(result_read)
            _remove_tree(scratch)
            if lease is not None:
                lease.release()
            raise
        finally:
            os.close(result_write)
        for fd in (process.stdout.fileno(), process.stderr.fileno(), result_read):
            os.set_blocking(fd, False)
        child = cls(process, result_read, scratch, lease)
        with contextlib.suppress(BrokenPipeError):
            child.send(config)
        if request['mode'] == 'cell':
            with contextlib.suppress(OSError):
                process.stdin.close()
        return child

    def send(self, message: dict[str, Any]) -> None:
        self.process.stdin.write((json.dumps(message) + '\n').encode())
        self.process.stdin.flush()

    def read(self, captures: _Captures, deadline: float, *, until: str | None = None) -> bool:
        """Read the pipes into ``captures`` until a message with key ``until`` arrives,
        or (``until=None``) until every pipe is closed; ``False`` if ``deadline`` came first."""
        selector = selectors.DefaultSelector()
        for name, fd in self._open.items():
            selector.register(fd, selectors.EVENT_READ, name)
        try:
            while self._open:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                for key, _ in selector.select(remaining):
                    kinds = self._read_once(key.data, captures)
                    if kinds is None:
                        selector.unregister(key.fd)
                    elif until is not None and until in kinds:
                        return True
            return until is None
        finally:
            selector.close()

    def drain(self, captures: _Captures) -> None:
        """Read what stdout and stderr already hold, without waiting."""
        for name in ('stdout', 'stderr'):
            while name in self._open and self._read_once(name, captures):
                pass

    def _read_once(self, name: str, captures: _Captures) -> set[str] | None:
        """Read one chunk from pipe ``name``: ``None`` at EOF, else the kinds of
        result messages it completed (empty when the pipe was empty)."""
        try:
            chunk = os.read(self._open[name], 65536)
        except BlockingIOError:
            return set()
        if not chunk:
            del self._open[name]
            return None
        if name == 'results':
            return captures.feed_results(chunk)
        getattr(captures, name).feed(chunk)
        return {'output'}

    def end_run(self) -> None:
        """End a session's run now: on SIGTERM the supervisor kills the namespace's init (and
        with it every process of the run) or, without namespaces, the worker and what it left."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def shut_down(self) -> None:
        """End a session: EOF on stdin ends an idle worker; a busy one is killed;
        the supervisor gets time to clean up before :meth:`stop`."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.end_run()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=_BACKSTOP_GRACE)
        self.stop()

    def stop(self) -> None:
        """Kill what is left of the child, close the pipes, delete the scratch directory
        and give the uid back (idempotent)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(OSError):
            os.close(self._result_read)
        _remove_tree(self.scratch)
        if self.lease is not None:
            self.lease.release()


def _warn_about_missing(missing: dict[str, str]) -> None:
    """Log, once per process and set of missing protections, what the sandbox runs without and why."""
    if not missing:
        return
    key = frozenset(missing)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    by_reason: dict[str, list[str]] = {}
    for name in sorted(missing, key=lambda name: list(ISOLATION).index(name) if name in ISOLATION else len(ISOLATION)):
        by_reason.setdefault(missing[name], []).append(ISOLATION.get(name, name))
    details = '; '.join(f'{", ".join(names)} ({reason})' for reason, names in by_reason.items())
    logger.warning('the Python sandbox runs without %s. See the threat model in docs/tools.md', details)


def _remove_tree(path: Path) -> None:
    """Delete the scratch directory, even where the code removed permissions inside it."""

    def make_writable_and_retry(function, failed_path, _error) -> None:
        try:
            os.chmod(os.path.dirname(failed_path), stat.S_IRWXU)
            if os.path.isdir(failed_path):
                os.chmod(failed_path, stat.S_IRWXU)
            function(failed_path)
        except OSError:
            logger.warning('could not remove %s from the sandbox scratch directory', failed_path)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=make_writable_and_retry)
