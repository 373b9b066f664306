"""Who the sandbox's code runs as: a uid of its own per run (root only), a named user, or the parent's user.

How the interpreter is chosen for that user is
:func:`lagent.actions._sandbox.choose_identity`.

A parent running as root gives every run or session a uid of its own, leased
from :data:`SESSION_UIDS`: two sandboxes never share a uid, so they cannot
signal each other's processes, read each other's files or share a process
count, and every process of a run can be found by its uid. Leases are
``flock`` locks on files in a root-only directory, so several processes on
one machine never hand out the same uid; the kernel drops a lock when its
process dies.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    'PER_SESSION',
    'SAFE_PATH',
    'SESSION_UIDS',
    'RunAs',
    'UidLease',
    'executable_by',
    'lease_session_uid',
    'run_as_user',
]

logger = logging.getLogger(__name__)

PER_SESSION = 'auto'
"""The ``user`` that asks for a uid of its own per run or session."""
SESSION_UIDS = range(0x70000000, 0x70010000)
"""The uids (and gids) leased to sandboxes: above the ranges that systems hand
to users, services and containers' user namespaces, and without a user name."""
SAFE_PATH = '/usr/local/bin:/usr/bin:/bin'
"""``PATH`` inside the sandbox; also where a system ``python3`` is looked for."""
_LEASE_DIRECTORIES = (Path('/run/lagent-sandbox-uids'), Path(tempfile.gettempdir()) / 'lagent-sandbox-uids')


@dataclass(frozen=True)
class RunAs:
    """Who the code runs as."""

    ids: tuple[int, int] | None = None
    """A fixed ``(uid, gid)``; ``None`` (and not :attr:`per_session`): the parent's own user."""
    per_session: bool = False
    """A uid (and gid) of its own for every run or session, from :data:`SESSION_UIDS`."""

    @property
    def typical_ids(self) -> tuple[int, int] | None:
        """The ids the code runs as, or ones like them (all leased uids are alike to the file system)."""
        return (SESSION_UIDS[0], SESSION_UIDS[0]) if self.per_session else self.ids

    def __str__(self) -> str:
        if self.per_session:
            return 'a uid of its own'
        return 'the parent user' if self.ids is None else f'uid {self.ids[0]}'


class UidLease:
    """One uid of :data:`SESSION_UIDS`, held until :meth:`release`."""

    def __init__(self, uid: int, fd: int, path: Path):
        self.uid = uid
        """The leased uid; the gid is the same number."""
        self._fd: int | None = fd
        self._path = path

    def release(self) -> None:
        """Give the uid back (idempotent); call it once no process of the uid is left."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self._path.unlink()  # while still locked: a waiting taker then sees another file and retries
        os.close(self._fd)
        self._fd = None


def run_as_user(user: str) -> RunAs | None:
    """Who ``user`` (:data:`PER_SESSION` or a user name) is; ``None`` if no such user exists (root only)."""
    if user == PER_SESSION:
        return RunAs(per_session=True)
    import pwd  # POSIX only: imported here so that importing lagent.actions works everywhere

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return RunAs(ids=(entry.pw_uid, entry.pw_gid))


def lease_session_uid() -> UidLease:
    """Lease a uid of :data:`SESSION_UIDS` no other sandbox on this machine holds (root only).

    Raises:
        RuntimeError: No lease directory is safe to use, or every uid is taken.
    """
    import fcntl  # POSIX only: imported here so that importing lagent.actions works everywhere

    directory = _lease_directory()
    count = len(SESSION_UIDS)
    start = secrets.randbelow(count)
    for offset in range(count):
        uid = SESSION_UIDS[(start + offset) % count]
        path = directory / str(uid)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
                return UidLease(uid, fd, path)
        except OSError as exc:  # taken, or released and removed meanwhile
            if exc.errno not in (errno.EWOULDBLOCK, errno.ENOENT):
                os.close(fd)
                raise
        os.close(fd)
    raise RuntimeError(f'every sandbox uid ({count}) is taken')


def _lease_directory() -> Path:
    for directory in _LEASE_DIRECTORIES:
        with contextlib.suppress(FileExistsError, FileNotFoundError, PermissionError):
            directory.mkdir(mode=0o700)
        try:
            info = directory.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o077:
            return directory
        logger.warning('%s is not a directory only root can write to; not leasing sandbox uids from it', directory)
    raise RuntimeError('no safe directory to lease sandbox uids from: ' + ', '.join(map(str, _LEASE_DIRECTORIES)))


def executable_by(path: Path, uid: int, gid: int) -> bool:
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
