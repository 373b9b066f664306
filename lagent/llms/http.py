"""The one HTTP transport of the served engines: JSON requests and streamed
responses, sync (``requests``) and async (``aiohttp``).

Engines never touch sockets; they hand a path and a JSON body to
:class:`HTTPTransport` and get back decoded JSON, or a stream of items built
from each event. How a streamed body becomes events (SSE, NDJSON...) is the
business of a protocol from :mod:`lagent.llms.protocols`, chosen per call. The
transport owns:

* retries, bounded and counted: connection errors, 429 (honouring
  ``Retry-After``) and 5xx are retried with exponential backoff and jitter;
  other 4xx never are. A stream is retried only until its first event;
* timeouts: connect, idle (the longest wait for the next bytes) and total
  (the whole call, retries included). The total holds against servers that
  trickle bytes: a sync call's socket is shut down when its deadline passes
  (:mod:`lagent.llms._http_deadline`), an async call runs under ``aiohttp``'s
  total timeout;
* errors: every ``requests``/``urllib3``/``aiohttp`` failure is converted
  into :mod:`lagent.errors` in one place (:func:`translate_errors`, in
  :mod:`lagent.llms._http_errors` with the handling of error bodies and
  ``Retry-After``);
* secrets: the API key travels only in the ``Authorization`` header; it is
  checked at construction, and removed from every error that leaves here
  (a server's error body that echoes it included);
* closing a stream early closes its connection (the server stops generating).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import select
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import requests
import urllib3

from lagent.errors import APIStatusError, LLMConnectionError, LLMError, LLMTimeoutError, StreamError
from lagent.llms._http_deadline import (
    WATCHDOG,
    Watch,
    check_not_expired,
    close_session,
    total_timeout,
    watched_session,
    watching,
)
from lagent.llms._http_errors import (
    ERROR_BODY_LIMIT,
    REDACTED,
    parse_retry_after,
    status_error_from,
    translate_errors,
    without_secret,
)
from lagent.llms.protocols.base import STREAM_END, EventStream, one_item_per_event
from lagent.llms.streaming import BatchedIterator

__all__ = ['EventParser', 'HTTPTransport', 'check_base_url', 'translate_errors']

logger = logging.getLogger(__name__)

T = TypeVar('T')
EventParser = Callable[[list[Any]], Iterable[T]]
"""Builds the items of a stream from the decoded events of one network read
(one event or several: a parser may merge them, e.g. join their text deltas)."""
StreamProtocol = Callable[[], EventStream]
"""Makes the :class:`~lagent.llms.protocols.EventStream` that reads one response
body (an ``EventStream`` subclass, or a ``functools.partial`` of one)."""

_READ_SIZE = 1 << 16
_PARSE_SLICE = 64


# ---------------------------------------------------------------------- checking what we send


def check_base_url(url: Any) -> str:
    """Return ``url`` if it is an ``http(s)://host[:port][/path]`` address, else raise.

    Raises:
        ValueError: No URL, a URL without a scheme or host, another scheme, a
            bad port, or whitespace/control characters in it.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f'a server URL is required, like http://127.0.0.1:8000 (got {url!r})')
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise ValueError(f'the server URL must not contain spaces or control characters: {url!r}')
    parts = urlsplit(url)
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        raise ValueError(
            f'the server URL must start with http:// or https:// and name a host, e.g. http://{url} (got {url!r})'
        )
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise ValueError(f'the server URL has an invalid port: {url!r} ({exc})') from None
    if not parts.hostname:
        raise ValueError(f'the server URL names no host: {url!r}')
    return url


def _check_header_value(name: str, value: Any, *, secret: bool = False) -> str:
    """A header value must be text without control characters (CR/LF would split the header)."""
    shown = 'it' if secret else repr(value)
    if not isinstance(value, str):
        raise ValueError(f'{name} must be a string, got {type(value).__name__}')
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError(f'{name} must not contain control characters (CR, LF, NUL...); check {shown}')
    try:
        value.encode('latin-1')
    except UnicodeEncodeError:
        raise ValueError(f'{name} must contain only Latin-1 characters; check {shown}') from None
    if value != value.strip():
        raise ValueError(f'{name} must not start or end with whitespace; check {shown}')
    return value


