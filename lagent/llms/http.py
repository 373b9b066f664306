"""The one HTTP transport of the served engines: JSON requests and Server-Sent
Event streams, sync (``requests``) and async (``aiohttp``).

Engines never touch sockets or parse SSE themselves; they hand a path and a
JSON body to :class:`HTTPTransport` and get back decoded JSON, or a stream of
items built from each event. The transport owns:

* retries, bounded and counted: connection errors, 429 (honouring
  ``Retry-After``) and 5xx are retried with exponential backoff and jitter;
  other 4xx never are. A stream is retried only until its first event;
* timeouts: connect, idle (the longest wait for the next bytes) and total
  (the whole call, retries included);
* errors: every ``requests``/``urllib3``/``aiohttp`` failure is converted
  into :mod:`lagent.errors` in one place (:func:`translate_errors`);
* secrets: the API key travels only in the ``Authorization`` header and never
  appears in logs, reprs or exception messages;
* closing a stream early closes its connection (the server stops generating).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import select
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp
import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from lagent.errors import APIStatusError, LLMConnectionError, LLMError, LLMTimeoutError, StreamError, status_error

__all__ = ['HTTPTransport', 'SSEDecoder', 'translate_errors']

logger = logging.getLogger(__name__)

T = TypeVar('T')
EventParser = Callable[[list[Any]], Iterable[T]]
"""Builds the items of a stream from the decoded events of one network read
(one event or several: a parser may merge them, e.g. join their text deltas)."""

_DONE = '[DONE]'
_READ_SIZE = 1 << 16
_PARSE_SLICE = 64
_MAX_RETRY_AFTER = 60.0


class SSEDecoder:
    """Incremental Server-Sent Events decoder: bytes in, the data of each event out.

    Follows the SSE format: lines end with ``\\n``, ``\\r\\n`` or ``\\r``; an
    empty line ends an event; ``data:`` lines are joined with ``\\n``; lines
    starting with ``:`` are comments; ``id``/``retry`` fields are ignored. An
    event named ``error`` is raised as :class:`~lagent.errors.StreamError`.
    The common case (one ``data:`` line per event) takes a fast path.
    """

    __slots__ = ('_buffer',)

    def __init__(self) -> None:
        self._buffer = b''

    def feed(self, data: bytes) -> list[str]:
        """Take the next bytes of the stream; return the data of every event they complete.

        Raises:
            StreamError: An ``error`` event, or bytes that are not UTF-8.
        """
        if self._buffer:
            data = self._buffer + data
        if b'\r' in data:
            data = self._normalize_newlines(data)
        end = data.rfind(b'\n\n')
        if end < 0:
            self._buffer = data
            return []
        self._buffer = data[end + 2 :]
        try:
            text = data[:end].decode()
        except UnicodeDecodeError as exc:
            raise StreamError(f'the stream is not valid UTF-8: {exc}') from exc
        payloads = []
        for block in text.split('\n\n'):
            if block.startswith('data: ') and '\n' not in block:
                payloads.append(block[6:])
            elif block:
                payload = self._parse_block(block)
                if payload is not None:
                    payloads.append(payload)
        return payloads

    def _normalize_newlines(self, data: bytes) -> bytes:
        data = data.replace(b'\r\n', b'\n')
        if data.endswith(b'\r'):  # may be the first half of a \r\n split between reads
            return data[:-1].replace(b'\r', b'\n') + b'\r'
        return data.replace(b'\r', b'\n')

    @staticmethod
    def _parse_block(block: str) -> str | None:
        event, data = 'message', []
        for line in block.split('\n'):
            if not line or line[0] == ':':
                continue
            name, _, value = line.partition(':')
            if value[:1] == ' ':
                value = value[1:]
            if name == 'data':
                data.append(value)
            elif name == 'event':
                event = value
        if not data:
            return None
        payload = '\n'.join(data)
        if event == 'error':
            raise StreamError(f'the server sent an error event: {payload}', body=payload)
        return payload


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Convert ``requests``, ``urllib3`` and ``aiohttp`` failures into :mod:`lagent.errors`.

    Args:
        what: What was being done, for the message (e.g. ``'POST http://host/v1/completions'``).

    Raises:
        LLMTimeoutError: A connect, idle or total timeout expired.
        LLMConnectionError: The server could not be reached or the connection broke.
    """
    try:
        yield
    except LLMError:
        raise
    except (
        requests.Timeout,
        urllib3.exceptions.TimeoutError,
        aiohttp.ServerTimeoutError,
        asyncio.TimeoutError,
    ) as exc:
        raise LLMTimeoutError(f'{what}: timed out ({_describe(exc)})') from exc
    except (
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        aiohttp.ClientError,
        ConnectionError,
    ) as exc:
        raise LLMConnectionError(f'{what}: {_describe(exc)}') from exc


