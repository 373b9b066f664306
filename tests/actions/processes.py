"""Process inspection through the host's /proc, for checking that sandboxes leave nothing behind."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return False
    return stat.rsplit(')', 1)[1].split()[0] != 'Z'


def processes_in_group(pgid: int) -> list[int]:
    """Every process (zombies included) whose process group is ``pgid``."""
    return [pid for pid, fields in _stats() if int(fields[2]) == pgid]


def processes_of_uid(uid: int) -> list[int]:
    """Every process (zombies included) whose real uid is ``uid``."""
    found = []
    for pid in _pids():
        try:
            status = Path(f'/proc/{pid}/status').read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith('Uid:') and int(line.split()[1]) == uid:
                found.append(pid)
    return found


def processes_in_pid_namespace(namespace: str) -> list[int]:
    """Every process in the PID namespace ``namespace`` (as ``readlink /proc/PID/ns/pid`` names it)."""
    found = []
    for pid in _pids():
        try:
            if os.readlink(f'/proc/{pid}/ns/pid') == namespace:
                found.append(pid)
        except OSError:
            continue
    return found


def processes_running(marker: str) -> list[int]:
    """Every process whose command line contains ``marker``."""
    found = []
    for pid in _pids():
        try:
            command = Path(f'/proc/{pid}/cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        if marker in command and pid != os.getpid():
            found.append(pid)
    return found


def sleep_marker() -> str:
    """A ``sleep`` duration no other process uses, e.g. ``'3600.4821937'``: ``sleep MARKER`` is findable."""
    return f'3600.{secrets.randbelow(10**9):09d}'


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir('/proc') if entry.isdigit()]


def _stats() -> list[tuple[int, list[str]]]:
    found = []
    for pid in _pids():
        try:
            found.append((pid, Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()))
        except OSError:
            continue
    return found
