"""``Server``: engines and agents behind OpenAI's HTTP API, run in the foreground
(stopping gracefully on SIGTERM / Ctrl-C) or in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiohttp import web

from lagent.serve.app import ServerState, create_app
from lagent.serve.models import ModelRegistry, Served

__all__ = ['Server', 'ServerThread']

logger = logging.getLogger(__name__)

_CANCELLED_GRACE_S = 5.0
"""Seconds cancelled requests get to close their engine streams."""


class Server:
    """Serves engines and agents over OpenAI's HTTP API, with a chat page at ``/``.

    Each engine answers ``/v1/chat/completions`` and ``/v1/completions`` under
    its name; each :class:`~lagent.serve.ServedAgent` answers
    ``/v1/chat/completions``, running its tools here and keeping conversations
    by ``session_id``. The server never blocks its event loop on an engine:
    it reads every engine through ``astream`` (in-process engines generate in
    worker threads), and a client that disconnects cancels its generation.

    Args:
        models: Engines (:class:`~lagent.llms.BaseLLM`) and agents
            (:class:`~lagent.serve.ServedAgent`) by the name clients send as ``model``.
        api_keys: Keys accepted as ``Authorization: Bearer <key>`` on ``/v1/``
            routes; none: no authentication.
        max_concurrency: Most generations running at once; more get 429 with ``Retry-After``.
        max_sessions: Most agent sessions kept (the least recently used idle one is forgotten first).
        max_body_bytes: Largest request body accepted; larger bodies get 413.
        drain_timeout: Seconds running requests get to finish when the server stops.
        close_models: Close the engines and the agents' tools when the server stops
            (for models built only to be served, as ``lagent serve`` does).

    Raises:
        ValueError: No models, a bad name, or a limit below 1.

    Example:
        >>> from lagent.llms import ScriptedLLM
        >>> server = Server({'echo': ScriptedLLM(['Hello!'])}, api_keys=['sk-local'])
        >>> with server.run_in_thread() as url:  # any free port; stopped at the end of the block
        ...     url.startswith('http://127.0.0.1:')
        True
    """

    def __init__(
        self,
        models: Mapping[str, Served],
        *,
        api_keys: Iterable[str] = (),
        max_concurrency: int = 256,
        max_sessions: int = 1000,
        max_body_bytes: int = 4 << 20,
        drain_timeout: float = 30.0,
        close_models: bool = False,
    ):
        if drain_timeout < 0:
            raise ValueError(f'drain_timeout must be >= 0, got {drain_timeout}')
        self.registry = ModelRegistry(models)
        self.state = ServerState(
            self.registry, api_keys=api_keys, max_concurrency=max_concurrency, max_sessions=max_sessions
        )
        self.app = create_app(self.state, max_body_bytes=max_body_bytes)
        """The aiohttp application (to run in an aiohttp setup of your own)."""
        self.drain_timeout = drain_timeout
        self.close_models = close_models
        self.url: str | None = None
        """The address clients use, once started."""
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f'{type(self).__name__}(models={self.registry.names!r}, url={self.url!r})'

    # ------------------------------------------------------------------ async lifecycle

    async def start(self, host: str = '127.0.0.1', port: int = 8000) -> str:
        """Start listening (``port=0``: any free port).

        Returns:
            The base URL clients use, e.g. ``http://127.0.0.1:8000``.

        Raises:
            OSError: The address cannot be listened on.
            RuntimeError: The server was already started.
        """
        if self._runner is not None:
            raise RuntimeError('the server was already started')
        runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=_CANCELLED_GRACE_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, backlog=2048)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        shown = {'0.0.0.0': '127.0.0.1', '': '127.0.0.1', '::': '::1'}.get(host, host)
        shown = f'[{shown}]' if ':' in shown else shown
        self.url = f'http://{shown}:{bound[1]}'
        logger.info('serving %s at %s', ', '.join(self.registry.names), self.url)
        return self.url

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop taking requests, let the running ones finish, then close.

        New connections are refused at once and requests on open connections
        get 503; running generations have ``drain_timeout`` seconds (default:
        the server's) to finish, then they are cancelled (closing their engine
        streams). Engines and tools are closed if ``close_models`` is set.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.draining = True
        for site in list(runner.sites):
            await site.stop()
        timeout = self.drain_timeout if drain_timeout is None else drain_timeout
        if not await self.state.wait_idle(timeout):
            logger.warning('%d requests still running after %gs; cancelling them', self.state.active, timeout)
            self.state.cancel_all()
        await runner.cleanup()
        if self.close_models:
            await self.aclose_models()
        logger.info('stopped')

    async def aclose_models(self) -> None:
        """Close every engine (stopping child servers) and the agents' tools."""
        for agent in self.registry.agents():
            await asyncio.to_thread(agent.close)
        for llm in self.registry.engines():
            try:
                await llm.aclose()
            except Exception:  # close the others all the same
                logger.exception('could not close %r', llm)

    # ------------------------------------------------------------------ running

    def run(self, host: str = '127.0.0.1', port: int = 8000, *, ready: Callable[[str], Any] | None = None) -> None:
        """Serve until SIGTERM or SIGINT (Ctrl-C), then stop gracefully (see :meth:`stop`).

        A second signal cancels the running requests at once. While it serves,
        the objects that existed when it started listening are frozen out of the
        garbage collector's scans (:func:`gc.freeze`), as long-lived servers do.

        Args:
            host: The address to listen on.
            port: The port (``0``: any free port).
            ready: Called with the URL once the server listens.
        """
        asyncio.run(self._serve_until_signal(host, port, ready))

    async def _serve_until_signal(self, host: str, port: int, ready: Callable[[str], Any] | None) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()

        def on_signal(signum: int) -> None:
            if stopping.is_set():
                logger.warning('second %s: cancelling the running requests', signal.Signals(signum).name)
                self.state.cancel_all()
                return
            logger.info('%s: finishing running requests (up to %gs)', signal.Signals(signum).name, self.drain_timeout)
            stopping.set()

        url = await self.start(host, port)
        # What exists now (modules, engines, the app) lives as long as the process: keep it out of the
        # collector's full scans, whose cost would otherwise grow with it and land on every streamed token.
        gc.collect()
        gc.freeze()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            if ready is not None:
                ready(url)
            await stopping.wait()
            await self.stop()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            await self.stop(0)
            gc.unfreeze()

    def run_in_thread(self, host: str = '127.0.0.1', port: int = 0) -> ServerThread:
        """Serve from a background thread (its own event loop), starting now.

        Args:
            host: The address to listen on.
            port: The port (default ``0``: any free port).

        Returns:
            The running server: its ``url``, and ``stop()`` to stop it gracefully.
            As a context manager it gives the URL and stops the server on exit.

        Raises:
            OSError: The address cannot be listened on.
        """
        return ServerThread(self, host, port)


class ServerThread:
    """A :class:`Server` running in a background thread; see :meth:`Server.run_in_thread`."""

    def __init__(self, server: Server, host: str, port: int):
        self.server = server
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        outcome: dict[str, Any] = {}

        def main() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                outcome['url'] = self._loop.run_until_complete(server.start(host, port))
            except BaseException as exc:  # raised by the constructor, in the caller's thread
                outcome['error'] = exc
                started.set()
                self._loop.close()
                return
            started.set()
            try:
                self._loop.run_forever()
                self._loop.run_until_complete(server.stop())
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=main, name='lagent-serve', daemon=True)
        self._thread.start()
        started.wait()
        if 'error' in outcome:
            self._thread.join()
            raise outcome['error']
        self.url: str = outcome['url']
        """The base URL clients use."""

    def stop(self) -> None:
        """Stop the server gracefully (see :meth:`Server.stop`) and wait for its thread; twice is fine."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
