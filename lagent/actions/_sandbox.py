"""Run Python code in contained child processes (the parent's side).

:func:`run_in_sandbox` runs one cell in a fresh process; :class:`SandboxSession`
keeps one worker process alive across cells. The child programs are in
:mod:`lagent.actions._sandbox_child`; what is and is not contained is
documented on :class:`lagent.actions.PythonInterpreter`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lagent.actions._sandbox_child import CELL_PROGRAM, SESSION_PROGRAM

__all__ = ['SandboxLimits', 'SandboxResult', 'SandboxSession', 'choose_identity', 'run_in_sandbox']

logger = logging.getLogger(__name__)

_SAFE_PATH = '/usr/local/bin:/usr/bin:/bin'
_BACKSTOP_GRACE = 5.0
"""Seconds the parent waits past the child's own deadline, or for a session to
stop, before killing the child's process group itself."""
_STARTUP_TIMEOUT = 30.0
"""Seconds a session's worker may take to start."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run; every size is per process of the run."""

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
        }


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
    """``repr`` of the last expression's value, if the code ended with one that is not ``None``."""
    error: str | None
    """The traceback of the uncaught exception, or why the child failed."""
    timed_out: bool
    """The wall-clock limit expired and the code was killed."""
    signal: int | None
    """The signal that killed the code, if one did."""
    exit_code: int | None = None
    """The status the code's process exited with, when it exited without finishing the cell (``os._exit``)."""


def choose_identity(user: str | None, python: str) -> tuple[str, tuple[int, int] | None]:
    """Choose the interpreter and the ``(uid, gid)`` the child runs as.

    Only root can switch users; an unprivileged parent keeps its own
    (``None``). Root switches to ``user`` and runs ``python`` if that user can
    execute it (every directory on its path searchable), else the first
    ``python3`` on a system path they can execute; failing both, it keeps root
    and logs a warning, since then the process-count limit does not apply.

    Args:
        user: The user to run as when root; ``None`` keeps root.
        python: The preferred interpreter.

    Returns:
        ``(interpreter, ids)``, ``ids`` being ``None`` to keep the parent's user.
    """
    if user is None or os.geteuid() != 0:
        return python, None
    import pwd  # POSIX only: imported here so that importing lagent.actions works everywhere

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        logger.warning('sandbox user %r does not exist; the sandbox runs as root', user)
        return python, None
    ids = (entry.pw_uid, entry.pw_gid)
    candidates = [Path(python)] + [Path(directory) / 'python3' for directory in _SAFE_PATH.split(':')]
    for candidate in candidates:
        if _executable_by(candidate, *ids):
            return str(candidate), ids
    logger.warning('sandbox user %r cannot run %s nor a system python3; the sandbox runs as root', user, python)
    return python, None


def run_in_sandbox(
    code: str, limits: SandboxLimits, *, python: str = sys.executable, ids: tuple[int, int] | None = None
) -> SandboxResult:
    """Run ``code`` in a fresh child process under ``limits``.

    Args:
        code: Python source; its last expression's ``repr`` is returned.
        limits: The limits of this run.
        python: The interpreter to run (the child program needs only its standard library).
        ids: ``(uid, gid)`` to run as (root only), from :func:`choose_identity`.

    Returns:
        Output, value or traceback, and how the run ended.
    """
    child = _Child.spawn(CELL_PROGRAM, python, ids)
    try:
        request = {'code': code, 'limits': limits.as_request(), 'result_fd': child.result_fd_number}
        with contextlib.suppress(BrokenPipeError):
            child.process.stdin.write(json.dumps(request).encode())
            child.process.stdin.close()
        captures = _Captures(limits)
        finished = child.read(captures, time.monotonic() + limits.wall_seconds + _BACKSTOP_GRACE, until_eof=True)
    finally:
        child.stop()
    return captures.result(limits, backstop_hit=not finished)