def _describe(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {exc}' if str(exc) else type(exc).__name__


class HTTPTransport:
    """JSON requests and SSE streams against one server, sync and async.

    One ``requests.Session`` serves the sync calls (from any thread) and one
    ``aiohttp.ClientSession`` per event loop serves the async ones.

    Args:
        base_url: The server's API root, e.g. ``http://127.0.0.1:23333/v1``.
        api_key: Sent as ``Authorization: Bearer <api_key>``; never logged or shown.
        max_retries: Retries after the first attempt (``0``: never retry).
        connect_timeout: Seconds to establish a connection.
        idle_timeout: Seconds to wait for the next bytes of a response.
        timeout: Seconds the whole call may take, retries included (``None``: no limit).
        retry_backoff: Base delay of the exponential backoff, in seconds.
        max_connections: Connections kept open per session (sync) / for each loop (async, ``0``: no limit).

    Raises:
        ValueError: A negative retry count or a non-positive timeout.
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
        if max_retries < 0:
            raise ValueError(f'max_retries must be >= 0, got {max_retries}')
        for name, value in (('connect_timeout', connect_timeout), ('idle_timeout', idle_timeout), ('timeout', timeout)):
            if value is not None and value <= 0:
                raise ValueError(f'{name} must be positive, got {value}')
        self.base_url = base_url.rstrip('/')
        self.max_retries = max_retries
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.timeout = timeout
        self.retry_backoff = retry_backoff
        self.max_connections = max_connections
        self._headers = {'Content-Type': 'application/json', 'Accept': 'application/json, text/event-stream'}
        if api_key:
            self._headers['Authorization'] = f'Bearer {api_key}'
        self._session: requests.Session | None = None
        self._async_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        key = '***' if 'Authorization' in self._headers else None
        return f'{type(self).__name__}(base_url={self.base_url!r}, api_key={key!r})'

    # ------------------------------------------------------------------ sync

    def get_json(self, path: str, *, timeout: float | None = None) -> Any:
        """``GET`` a JSON document.

        Raises:
            APIStatusError: The server answered with an error status (after retries).
            LLMConnectionError: The server could not be reached (after retries).
            StreamError: The body is not JSON.
        """
        return self._call_json('GET', path, None, timeout, None)

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
            APIStatusError: The server answered with an error status (after retries).
            LLMConnectionError: The server could not be reached (after retries).
            StreamError: The body is not JSON.
        """
        return self._call_json('POST', path, body, timeout, request_id)

    def delete(self, path: str, *, timeout: float | None = None) -> Any:
        """``DELETE`` a resource and return the decoded JSON answer.

        Raises:
            APIStatusError: The server answered with an error status (after retries).
            LLMConnectionError: The server could not be reached (after retries).
            StreamError: The body is not JSON.
        """
        return self._call_json('DELETE', path, None, timeout, None)

    def stream(
        self,
        path: str,
        body: Mapping[str, Any],
        parse: EventParser[T],
        *,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> Iterator[T]:
        """``POST`` a JSON body and stream the SSE answer until ``[DONE]``.

        Each network read is decoded at once: its events' JSON is decoded and
        handed to ``parse`` together, so a reader that falls behind the server
        catches up in fewer, larger items.

        Args:
            path: Path under ``base_url``, e.g. ``'/chat/completions'``.
            body: The JSON request (with ``"stream": true``).
            parse: Builds the items of the stream from the decoded events of one read.
            timeout: Total seconds for this call (``None``: the transport's ``timeout``).
            request_id: Sent as ``X-Request-Id``.

        Returns:
            A generator that sends the request when first advanced; closing it closes the connection.

        Raises:
            APIStatusError: The server refused the request (after retries).
            LLMConnectionError: The server could not be reached, or the connection broke.
            LLMTimeoutError: No data for ``idle_timeout`` seconds, or the total timeout expired.
            StreamError: An in-band error, malformed JSON, or an end without ``[DONE]``.
        """
        deadline = self._deadline(timeout)
        url = self.base_url + path
        response = self._send('POST', url, body, deadline, request_id, stream=True)
        decoder, what = SSEDecoder(), f'reading the stream of {url}'
        try:
            with translate_errors(what):
                for data in _reads(response.raw):
                    items, end = _parse_read(decoder.feed(data), parse)
                    yield from items
                    if end is not None:
                        if end is _END:
                            return
                        raise end
                    if deadline is not None and time.monotonic() > deadline:
                        raise LLMTimeoutError(f'{what}: the total timeout expired')
                raise _unfinished()
        finally:
            response.close()

    def _call_json(
        self, method: str, path: str, body: Mapping[str, Any] | None, timeout: float | None, request_id: str | None
    ) -> Any:
        url = self.base_url + path
        response = self._send(method, url, body, self._deadline(timeout), request_id, stream=False)
        return _decode_json(response.content, url)

    def _send(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        deadline: float | None,
        request_id: str | None,
        *,
        stream: bool,
    ) -> requests.Response:
        session = self._sync_session()
        data = _encode_body(method, url, body)
        headers = self._request_headers(request_id)
        what = f'{method} {url}'
        for attempt in range(1, self.max_retries + 2):
            remaining = _remaining(deadline, what)
            # streams wait at most idle_timeout for each read; a whole answer may take the total time
            read_timeout = _min(self.idle_timeout, remaining) if stream else remaining
            try:
                with translate_errors(what):
                    response = session.request(
                        method,
                        url,
                        data=data,
                        headers=headers,
                        stream=stream,
                        timeout=(_min(self.connect_timeout, remaining), read_timeout),
                    )
                    if response.status_code < 400:
                        return response
                    content = response.content
                error: LLMError = _status_error(response.status_code, content, response.headers)
                retry_after = _parse_retry_after(response.headers.get('retry-after'))
                response.close()
            except LLMConnectionError as exc:
                error, retry_after = exc, None
            delay = self._retry_delay(error, attempt, deadline, what, retry_after)
            if delay is None:
                raise error
            time.sleep(delay)
        raise AssertionError('unreachable')  # pragma: no cover

    def _sync_session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                session = requests.Session()
                size = self.max_connections or 64
                adapter = HTTPAdapter(pool_connections=1, pool_maxsize=size, max_retries=0)
                session.mount('http://', adapter)
                session.mount('https://', adapter)
                session.trust_env = False
                self._session = session
            return self._session

    # ------------------------------------------------------------------ async

    async def aget_json(self, path: str, *, timeout: float | None = None) -> Any:
        """Async twin of :meth:`get_json`."""
        return await self._acall_json('GET', path, None, timeout, None)

    async def apost_json(
        self, path: str, body: Mapping[str, Any], *, timeout: float | None = None, request_id: str | None = None
    ) -> Any:
        """Async twin of :meth:`post_json`."""
        return await self._acall_json('POST', path, body, timeout, request_id)

    async def adelete(self, path: str, *, timeout: float | None = None) -> Any:
        """Async twin of :meth:`delete`."""
        return await self._acall_json('DELETE', path, None, timeout, None)

    async def astream(
        self,
        path: str,
        body: Mapping[str, Any],
        parse: EventParser[T],
        *,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[T]:
        """Async twin of :meth:`stream`; closing the iterator closes the connection."""
        deadline = self._deadline(timeout)
        url = self.base_url + path
        response = await self._asend('POST', url, body, deadline, request_id, stream=True)
        decoder, content, what = SSEDecoder(), response.content, f'reading the stream of {url}'
        try:
            with translate_errors(what):
                while data := await content.readany():
                    items, end = _parse_read(decoder.feed(data), parse)
                    for item in items:
                        yield item
                    if end is not None:
                        if end is _END:
                            return
                        raise end
                raise _unfinished()
        finally:
            response.close()

    async def _acall_json(
        self, method: str, path: str, body: Mapping[str, Any] | None, timeout: float | None, request_id: str | None
    ) -> Any:
        url = self.base_url + path
        response = await self._asend(method, url, body, self._deadline(timeout), request_id, stream=False)
        try:
            with translate_errors(f'{method} {url}'):
                content = await response.read()
        finally:
            response.release()
        return _decode_json(content, url)

    async def _asend(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None,
        deadline: float | None,
        request_id: str | None,
        *,
        stream: bool,
    ) -> aiohttp.ClientResponse:
        session = self._async_session()
        data = _encode_body(method, url, body)
        headers = self._request_headers(request_id)
        what = f'{method} {url}'
        for attempt in range(1, self.max_retries + 2):
            remaining = _remaining(deadline, what)
            timeout = aiohttp.ClientTimeout(
                total=remaining,
                sock_connect=self.connect_timeout,
                sock_read=self.idle_timeout if stream else None,
            )
            try:
                with translate_errors(what):
                    response = await session.request(method, url, data=data, headers=headers, timeout=timeout)
                    if response.status < 400:
                        return response
                    try:
                        content = await response.read()
                    finally:
                        response.release()
                error: LLMError = _status_error(response.status, content, response.headers)
                retry_after = _parse_retry_after(response.headers.get('retry-after'))
            except LLMConnectionError as exc:
                error, retry_after = exc, None
            delay = self._retry_delay(error, attempt, deadline, what, retry_after)
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

    def _request_headers(self, request_id: str | None) -> dict[str, str]:
        if request_id is None:
            return self._headers
        return {**self._headers, 'X-Request-Id': request_id}

    def _deadline(self, timeout: float | None) -> float | None:
        total = self.timeout if timeout is None else timeout
        return None if total is None else time.monotonic() + total

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
            session.close()
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

_END: Any = object()


def _reads(raw: urllib3.HTTPResponse) -> Iterator[bytes]:
    """The body of a streamed ``requests`` response, as it arrives.

    A chunked body is read one HTTP chunk at a time, and the chunks that have
    already arrived are joined (a server writing one event per chunk would
    otherwise cost a read, a parse and an item per event when the reader is
    behind). Other bodies are read with ``read1``: whatever has arrived.
    """
    if not raw.chunked:
        yield from iter(lambda: raw.read1(_READ_SIZE, decode_content=True), b'')
        return
    chunks = raw.read_chunked(decode_content=True)
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


def _parse_read(payloads: list[str], parse: EventParser[T]) -> tuple[list[T], Any]:
    """The items of one read's events, and what ended them (see :func:`_decode_events`).

    Events are decoded and parsed a slice at a time, so a large read never holds
    thousands of decoded events at once (they would only feed the garbage collector).
    """
    items: list[T] = []
    for start in range(0, len(payloads), _PARSE_SLICE):
        events, end = _decode_events(payloads[start : start + _PARSE_SLICE])
        if events:
            items += _items(parse, events)
        if end is not None:
            return items, end
    return items, None


def _decode_events(payloads: list[str]) -> tuple[list[Any], Any]:
    """Decode the JSON of each event, up to ``[DONE]`` or an error.

    Returns:
        The events, and what ended them: ``None`` (the stream goes on),
        ``_END`` (``[DONE]``) or the :class:`~lagent.errors.StreamError` to raise
        once the events before it are delivered.

    One ``raw_decode`` per event is the hot path: a payload must be exactly
    one JSON value (only surrounding whitespace is tolerated).
    """
    decode, events = _raw_decode, []
    for payload in payloads:
        if payload == _DONE:
            return events, _END
        try:
            event, end = decode(payload)
            if end != len(payload):
                event = json.loads(payload)  # surrounding whitespace is fine; anything else raises
        except ValueError as exc:
            error = StreamError(f'the server sent an event that is not JSON: {payload[:200]!r}', body=payload)
            error.__cause__ = exc
            return events, error
        if type(event) is dict and event.get('error') is not None:
            return events, _stream_error(event)
        events.append(event)
    return events, None


def _items(parse: EventParser[T], events: list[Any]) -> Iterable[T]:
    try:
        return parse(events)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise StreamError(f'unexpected event from the server: {str(events[-1])[:200]!r}', body=events) from exc


_raw_decode = json.JSONDecoder().raw_decode


def _stream_error(event: Any) -> StreamError:
    error = event['error']
    message = error.get('message') if isinstance(error, Mapping) else error
    return StreamError(f'the server reported an error mid-stream: {message}', body=event)


def _unfinished() -> LLMError:
    return StreamError('the server ended the stream without [DONE]; it may have failed (see its log)')


def _decode_json(content: bytes, url: str) -> Any:
    try:
        return json.loads(content)
    except ValueError as exc:
        raise StreamError(f'{url} answered with a body that is not JSON: {content[:200]!r}', body=content) from exc


def _status_error(status: int, content: bytes, headers: Mapping[str, str]) -> LLMError:
    """Build the status error, with the server's own message from its error body."""
    try:
        body: Any = json.loads(content)
    except ValueError:
        body = content.decode(errors='replace')
    error = status_error(status, _error_message(body) or f'(no message; body: {str(body)[:500]!r})', body=body,
                         request_id=headers.get('x-request-id'))  # fmt: skip
    return error


def _error_message(body: Any) -> str | None:
    """The message of the error shapes servers use: OpenAI ``{"error": {"message"}}``,
    lmdeploy ``{"message", "type", "code", "object": "error"}``, FastAPI ``{"detail"}``."""
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, Mapping):
        return None
    error = body.get('error')
    if isinstance(error, Mapping) and error.get('message'):
        return str(error['message'])
    if isinstance(error, str) and error:
        return error
    for key in ('message', 'detail'):
        if body.get(key):
            return body[key] if isinstance(body[key], str) else json.dumps(body[key])
    return None


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), capped."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


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
    """The JSON body of a request; logged at DEBUG (headers, and so API keys, never are)."""
    if body is None:
        logger.debug('%s %s', method, url)
        return None
    data = json.dumps(body).encode()
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug('%s %s %s', method, url, data.decode())
    return data
