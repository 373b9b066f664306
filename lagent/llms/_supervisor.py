"""Supervisor of one server child, run as a separate small Python process.

:class:`lagent.llms.process.ServerProcess` starts this script (by path, with
only the standard library) instead of the server itself. It

* starts the server command in a process group of its own, with
  ``PR_SET_PDEATHSIG`` so the server dies if this supervisor dies;
* writes the server's PID as the first line of its stdout;
* stops the server's whole group (SIGTERM, then SIGKILL after a grace period)
  when its stdin reaches end of file: the owner closed it in ``stop()`` or
  the owner died, even by SIGKILL, since the kernel closes a dead process's
  pipes;
* reaps the server and, being a child subreaper, every orphan of the server
  group, so nothing it started lingers even as a zombie;
* writes ``exited <returncode>`` and exits when the server has exited.

Usage: ``python -I _supervisor.py GRACE_SECONDS -- COMMAND...``. The server's
stdin is /dev/null; its stdout and stderr are this process's stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_POLL_S = 0.2
_REAP_LEFTOVERS_S = 2.0


def _report(line: str) -> None:
    """Tell the owner something, one line on stdout (a pipe the owner reads; gone if the owner is)."""
    with contextlib.suppress(OSError):
        os.write(sys.stdout.fileno(), (line + '\n').encode())


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _die_with_supervisor(supervisor_pid: int) -> None:
    """Runs in the server child between fork and exec (this process has one thread)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor_pid:  # the supervisor died before the signal was armed
        os._exit(1)


class _Supervisor:
    def __init__(self, command: list[str], grace_s: float):
        self.command = command
        self.grace_s = grace_s
        self.pid = 0
        self.returncode: int | None = None
        self.stop_requested = False
        self.kill_at: float | None = None

    def run(self) -> int:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        supervisor_pid = os.getpid()
        try:
            server = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr.fileno(),
                stderr=sys.stderr.fileno(),
                start_new_session=True,
                preexec_fn=lambda: _die_with_supervisor(supervisor_pid),
            )
        except OSError as exc:
            _report(f'error {exc}')
            return 127
        self.pid = server.pid
        _report(str(self.pid))
        self._watch()
        self._reap_leftovers()
        code = self.returncode if self.returncode is not None else 1
        _report(f'exited {code}')
        return code if code >= 0 else 128 - code

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def _watch(self) -> None:
        try:
            pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            pidfd = None
        watched = [sys.stdin.fileno()] + ([pidfd] if pidfd is not None else [])
        while True:
            if self.stop_requested and self.kill_at is None:
                self._kill_group(signal.SIGTERM)
                self.kill_at = time.monotonic() + self.grace_s
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                self._kill_group(signal.SIGKILL)
                self.kill_at = float('inf')
            timeout = _POLL_S if self.kill_at is None else max(0.0, min(_POLL_S, self.kill_at - time.monotonic()))
            readable, _, _ = select.select(watched, [], [], timeout)
            if sys.stdin.fileno() in readable and not os.read(sys.stdin.fileno(), 4096):
                watched.remove(sys.stdin.fileno())  # end of file: the owner is done, or gone
                self.stop_requested = True
            if self._server_exited():
                self._kill_group(signal.SIGKILL)  # its children that outlive it, while its pid holds the group id
            self._reap()
            if self.returncode is not None:
                break
        if pidfd is not None:
            os.close(pidfd)

    def _server_exited(self) -> bool:
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # already reaped
            return False

    def _kill_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)

    def _reap_leftovers(self) -> None:
        deadline = time.monotonic() + _REAP_LEFTOVERS_S
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.02)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != '--':
        sys.stderr.write('usage: _supervisor.py GRACE_SECONDS -- COMMAND...\n')
        return 2
    return _Supervisor(argv[2:], float(argv[0])).run()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