class SandboxSession:
    """One long-lived worker process that runs cells in a shared namespace.

    Calls must not overlap (the caller serializes them). After a timeout or a
    crash the session is dead (:attr:`alive` is false) and must be replaced.

    Args:
        limits: The limits of every cell.
        python: The interpreter to run.
        ids: ``(uid, gid)`` to run as (root only), from :func:`choose_identity`.

    Raises:
        RuntimeError: The worker did not start.
    """

    def __init__(self, limits: SandboxLimits, *, python: str = sys.executable, ids: tuple[int, int] | None = None):
        self.limits = limits
        self._child = _Child.spawn(SESSION_PROGRAM, python, ids)
        self._finalizer = weakref.finalize(self, self._child.shut_down)  # also runs at interpreter exit
        config = {'limits': limits.as_request(), 'result_fd': self._child.result_fd_number}
        captures = _Captures(limits)
        with contextlib.suppress(OSError):
            self._child.send(config)
            self._child.read(captures, time.monotonic() + _STARTUP_TIMEOUT, until_message=True)
        ready = captures.messages()
        if not ready or 'ready' not in ready[0]:
            self.close()
            detail = captures.stderr.text(limits.max_output_chars).strip()
            raise RuntimeError(f'the Python session did not start: {detail or "no reply"}')
        self._child.worker_pid = ready[0]['ready']

    @property
    def pid(self) -> int:
        """Process id of the supervisor, which is also its process group id."""
        return self._child.process.pid

    @property
    def alive(self) -> bool:
        """Whether the worker can run another cell."""
        return self._finalizer.alive and self._child.process.poll() is None

    def execute(self, code: str) -> SandboxResult:
        """Run one cell; on timeout or crash the session stops and the result says why.

        Raises:
            RuntimeError: The session is not alive.
        """
        if not self.alive:
            raise RuntimeError('the Python session has stopped')
        captures = _Captures(self.limits)
        deadline = time.monotonic() + self.limits.wall_seconds
        try:
            self._child.send({'code': code})
            answered = self._child.read(captures, deadline, until_message=True)
        except OSError:
            answered = False
        if answered and 'ok' in captures.messages()[-1]:
            self._child.drain(captures)
            return captures.result(self.limits, backstop_hit=False)
        timed_out = time.monotonic() >= deadline
        self._child.kill_worker()
        self._child.read(captures, time.monotonic() + _BACKSTOP_GRACE, until_eof=True)  # the supervisor's report
        self.close()
        return captures.result(self.limits, backstop_hit=timed_out)

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
    """What one run sent on stdout, stderr and the result pipe."""

    def __init__(self, limits: SandboxLimits):
        byte_limit = limits.max_output_chars * 4  # UTF-8: at most 4 bytes a character
        self.stdout = _Capture(byte_limit)
        self.stderr = _Capture(byte_limit)
        self.results = _Capture(byte_limit * 2 + 65536)

    def messages(self) -> list[dict[str, Any]]:
        found = []
        for line in self.results.data.decode('utf-8', errors='replace').splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                found.append(json.loads(line))
        return found

    def result(self, limits: SandboxLimits, *, backstop_hit: bool) -> SandboxResult:
        outcome: dict[str, Any] = {}
        report: dict[str, Any] = {}
        for message in self.messages():
            if 'ok' in message:
                outcome = message
            elif 'timed_out' in message:
                report = message
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
        )


