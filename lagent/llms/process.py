"""Child-server lifecycle: spawn a server command, wait until it serves, and
make sure it never outlives its owner.

:class:`ServerProcess` runs the command under a tiny supervisor process
(``_supervisor.py``, standard library only) so that the server and everything
it starts are stopped

* on :meth:`ServerProcess.stop`, on context-manager exit and at interpreter exit;
* when the owning process receives SIGTERM (the previous handler still runs);
* when the owning process dies in any way, SIGKILL included: the supervisor
  stops the server's process group as soon as its stdin pipe from the owner
  reaches end of file, which the kernel guarantees when the owner is gone.

The server runs in a process group of its own with ``PR_SET_PDEATHSIG`` tied
to the single-threaded supervisor, which also reaps the server's orphans.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, cast

import requests

from lagent.errors import EngineStartError

__all__ = ['ChildServerMixin', 'ServerProcess', 'ensure_port_free', 'free_port']

logger = logging.getLogger(__name__)

_SUPERVISOR = Path(__file__).with_name('_supervisor.py')
_POLL_S = 0.1
_PROBE_TIMEOUT_S = 2.0
_LOG_TAIL_LINES = 20
_MASK = '***'
_OPENAI_PROBES = (('/health', (200, 404)), ('/v1/models', (200,)))
"""Readiness of an OpenAI-style server: ``/health`` if it has one, then its model list."""


def free_port(host: str = '127.0.0.1') -> int:
    """Return a TCP port on ``host`` that is free right now."""
    family, address = _bind_address(host, 0)
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind(address)
        return sock.getsockname()[1]


def ensure_port_free(host: str, port: int) -> None:
    """Check that a server could listen on ``host:port``.

    Raises:
        EngineStartError: Something already listens there (or the address is invalid).
    """
    try:
        family, address = _bind_address(host, port)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no conflict
            sock.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise EngineStartError(f'cannot start a server on {_host_port(host, port)}: {reason}') from exc


class ServerProcess:
    """A server command run as a child process, ready once it answers HTTP.

    Readiness, by default: ``GET /health`` answers 200 (or 404: the server has
    no such endpoint), then ``GET /v1/models`` answers 200; ``ready_paths``
    names other endpoints that must all answer 200 instead. A copy of the owner made
    by ``os.fork`` neither stops the server nor keeps it alive. POSIX only
    (the kernel guards described above are Linux's; elsewhere the supervisor
    still stops the server when the owner's pipe closes).

    Example::

        with ServerProcess(['python', '-m', 'llama_cpp.server', ...], port=8000) as server:
            requests.get(f'{server.url}/v1/models')

    Args:
        command: The server's argv; ``command[0]`` is looked up on PATH.
        host: The address the server listens on.
        port: The port the server listens on.
        name: A short name for logs and errors (default: the executable's name).
        log_path: Where the server's stdout and stderr go. By default a
            temporary file, removed by :meth:`stop` unless the server failed.
        ready_timeout: Seconds to wait for the server to become ready.
        stop_timeout: Seconds between SIGTERM and SIGKILL when stopping.
        api_key: A key sent as ``Authorization: Bearer`` with readiness probes.
        secrets: Strings (API keys) masked in the logged command line and in
            quoted log lines.
        env: The server's environment (default: this process's).
        ready_paths: Paths that must all answer 200 before the server counts as
            ready (default: the OpenAI-style probe above).
        cwd: The server's working directory (default: this process's).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        host: str = '127.0.0.1',
        port: int,
        name: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
        ready_timeout: float = 600.0,
        stop_timeout: float = 10.0,
        api_key: str | None = None,
        secrets: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ready_paths: Sequence[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ):
        if not command:
            raise ValueError('command must not be empty')
        self._command = [str(arg) for arg in command]
        self.host = host
        self.port = port
        self.name = name or Path(self._command[0]).name
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.env = dict(env) if env is not None else None
        self.ready_paths = tuple(ready_paths) if ready_paths is not None else None
        self.cwd = cwd
        self._api_key = api_key
        self._secrets = tuple(secret for secret in (*secrets, api_key) if secret)
        self._log_path = Path(log_path) if log_path is not None else None
        self._owns_log = log_path is None
        self._keep_log = False
        self._supervisor: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._pid: int | None = None
        self._returncode: int | None = None
        self._stopped = False
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        state = 'running' if self.running else 'stopped' if self._supervisor else 'not started'
        return f'{type(self).__name__}(name={self.name!r}, url={self.url!r}, pid={self._pid}, {state})'

    # ------------------------------------------------------------------ state

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:23333``."""
        host = {'0.0.0.0': '127.0.0.1', '': '127.0.0.1', '::': '::1'}.get(self.host, self.host)
        return f'http://{_host_port(host, self.port)}'

    @property
    def command_line(self) -> str:
        """The server's command line, as a shell would read it, secrets masked."""
        return self._mask(shlex.join(self._command))

    @property
    def pid(self) -> int | None:
        """The server's PID, which is also its process group id (``None`` before start)."""
        return self._pid

    @property
    def log_path(self) -> Path | None:
        """The file holding the server's output."""
        return self._log_path

    @property
    def running(self) -> bool:
        """Whether the server is running (started and not exited)."""
        return self._supervisor is not None and self._supervisor.poll() is None

    @property
    def returncode(self) -> int | None:
        """The server's exit status once it has exited (negative: killed by that signal)."""
        if self._supervisor is not None and self._supervisor.poll() is not None:
            self._read_exit_status()
        return self._returncode

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the server's output, secrets masked."""
        if self._log_path is None or not self._log_path.exists():
            return ''
        with open(self._log_path, 'rb') as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode('utf-8', errors='replace')
        return self._mask('\n'.join(text.splitlines()[-lines:]))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ServerProcess:
        """Spawn the server and wait until it is ready.

        Returns:
            ``self``.

        Raises:
            EngineStartError: The port is taken, the command cannot run, the
                server exited early (the message quotes the end of its log) or
                did not become ready within ``ready_timeout``. The server is
                stopped before the error is raised.
        """
        with self._lock:
            if self._supervisor is not None:
                raise RuntimeError(f'{self.name} was already started')
            self._owner_pid = os.getpid()
            ensure_port_free(self.host, self.port)
            self._spawn()
        try:
            self._wait_ready()
        except BaseException:
            self._keep_log = True
            self.stop()
            raise
        logger.info('%s is ready at %s (pid %s)', self.name, self.url, self._pid)
        return self

    def stop(self) -> None:
        """Stop the server and its whole process group: SIGTERM, then SIGKILL
        after ``stop_timeout``. Calling it again, or before start, does nothing."""
        if os.getpid() != self._owner_pid:
            return  # a forked copy of the owner: the server is not ours to stop
        with self._lock:
            supervisor = self._supervisor
            if supervisor is None or self._stopped:
                return
            self._stopped = True
            _forget(self)
            if supervisor.poll() is None:
                logger.info('stopping %s (pid %s)', self.name, self._pid)
            with contextlib.suppress(OSError):
                supervisor.stdin.close()  # type: ignore[union-attr]  # end of file: the supervisor stops the server
            try:
                supervisor.wait(self.stop_timeout + 5)
            except subprocess.TimeoutExpired:
                logger.warning('%s (pid %s) did not stop in time; killing it', self.name, self._pid)
                if self._pid is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(self._pid, signal.SIGKILL)
                supervisor.kill()
                supervisor.wait()
            self._read_exit_status()
            supervisor.stdout.close()  # type: ignore[union-attr]
            if self._owns_log and not self._keep_log and self._log_path is not None:
                with contextlib.suppress(OSError):
                    self._log_path.unlink()

    def __enter__(self) -> ServerProcess:
        if self._supervisor is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _spawn(self) -> None:
        if self._log_path is None:
            handle, path = tempfile.mkstemp(prefix=f'lagent-{self.name}-', suffix='.log')
            os.close(handle)
            self._log_path = Path(path)
        logger.info('starting %s: %s (log: %s)', self.name, self.command_line, self._log_path)
        argv = [sys.executable, '-I', str(_SUPERVISOR), str(self.stop_timeout), '--', *self._command]
        with open(self._log_path, 'ab') as log:
            supervisor = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        self._supervisor = supervisor
        _remember(self)
        first = supervisor.stdout.readline().decode(errors='replace').strip()  # type: ignore[union-attr]
        if not first.isdigit():  # the command could not be run: the reason is in the message
            self.stop()
            reason = first.removeprefix('error ') or 'the supervisor exited'
            raise EngineStartError(f'cannot run {self.name}: {self._mask(reason)}')
        self._pid = int(first)

    def _wait_ready(self) -> None:
        supervisor = cast('subprocess.Popen[bytes]', self._supervisor)
        deadline = time.monotonic() + self.ready_timeout
        headers = {'Authorization': f'Bearer {self._api_key}'} if self._api_key else {}
        with requests.Session() as session:
            session.headers.update(headers)
            session.trust_env = False  # a proxy from the environment must not see loopback probes
            while True:
                if supervisor.poll() is not None:
                    raise EngineStartError(
                        f'{self.name} exited with code {self.returncode} before it was ready; '
                        f'last lines of its log ({self._log_path}):\n{self.log_tail()}'
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise EngineStartError(
                        f'{self.name} was not ready at {self.url} after {self.ready_timeout:g}s; '
                        f'last lines of its log ({self._log_path}):\n{self.log_tail()}'
                    )
                if self._probe(session, min(_PROBE_TIMEOUT_S, remaining)):
                    return
                time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))

    def _probe(self, session: requests.Session, timeout: float) -> bool:
        probes = [(path, (200,)) for path in self.ready_paths] if self.ready_paths is not None else _OPENAI_PROBES
        for path, good in probes:
            try:
                status = session.get(f'{self.url}{path}', timeout=timeout).status_code
            except requests.RequestException:
                return False
            if status in (401, 403):
                raise EngineStartError(f'{self.name} at {self.url} refused the API key (HTTP {status})')
            if status not in good:
                return False
        return True

    def _read_exit_status(self) -> None:
        if self._returncode is not None or self._supervisor is None or self._supervisor.stdout is None:
            return
        with contextlib.suppress(OSError, ValueError):
            for line in self._supervisor.stdout.read().decode(errors='replace').splitlines():
                if line.startswith('exited '):
                    self._returncode = int(line.split()[1])

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        return text