def _positive_seconds(name: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'{name} must be a number of seconds, got {value!r}')
    if not (math.isfinite(value) and value > 0):
        hint = ' (use None for no limit)' if optional and value == math.inf else ''
        raise ValueError(f'{name} must be a positive, finite number of seconds, got {value!r}{hint}')
    return float(value)


# ---------------------------------------------------------------------- the transport


class HTTPTransport:
    """JSON requests and streamed responses against one server, sync and async.

    One ``requests.Session`` serves the sync calls (from any thread) and one
    ``aiohttp.ClientSession`` per event loop serves the async ones.

    Args:
        base_url: The server's API root, e.g. ``http://127.0.0.1:23333/v1``.
        api_key: Sent as ``Authorization: Bearer <api_key>``; never logged or shown.
        max_retries: Retries after the first attempt (``0``: never retry).
        connect_timeout: Seconds to establish a connection.
        idle_timeout: Seconds to wait for the next bytes of a stream.
        timeout: Seconds the whole call may take, retries included (``None``: no limit).
        retry_backoff: Base delay of the exponential backoff, in seconds.
        max_connections: Connections kept open per session (sync) / for each loop (async, ``0``: no limit).

    Raises:
        ValueError: A URL that is not ``http(s)://host...``, an API key with
            control characters, a negative retry count or a timeout that is not
            a positive finite number.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        max_retries: int = 2,
        connect_timeout: float = 10.0,
        idle_timeout: float = 120.0,
        timeout: float | None = 600.0,
        retry_backoff: float = 0.5,
        max_connections: int = 0,
    ):
        check_base_url(base_url)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f'max_retries must be an integer >= 0, got {max_retries!r}')
        if isinstance(retry_backoff, bool) or not isinstance(retry_backoff, (int, float)):
            raise ValueError(f'retry_backoff must be a number of seconds, got {retry_backoff!r}')
        if not (math.isfinite(retry_backoff) and retry_backoff >= 0):
            raise ValueError(f'retry_backoff must be a finite number of seconds >= 0, got {retry_backoff!r}')
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 0:
            raise ValueError(f'max_connections must be an integer >= 0, got {max_connections!r}')
        self.base_url = base_url.rstrip('/')
        self.max_retries = max_retries
        self.connect_timeout = _positive_seconds('connect_timeout', connect_timeout)
        self.idle_timeout = _positive_seconds('idle_timeout', idle_timeout)
        self.timeout = _positive_seconds('timeout', timeout, optional=True)
        self.retry_backoff = float(retry_backoff)
        self.max_connections = max_connections
        self._headers = {'Content-Type': 'application/json', 'Accept': 'application/json, text/event-stream'}
        self._secret: str | None = None
        if api_key is not None and api_key != '':
            self._secret = _check_header_value('api_key', api_key, secret=True)
            self._headers['Authorization'] = f'Bearer {api_key}'
        self._session: requests.Session | None = None
        self._async_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        key = REDACTED if self._secret else None
        return f'{type(self).__name__}(base_url={self.base_url!r}, api_key={key!r})'

    # ------------------------------------------------------------------ sync

    def get_json(self, path: str, *, timeout: float | None = None) -> Any:
        """``GET`` a JSON document.

        Raises:
            APIStatusError: The server answered with an error status (after retries).
            LLMConnectionError: The server could not be reached (after retries).
            StreamError: The body is not JSON.
        """
        return self._call_json(self._prepare('GET', path, None, timeout, None))

    def post_json(
        self, path: str, body: Mapping[str, Any], *, timeout: float | None = None, request_id: str | None = None
    ) -> Any:
        """``POST`` a JSON body and return the decoded JSON answer.

        Args:
            path: Path under ``base_url``, e.g. ``'/completions'``.
            body: The JSON request.
            timeout: Total seconds for this call (``None``: the transport's ``timeout``).
            request_id: Sent as ``X-Request-Id``.

        Raises:
            ValueError: The body is not JSON (e.g. a NaN), or the request id has control characters.
            APIStatusError: The server answered with an error status (after retries).
            LLMConnectionError: The server could not be reached (after retries).
            LLMTimeoutError: The total timeout expired.
            StreamError: The body is not JSON.
        """
        return self._call_json(self._prepare('POST', path, body, timeout, request_id))

    def delete(self, path: str, *, timeout: float | None = None) -> Any:
        """``DELETE`` a resource and return the decoded JSON answer.

        Raises:
            APIStatusError: The server answered with an error status (after retries).
            LLMConnectionError: The server could not be reached (after retries).
            StreamError: The body is not JSON.
        """
        return self._call_json(self._prepare('DELETE', path, None, timeout, None))

    def stream(
        self,
        path: str,
        body: Mapping[str, Any],
        parse: EventParser[T],
        *,
        protocol: StreamProtocol,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> Iterator[T]:
        """``POST`` a JSON body and stream the answer, read by ``protocol``, until its end.

        Each network read is decoded at once: its events are handed to
        ``parse`` together (a slice at a time), so a reader that falls behind
        the server catches up in fewer, larger items (a benchmark can ask for one
        item per event: :func:`~lagent.llms.protocols.per_event_items`).

        Args:
            path: Path under ``base_url``, e.g. ``'/chat/completions'``.
            body: The JSON request (asking the server to stream).
            parse: Builds the items of the stream from the decoded events of one read.
            protocol: Makes the reader of the body, e.g.
                :class:`~lagent.llms.protocols.SSEStream`.
            timeout: Total seconds for this call (``None``: the transport's ``timeout``).
            request_id: Sent as ``X-Request-Id``.

        Returns:
            A generator that sends the request when first advanced; closing it closes the connection.

        Raises:
            ValueError: At once: the body is not JSON, or the request id has control characters.
            APIStatusError: The server refused the request (after retries).
            LLMConnectionError: The server could not be reached, or the connection broke.
            LLMTimeoutError: No data for ``idle_timeout`` seconds, or the total timeout expired.
            StreamError: An in-band error, malformed data, or an end before the stream's end marker.
        """
        request = self._prepare('POST', path, body, timeout, request_id)
        return self._stream(request, parse, protocol)

    def _stream(self, request: _Request, parse: EventParser[T], protocol: StreamProtocol) -> Iterator[T]:
        response, watch = self._send(request, stream=True)
        what = f'reading the stream of {request.url}'
        try:
            with translate_errors(what, self._secret), total_timeout(watch, what):
                events, one_by_one = protocol(), one_item_per_event()
                for data in _reads(response.raw):
                    items, end = _parse_read(events, data, parse, one_by_one)
                    yield from items
                    if end is not None:
                        break
                    if watch is not None and time.monotonic() > watch.deadline:
                        raise LLMTimeoutError(f'{what}: the total timeout expired')
                else:
                    check_not_expired(watch, what)  # a body cut short by the deadline may look complete
                    items, end = _parse_events(*events.finish(), parse, one_by_one)
                    yield from items
                if end is not STREAM_END:
                    raise end
        except LLMError as error:
            raise without_secret(error, self._secret) from error.__cause__
        finally:
            if watch is not None:
                WATCHDOG.cancel(watch)
            response.close()

    def _call_json(self, request: _Request) -> Any:
        response, watch = self._send(request, stream=False)
        try:
            check_not_expired(watch, f'{request.method} {request.url}')
            return _decode_json(response.content, request.url, self._secret)
        finally:
            if watch is not None:
                WATCHDOG.cancel(watch)
            response.close()

    def _send(self, request: _Request, *, stream: bool) -> tuple[requests.Response, Watch | None]:
        """Send ``request`` until it gets an answer that is not an error status, retrying as configured.

        Returns:
            The response, and the watch of its deadline (to cancel once its body is read).
        """
        session = self._sync_session()
        what = f'{request.method} {request.url}'
        for attempt in range(1, self.max_retries + 2):
            remaining = _remaining(request.deadline, what)
            # streams wait at most idle_timeout for each read; a whole answer may take the total time
            read_timeout = _min(self.idle_timeout, remaining) if stream else remaining
            watch = None if request.deadline is None else WATCHDOG.watch(request.deadline)
            answered = False
            try:
                with translate_errors(what, self._secret), total_timeout(watch, what):
                    with watching(watch):
                        response = session.request(
                            request.method,
                            request.url,
                            data=request.data,
                            headers=request.headers,
                            stream=stream,
                            timeout=(_min(self.connect_timeout, remaining), read_timeout),
                        )
                    if response.status_code < 400:
                        answered = True
                        return response, watch
                    try:
                        content = (
                            response.raw.read(ERROR_BODY_LIMIT, decode_content=True) if stream else response.content
                        )
                    finally:
                        response.close()
                error: LLMError = status_error_from(response.status_code, content, response.headers)
                retry_after = parse_retry_after(response.headers.get('retry-after'))
            except LLMConnectionError as exc:  # LLMTimeoutError included
                error, retry_after = exc, None
            finally:
                if watch is not None and not answered:
                    WATCHDOG.cancel(watch)
            error = without_secret(error, self._secret)
            delay = self._retry_delay(error, attempt, request.deadline, what, retry_after)
            if delay is None:
                raise error
            time.sleep(delay)
        raise AssertionError('unreachable')  # pragma: no cover

    def _sync_session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = watched_session(self.max_connections or 64, trust_env=False)
            return self._session

    # ------------------------------------------------------------------ async

    async def aget_json(self, path: str, *, timeout: float | None = None) -> Any:
        """Async twin of :meth:`get_json`."""
        return await self._acall_json(self._prepare('GET', path, None, timeout, None))

    async def apost_json(
        self, path: str, body: Mapping[str, Any], *, timeout: float | None = None, request_id: str | None = None
    ) -> Any:
        """Async twin of :meth:`post_json`."""
        return await self._acall_json(self._prepare('POST', path, body, timeout, request_id))

    async def adelete(self, path: str, *, timeout: float | None = None) -> Any:
        """Async twin of :meth:`delete`."""
        return await self._acall_json(self._prepare('DELETE', path, None, timeout, None))

    def astream(
        self,
        path: str,
        body: Mapping[str, Any],
        parse: EventParser[T],
        *,
        protocol: StreamProtocol,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> BatchedIterator[T]:
        """Async twin of :meth:`stream`; closing the iterator closes the connection.

        Its ``batches()`` gives the items of each network read as one list.
        """
        request = self._prepare('POST', path, body, timeout, request_id)
        return BatchedIterator(self._abatches(request, parse, protocol))

    async def _abatches(
        self, request: _Request, parse: EventParser[T], protocol: StreamProtocol
    ) -> AsyncIterator[list[T]]:
        response = await self._asend(request, stream=True)
        what = f'reading the stream of {request.url}'
        try:
            with translate_errors(what, self._secret):
                events, one_by_one, content = protocol(), one_item_per_event(), response.content
                while data := await content.readany():
                    items, end = _parse_read(events, data, parse, one_by_one)
                    if items:
                        yield items
                    if end is not None:
                        break
                else:
                    items, end = _parse_events(*events.finish(), parse, one_by_one)
                    if items:
                        yield items
                if end is not STREAM_END:
                    raise end
        except LLMError as error:
            raise without_secret(error, self._secret) from error.__cause__
        finally:
            response.close()

    async def _acall_json(self, request: _Request) -> Any:
        response = await self._asend(request, stream=False)
        try:
            with translate_errors(f'{request.method} {request.url}', self._secret):
                content = await response.read()
        finally:
            response.release()
        return _decode_json(content, request.url, self._secret)

    async def _asend(self, request: _Request, *, stream: bool) -> aiohttp.ClientResponse:
        session = self._async_session()
        what = f'{request.method} {request.url}'
        for attempt in range(1, self.max_retries + 2):
            remaining = _remaining(request.deadline, what)
            timeout = aiohttp.ClientTimeout(
                total=remaining,
                sock_connect=self.connect_timeout,
                sock_read=self.idle_timeout if stream else None,
            )
            try:
                with translate_errors(what, self._secret):
                    response = await session.request(
                        request.method, request.url, data=request.data, headers=request.headers, timeout=timeout
                    )
                    if response.status < 400:
                        return response
                    try:
                        content = await _read_at_most(response.content, ERROR_BODY_LIMIT)
                    finally:
                        response.release()
                error: LLMError = status_error_from(response.status, content, response.headers)
                retry_after = parse_retry_after(response.headers.get('retry-after'))
            except LLMConnectionError as exc:
                error, retry_after = exc, None
            error = without_secret(error, self._secret)
            delay = self._retry_delay(error, attempt, request.deadline, what, retry_after)
            if delay is None:
                raise error
            await asyncio.sleep(delay)
        raise AssertionError('unreachable')  # pragma: no cover

    def _async_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._async_sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections)
            session = aiohttp.ClientSession(connector=connector, trust_env=False)
            self._async_sessions[loop] = session
        return session

    # ------------------------------------------------------------------ shared

    def _prepare(
        self, method: str, path: str, body: Mapping[str, Any] | None, timeout: float | None, request_id: str | None
    ) -> _Request:
        """Check and encode a request before anything is sent (bad input never reaches the retry loop)."""
        headers = self._headers
        if request_id is not None:
            headers = {**headers, 'X-Request-Id': _check_header_value('request_id', request_id)}
        total = self.timeout if timeout is None else _positive_seconds('timeout', timeout)
        deadline = None if total is None else time.monotonic() + total
        url = self.base_url + path
        return _Request(method, url, _encode_body(method, url, body), headers, deadline)

    def _retry_delay(
        self, error: LLMError, attempt: int, deadline: float | None, what: str, retry_after: float | None
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up."""
        if isinstance(error, APIStatusError) and error.status_code != 429 and error.status_code < 500:
            return None
        if attempt > self.max_retries:
            if self.max_retries:
                error.add_note(f'gave up after {attempt} attempts')
            return None
        delay = retry_after
        if delay is None:
            delay = self.retry_backoff * 2 ** (attempt - 1) * random.uniform(0.75, 1.0)
        if deadline is not None and time.monotonic() + delay >= deadline:
            error.add_note(f'gave up after {attempt} attempts: no time left for a retry in {delay:.2f}s')
            return None
        logger.info('%s failed (%s); retry %d of %d in %.2fs', what, error, attempt, self.max_retries, delay)
        return delay

    def close(self) -> None:
        """Close the sync session, and the async sessions of event loops that are not running.

        The session of a running loop is closed by :meth:`aclose` in that loop.
        """
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            close_session(session)
        for loop, async_session in list(self._async_sessions.items()):
            if loop.is_closed():
                _discard(async_session)
            elif not loop.is_running() and not _in_event_loop():
                loop.run_until_complete(async_session.close())
            else:
                continue
            self._async_sessions.pop(loop, None)

    async def aclose(self) -> None:
        """Close the async session of the running event loop, and what :meth:`close` closes."""
        session = self._async_sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()
        self.close()


# ---------------------------------------------------------------------- helpers


class _Request:
    """A checked, encoded request, ready to send (and to send again)."""

    __slots__ = ('data', 'deadline', 'headers', 'method', 'url')

    def __init__(self, method: str, url: str, data: bytes | None, headers: dict[str, str], deadline: float | None):
        self.method = method
        self.url = url
        self.data = data
        self.headers = headers
        self.deadline = deadline


def _reads(raw: urllib3.HTTPResponse) -> Iterator[bytes]:
    """The body of a streamed ``requests`` response, as it arrives.

    A chunked body is read one HTTP chunk at a time (at most 64 KiB of one:
    a server declaring a huge chunk cannot make us hold it whole), and the
    chunks that have already arrived are joined (a server writing one event
    per chunk would otherwise cost a read, a parse and an item per event when
    the reader is behind). Other bodies are read with ``read1``: whatever has arrived.
    """
    if not raw.chunked:
        yield from iter(lambda: raw.read1(_READ_SIZE, decode_content=True), b'')
        return
    chunks = raw.read_chunked(_READ_SIZE, decode_content=True)
    fileno = raw.fileno()
    for data in chunks:
        failure = None
        while len(data) < _READ_SIZE and select.select((fileno,), (), (), 0)[0]:
            try:
                more = next(chunks, None)
            except Exception as exc:  # raised once the data before it is delivered
                failure = exc
                break
            if more is None:
                break
            data += more
        yield data
        if failure is not None:
            raise failure


async def _read_at_most(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body, or its first ``limit`` bytes (an error page need not be read whole)."""
    parts, size = [], 0
    while size < limit and (data := await content.read(limit - size)):
        parts.append(data)
        size += len(data)
    return b''.join(parts)


def _parse_read(events: EventStream, data: bytes, parse: EventParser[T], one_by_one: bool) -> tuple[list[T], Any]:
    """The items of one read, and what ended the stream in it (see :meth:`EventStream.decode`).

    Frames are decoded and parsed a slice at a time, so a large read never holds
    thousands of decoded events at once (they would only feed the garbage collector).
    """
    frames = events.feed(data)
    items: list[T] = []
    for start in range(0, len(frames), _PARSE_SLICE):
        decoded, end = events.decode(frames[start : start + _PARSE_SLICE])
        if decoded:
            items += _items(parse, decoded, one_by_one)
        if end is not None:
            return items, end
    return items, None


def _parse_events(decoded: list[Any], end: Any, parse: EventParser[T], one_by_one: bool) -> tuple[list[T], Any]:
    return (_items(parse, decoded, one_by_one) if decoded else []), end


def _items(parse: EventParser[T], events: list[Any], one_by_one: bool) -> list[T]:
    try:
        if one_by_one:
            return [item for event in events for item in parse([event])]
        return list(parse(events))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise StreamError(f'unexpected event from the server: {str(events[-1])[:200]!r}', body=events[-1]) from exc


def _decode_json(content: bytes, url: str, secret: str | None) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError) as exc:
        error = StreamError(f'{url} answered with a body that is not JSON: {content[:200]!r}', body=content[:10_000])
        raise without_secret(error, secret) from exc


def _remaining(deadline: float | None, what: str) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise LLMTimeoutError(f'{what}: the total timeout expired')
    return remaining


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _discard(session: aiohttp.ClientSession) -> None:
    """Drop a session whose event loop has ended: its sockets died with the loop,
    so there is nothing left to await."""
    connector = session.connector
    session.detach()
    if connector is not None:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the un-awaited no-op that close() returns
            connector.close()


def _encode_body(method: str, url: str, body: Mapping[str, Any] | None) -> bytes | None:
    """The JSON body of a request; logged at DEBUG (headers, and so API keys, never are).

    Raises:
        ValueError: A value JSON cannot carry (NaN, infinity).
        TypeError: An object that is not JSON (a set, bytes...).
    """
    if body is None:
        logger.debug('%s %s', method, url)
        return None
    try:
        data = json.dumps(body, allow_nan=False).encode()
    except ValueError as exc:
        raise ValueError(f'the request body holds a number JSON cannot carry (NaN or infinity): {exc}') from None
    except TypeError as exc:
        raise TypeError(f'the request body is not JSON: {exc}') from None
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug('%s %s %s', method, url, data.decode())
    return data