class _Child:
    """A supervisor process with its pipes and scratch directory."""

    def __init__(self, process: subprocess.Popen, result_read: int, result_fd_number: int, scratch: Path):
        self.process = process
        self.result_read = result_read
        self.result_fd_number = result_fd_number
        self.scratch = scratch
        self._open = {'stdout': process.stdout.fileno(), 'stderr': process.stderr.fileno(), 'results': result_read}
        self._pending = b''
        self._lock = threading.Lock()
        self._stopped = False
        self.worker_pid: int | None = None
        """The session worker's pid (sessions only), once it said it is ready."""

    @classmethod
    def spawn(cls, program: str, python: str, ids: tuple[int, int] | None) -> _Child:
        scratch = Path(tempfile.mkdtemp(prefix='lagent-sandbox-'))
        result_read, result_write = os.pipe()
        try:
            if ids is not None:
                os.chown(scratch, *ids)
            env = {'PATH': _SAFE_PATH, 'HOME': str(scratch), 'TMPDIR': str(scratch)}
            env.update(LANG='C.UTF-8', LC_ALL='C.UTF-8')
            user_options = {} if ids is None else {'user': ids[0], 'group': ids[1], 'extra_groups': []}
            process = subprocess.Popen(
                [python, '-I', '-u', '-X', 'utf8', '-c', program],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=scratch,
                env=env,
                pass_fds=(result_write,),
                start_new_session=True,
                **user_options,
            )
        except BaseException:
            os.close(result_read)
            _remove_tree(scratch)
            raise
        finally:
            os.close(result_write)
        for fd in (process.stdout.fileno(), process.stderr.fileno(), result_read):
            os.set_blocking(fd, False)
        return cls(process, result_read, result_write, scratch)

    def send(self, message: dict[str, Any]) -> None:
        self.process.stdin.write((json.dumps(message) + '\n').encode())
        self.process.stdin.flush()

    def read(
        self, captures: _Captures, deadline: float, *, until_eof: bool = False, until_message: bool = False
    ) -> bool:
        """Read the pipes into ``captures`` until all close (``until_eof``) or a
        whole new result message arrives (``until_message``); return ``False``
        if ``deadline`` came first."""
        selector = selectors.DefaultSelector()
        for name, fd in self._open.items():
            selector.register(fd, selectors.EVENT_READ, name)
        try:
            while self._open:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                for key, _ in selector.select(remaining):
                    if not self._read_once(key.data, captures):
                        selector.unregister(key.fd)
                    if until_message and key.data == 'results' and self._message_completed(captures):
                        return True
            return until_eof
        finally:
            selector.close()

    def drain(self, captures: _Captures) -> None:
        """Read what the pipes already hold, without waiting."""
        for name in ('stdout', 'stderr'):
            while name in self._open and self._read_once(name, captures):
                pass

    def _read_once(self, name: str, captures: _Captures) -> bool:
        """Read one chunk from pipe ``name``; ``False`` at EOF or when it is empty."""
        try:
            chunk = os.read(self._open[name], 65536)
        except BlockingIOError:
            return False
        if not chunk:
            del self._open[name]
            return False
        if name == 'results':
            self._pending += chunk
        getattr(captures, name).feed(chunk)
        return True

    def _message_completed(self, captures: _Captures) -> bool:
        if b'\n' not in self._pending:
            return False
        self._pending = self._pending.rsplit(b'\n', 1)[1]
        return True

    def kill_worker(self) -> None:
        """Kill the session worker; the supervisor then kills what it started and exits."""
        # The worker is the supervisor's child: while the supervisor runs, its pid cannot be reused.
        if self.worker_pid is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.worker_pid, signal.SIGKILL)

    def shut_down(self) -> None:
        """End a session: EOF on stdin ends an idle worker; a busy one is killed;
        the supervisor gets time to clean up before :meth:`stop`."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.kill_worker()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=_BACKSTOP_GRACE)
        self.stop()

    def stop(self) -> None:
        """Kill what is left of the child, close the pipes and delete the scratch directory (idempotent)."""
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
            os.close(self.result_read)
        _remove_tree(self.scratch)


def _executable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether user ``uid`` (group ``gid``) can search every directory to ``path`` and execute it."""
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return False
    directories = {*Path(os.path.abspath(path)).parents, *resolved.parents}  # the link's and the target's
    return all(_permits(directory.stat(), uid, gid) for directory in directories) and _permits(
        resolved.stat(), uid, gid
    )


def _permits(info: os.stat_result, uid: int, gid: int) -> bool:
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


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
