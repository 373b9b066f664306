"""Run a piece of Python code in a contained child process (parent side).

See :class:`lagent.actions.PythonInterpreter` for what is and is not contained.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pwd
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lagent.actions._sandbox_child import CHILD_PROGRAM

__all__ = ['SandboxLimits', 'SandboxResult', 'choose_identity', 'run_in_sandbox']

logger = logging.getLogger(__name__)

_SAFE_PATH = '/usr/local/bin:/usr/bin:/bin'
_BACKSTOP_GRACE = 5.0  # seconds the parent waits past the child's own deadline before killing it


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run; every size is per process of the run."""

    wall_seconds: float = 10.0
    """Wall-clock limit of the run; on expiry every process of the run is killed."""
    cpu_seconds: float | None = None
    """CPU-time limit (``RLIMIT_CPU``); ``None``: the wall-clock limit rounded up."""
    memory_mb: int | None = 512
    """Address-space limit (``RLIMIT_AS``) in MiB; ``None`` for none."""
    max_processes: int | None = 16
    """Processes (threads count) the code may add (``RLIMIT_NPROC``; see the caveats)."""
    file_size_mb: int | None = 64
    """Largest file the code may write (``RLIMIT_FSIZE``) in MiB."""
    max_output_chars: int = 4000
    """Characters of stdout, of stderr and of the last value kept; the rest is cut."""

    def as_request(self) -> dict[str, int | float | None]:
        cpu = self.cpu_seconds if self.cpu_seconds is not None else self.wall_seconds
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
    stderr: str
    ok: bool
    """The code ran to its end without an uncaught exception."""
    value: str | None
    """``repr`` of the last expression's value, if the code ended with one that is not ``None``."""
    error: str | None
    """The traceback of the uncaught exception, if any."""
    timed_out: bool
    signal: int | None
    """The signal that killed the code, if one did."""


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
        python: The interpreter to run (only its standard library is used).
        ids: ``(uid, gid)`` to run as (root only), from :func:`choose_identity`.

    Returns:
        Output, value or traceback, and how the run ended.
    """
    scratch = Path(tempfile.mkdtemp(prefix='lagent-sandbox-'))
    if ids is not None:
        os.chown(scratch, *ids)
    result_read, result_write = os.pipe()
    env = {'PATH': _SAFE_PATH, 'HOME': str(scratch), 'TMPDIR': str(scratch), 'LANG': 'C.UTF-8', 'LC_ALL': 'C.UTF-8'}
    user_options = {} if ids is None else {'user': ids[0], 'group': ids[1], 'extra_groups': []}
    try:
        process = subprocess.Popen(
            [python, '-I', '-u', '-X', 'utf8', '-c', CHILD_PROGRAM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=scratch,
            env=env,
            pass_fds=(result_write,),
            start_new_session=True,
            close_fds=True,
            **user_options,
        )
    except BaseException:
        os.close(result_read)
        os.close(result_write)
        _remove_tree(scratch)
        raise
    os.close(result_write)
    request = {'code': code, 'limits': limits.as_request(), 'result_fd': result_write}
    try:
        try:
            process.stdin.write(json.dumps(request).encode())
            process.stdin.close()
        except BrokenPipeError:
            pass
        deadline = time.monotonic() + limits.wall_seconds + _BACKSTOP_GRACE
        captured, finished = _read_all(process, result_read, limits, deadline)
    finally:
        _stop(process)
        os.close(result_read)
        _remove_tree(scratch)
    return _result(captured, limits, backstop_hit=not finished)


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


def _read_all(
    process: subprocess.Popen, result_read: int, limits: SandboxLimits, deadline: float
) -> tuple[dict[str, _Capture], bool]:
    """Read the child's pipes until they all close or ``deadline``; return what
    was read and whether they all closed in time."""
    byte_limit = limits.max_output_chars * 4
    captures = {
        'stdout': _Capture(byte_limit),
        'stderr': _Capture(byte_limit),
        'result': _Capture(byte_limit * 2 + 4096),
    }
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, 'stdout')
    selector.register(process.stderr, selectors.EVENT_READ, 'stderr')
    selector.register(result_read, selectors.EVENT_READ, 'result')
    try:
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning('sandbox child %d outlived its deadline; killing its process group', process.pid)
                return captures, False
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    captures[key.data].feed(chunk)
                else:
                    selector.unregister(key.fileobj)
    finally:
        selector.close()
    return captures, True


def _stop(process: subprocess.Popen) -> None:
    """Make sure the child and its process group are gone (a no-op when it finished on its own)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _result(captured: dict[str, _Capture], limits: SandboxLimits, *, backstop_hit: bool) -> SandboxResult:
    outcome: dict = {}
    report: dict = {}
    for line in captured['result'].data.decode('utf-8', errors='replace').splitlines():
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if 'ok' in message:
            outcome = message
        elif 'timed_out' in message:
            report = message
    stderr = captured['stderr'].text(limits.max_output_chars)
    error = outcome.get('error')
    if not report and not backstop_hit:
        error = f'the sandbox process failed to run the code:\n{stderr}'
    return SandboxResult(
        stdout=captured['stdout'].text(limits.max_output_chars),
        stderr=stderr,
        ok=bool(outcome.get('ok')),
        value=outcome.get('value'),
        error=error,
        timed_out=bool(report.get('timed_out')) or backstop_hit,
        signal=report.get('signal'),
    )


def _executable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether user ``uid`` (group ``gid``) can search every directory to ``path`` and execute it."""
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return False
    for directory in reversed(resolved.parents):
        if not _permits(directory.stat(), uid, gid, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return False
    return _permits(resolved.stat(), uid, gid, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)


def _permits(info: os.stat_result, uid: int, gid: int, user_bit: int, group_bit: int, other_bit: int) -> bool:
    if info.st_uid == uid:
        return bool(info.st_mode & user_bit)
    if info.st_gid == gid:
        return bool(info.st_mode & group_bit)
    return bool(info.st_mode & other_bit)


def _remove_tree(path: Path) -> None:
    """Delete the scratch directory, even where the code removed permissions inside it."""

    def make_writable_and_retry(function, failed_path, _exc_info) -> None:
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