# ---------------------------------------------------------------------- stop at exit and on SIGTERM

_live: set[ServerProcess] = set()
_live_lock = threading.RLock()
_hooks_installed = False
_sigterm_installed = False
_previous_sigterm: Any = None


def _remember(process: ServerProcess) -> None:
    with _live_lock:
        _live.add(process)
        _install_hooks()


def _forget(process: ServerProcess) -> None:
    with _live_lock:
        _live.discard(process)


def _stop_all() -> None:
    with _live_lock:
        processes = list(_live)
    for process in processes:
        try:
            process.stop()
        except Exception:  # keep stopping the others
            logger.exception('could not stop %s', process.name)


def _forget_all_in_forked_child() -> None:
    """A forked child owns none of its parent's servers: it must neither stop them
    nor keep their supervisors' pipes open (which would hide the parent's death).
    Runs right after fork, in the only thread of the child: no locks taken."""
    global _live_lock
    for process in list(_live):
        if process._supervisor is not None and process._supervisor.stdin is not None:
            with contextlib.suppress(OSError):
                process._supervisor.stdin.close()
    _live.clear()
    _live_lock = threading.RLock()


os.register_at_fork(after_in_child=_forget_all_in_forked_child)


def _install_hooks() -> None:
    global _hooks_installed, _sigterm_installed, _previous_sigterm
    if not _hooks_installed:
        atexit.register(_stop_all)
        _hooks_installed = True
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread: tried again at the next start
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN:
        return  # this process ignores SIGTERM: it will not die of it, so neither should its servers
    _previous_sigterm = previous
    signal.signal(signal.SIGTERM, _on_sigterm)
    _sigterm_installed = True


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous in (signal.SIG_DFL, None):  # the default action: terminate, as if we had not been here
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _bind_address(host: str, port: int) -> tuple[socket.AddressFamily, Any]:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    return family, address


def _host_port(host: str, port: int) -> str:
    return f'[{host}]:{port}' if ':' in host else f'{host}:{port}'


class ChildServerMixin:
    """Stops an engine's child server with the engine: mixed in before an HTTP
    engine class (``class XServer(ChildServerMixin, OpenAICompatible)``).

    The engine sets ``self.process`` and, once its client part is set up, calls
    :meth:`_start_server`; ``close()``/``aclose()`` then close the client and
    stop the server, and an engine dropped without ``close()`` still stops it.
    """

    process: ServerProcess

    def _start_server(self) -> None:
        try:
            self.process.start()
        except BaseException:
            super().close()  # type: ignore[misc]
            raise
        weakref.finalize(self, self.process.stop)

    def close(self) -> None:
        """Close the client's connections and stop the server."""
        try:
            super().close()  # type: ignore[misc]
        finally:
            self.process.stop()

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (the server is stopped in a worker thread)."""
        try:
            await super().aclose()  # type: ignore[misc]
        finally:
            await asyncio.to_thread(self.process.stop)
