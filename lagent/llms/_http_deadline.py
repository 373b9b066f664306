"""The total deadline of sync HTTP calls.

``requests`` only knows per-read timeouts: a server that sends a byte now and
then (in its headers, or inside one huge HTTP chunk) keeps a call going for
ever. Here one daemon thread (:class:`Watchdog`) shuts a call's socket down
when its deadline passes; the blocked read returns at once, and
:func:`total_timeout` reports what broke as the total timeout. The socket is
armed by the connection class of the pools of a :func:`watched_session`, once
the request is sent and its answer awaited (through an HTTP proxy too).
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import urllib3
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter

from lagent.errors import LLMTimeoutError

__all__ = [
    'WATCHDOG',
    'Watch',
    'Watchdog',
    'check_not_expired',
    'close_session',
    'total_timeout',
    'watched_session',
    'watching',
]


class Watch:
    """The deadline of one sync request: past it, the request's socket is shut down."""

    __slots__ = ('cancelled', 'deadline', 'fired', 'sock')

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.sock: socket.socket | None = None
        self.fired = False
        self.cancelled = False

    def __lt__(self, other: Watch) -> bool:
        return self.deadline < other.deadline


class Watchdog:
    """One daemon thread that enforces the total deadline of sync requests.

    ``requests`` only knows per-read timeouts: a server that sends a byte now
    and then (in the headers, or inside one huge HTTP chunk) keeps a read going
    for ever. Instead of racing it, the watchdog shuts the socket down when the
    deadline passes; the blocked read returns at once and the transport reports
    the total timeout.
    """

    def __init__(self) -> None:
        self._heap: list[Watch] = []
        self._cancelled = 0
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: float) -> Watch:
        """Start watching a request that must end by ``deadline`` (``time.monotonic()`` seconds)."""
        entry = Watch(deadline)
        with self._condition:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name='lagent-http-deadlines', daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._condition.notify()
        return entry

    def arm(self, entry: Watch, sock: socket.socket | None) -> None:
        """The request's bytes now travel on ``sock``: shut it down at the deadline (or now, if past)."""
        with self._condition:
            if entry.cancelled:
                return
            entry.sock = sock
            if entry.fired:
                _shut(sock)

    def cancel(self, entry: Watch) -> None:
        """The request is over: leave its socket alone."""
        with self._condition:
            if not entry.cancelled:
                entry.cancelled = True
                entry.sock = None
                self._cancelled += 1
                if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                    self._heap = [item for item in self._heap if not item.cancelled]
                    heapq.heapify(self._heap)
                    self._cancelled = 0

    def _run(self) -> None:
        heap, condition = self._heap, self._condition
        with condition:
            while True:
                heap = self._heap
                while heap and heap[0].cancelled:
                    heapq.heappop(heap)
                    self._cancelled -= 1
                if not heap:
                    condition.wait()
                    continue
                wait = heap[0].deadline - time.monotonic()
                if wait > 0:
                    condition.wait(wait)
                    continue
                entry = heapq.heappop(heap)
                entry.fired = True
                _shut(entry.sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):
        # socket.socket's own shutdown, also for an SSLSocket: its override would
        # drop the TLS object under the thread that is reading it
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


WATCHDOG = Watchdog()
_current = threading.local()
"""The :class:`Watch` of the request this thread is sending, for the connection to arm."""


class _WatchedConnectionMixin:
    """Arms the deadline of the request being sent once its socket is known."""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        entry = getattr(_current, 'watch', None)
        if entry is not None:
            WATCHDOG.arm(entry, self.sock)  # type: ignore[attr-defined]
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {'http': _WatchedHTTPPool, 'https': _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections arm the deadline of the request being sent (see :func:`watching`)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):  # a SOCKS proxy brings connections of its own
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def watched_session(pool_maxsize: int, *, trust_env: bool) -> requests.Session:
    """A ``requests`` session whose requests, sent in a :func:`watching` block, are bound by its watch.

    Args:
        pool_maxsize: Connections kept open per host.
        trust_env: Whether the session reads proxies (and ``.netrc``) from the environment.
    """
    session = requests.Session()
    adapter = _WatchedAdapter(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)
    session.mount('http://', adapter)
    session.mount('https://', adapter)
    session.trust_env = trust_env
    return session


def close_session(session: requests.Session) -> None:
    """Close a session and its connections now. (urllib3 2 leaves a pool's
    connections to the garbage collector, which a traceback can hold off.)"""
    for adapter in session.adapters.values():
        managers = [getattr(adapter, 'poolmanager', None), *getattr(adapter, 'proxy_manager', {}).values()]
        for manager in managers:
            pools = getattr(manager, 'pools', None)
            for key in list(pools.keys()) if pools is not None else ():
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
    session.close()


@contextlib.contextmanager
def watching(watch: Watch | None) -> Iterator[None]:
    """Requests sent by this thread in this block (through a :func:`watched_session`) are bound by ``watch``."""
    _current.watch = watch
    try:
        yield
    finally:
        _current.watch = None


@contextlib.contextmanager
def total_timeout(watch: Watch | None, what: str) -> Iterator[None]:
    """Report whatever breaks once the watchdog has shut the socket down as the total timeout."""
    try:
        yield
    except Exception as exc:
        if watch is not None and watch.fired:
            raise LLMTimeoutError(f'{what}: the total timeout expired') from exc
        raise


def check_not_expired(watch: Watch | None, what: str) -> None:
    if watch is not None and watch.fired:
        raise LLMTimeoutError(f'{what}: the total timeout expired')
