"""One HTTP request for the tools that call web services (search engines,
arXiv, maps): bounded in time and size, failing with one clear error.

* Time: a connect timeout, a read timeout per socket read, and a deadline for
  the whole call, checked between reads of the body; the request runs in a
  worker thread the caller stops waiting for at the deadline, so neither a
  slow name lookup nor a server that trickles bytes can hold a tool past it.
* Size: the body is read up to ``max_bytes``; more is an error.
* Errors: :class:`WebError`, whose message says which service, what failed
  and (for an HTTP status) what the service answered. API keys never appear
  in messages or logs.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from lagent.schema import ActionReturn, ActionStatusCode

__all__ = ['WebError', 'WebReply', 'failure', 'fetch']

DEFAULT_TIMEOUT = 15.0
"""Seconds a whole request may take, by default."""
MAX_BYTES = 5 * 1024 * 1024
"""Largest body read, by default."""
_CONNECT_TIMEOUT = 5.0
_READ_SIZE = 64 * 1024


class WebError(Exception):
    """A request to a web service failed.

    Args:
        message: What failed, worded for a model or a user to act on.
        status: The HTTP status the service answered, if it answered.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class WebReply:
    """What a service answered (with a 2xx status)."""

    status: int
    """The HTTP status."""
    body: bytes
    """The body, decompressed."""
    content_type: str
    """The ``Content-Type`` header (``''`` if absent)."""
    url: str
    """The final URL, after redirects."""

    def text(self) -> str:
        """The body as text (UTF-8 unless the reply says otherwise; bad bytes replaced)."""
        charset = 'utf-8'
        for part in self.content_type.split(';')[1:]:
            key, _, value = part.strip().partition('=')
            if key.lower() == 'charset' and value:
                charset = value.strip('"\'')
        try:
            return self.body.decode(charset, 'replace')
        except LookupError:
            return self.body.decode('utf-8', 'replace')

    def json(self) -> Any:
        """The body decoded as JSON.

        Raises:
            WebError: The body is not JSON.
        """
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WebError(f'the reply is not JSON ({exc})', self.status) from None


def fetch(
    service: str,
    method: str,
    url: str,
    *,
    params: dict[str, Any] | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = MAX_BYTES,
    secrets: tuple[str, ...] = (),
) -> WebReply:
    """Send one request and read the whole reply.

    Args:
        service: The service's name, for error messages (``'arXiv'``...).
        method: ``'GET'`` or ``'POST'``.
        url: The address.
        params: Query parameters (``None`` values are left out).
        json_body: A body sent as JSON.
        headers: Request headers (API keys go here, never into ``url``).
        timeout: Seconds the whole call may take.
        max_bytes: Largest body accepted.
        secrets: Values (API keys) to blank out of error messages.

    Returns:
        The reply, if its status is 2xx.

    Raises:
        WebError: No connection, a timeout, a non-2xx status, or a body over ``max_bytes``.
    """
    if not timeout > 0:
        raise ValueError(f'timeout must be positive, got {timeout!r}')
    outcome: dict[str, Any] = {}
    finished = threading.Event()
    deadline = time.monotonic() + timeout
    query = {key: value for key, value in (params or {}).items() if value is not None}

    def run() -> None:
        try:
            outcome['reply'] = _request(method, url, query, json_body, headers or {}, deadline, timeout, max_bytes)
        except BaseException as exc:  # handed to the caller below
            outcome['error'] = exc
        finally:
            finished.set()

    threading.Thread(target=run, name='lagent-web-request', daemon=True).start()
    if not finished.wait(timeout):
        raise WebError(f'{service}: no reply within {timeout:g}s')
    if 'error' in outcome:
        error = outcome['error']
        if isinstance(error, WebError):
            raise WebError(_redact(f'{service}: {error}', secrets), error.status) from None
        raise error
    return outcome['reply']


def _request(
    method: str,
    url: str,
    params: dict[str, Any],
    json_body: Any,
    headers: dict[str, str],
    deadline: float,
    timeout: float,
    max_bytes: int,
) -> WebReply:
    read_timeout = max(timeout, 0.1)
    try:
        response = requests.request(
            method,
            url,
            params=params,
            json=json_body,
            headers=headers,
            timeout=(min(_CONNECT_TIMEOUT, read_timeout), read_timeout),
            stream=True,
        )
    except requests.Timeout:
        raise WebError(f'no reply within {timeout:g}s') from None
    except requests.ConnectionError as exc:
        raise WebError(f'cannot connect ({_reason(exc)}); is the network reachable?') from None
    except requests.RequestException as exc:
        raise WebError(f'the request failed ({_reason(exc)})') from None
    with response:
        body = _read_body(response, deadline, timeout, max_bytes)
        if not 200 <= response.status_code < 300:
            detail = body[:300].decode('utf-8', 'replace').strip()
            message = f'HTTP {response.status_code}' + (f': {detail}' if detail else '')
            raise WebError(message, response.status_code)
        return WebReply(response.status_code, body, response.headers.get('Content-Type', ''), response.url)


def _read_body(response: requests.Response, deadline: float, timeout: float, max_bytes: int) -> bytes:
    pieces: list[bytes] = []
    size = 0
    try:
        while True:
            if time.monotonic() > deadline:
                raise WebError(f'the reply took longer than {timeout:g}s')
            piece = response.raw.read1(_READ_SIZE, decode_content=True)
            if not piece:
                return b''.join(pieces)
            size += len(piece)
            if size > max_bytes:
                raise WebError(f'the reply is larger than {max_bytes} bytes')
            pieces.append(piece)
    except WebError:
        raise
    except Exception as exc:  # urllib3 read and decode errors, socket timeouts
        raise WebError(f'reading the reply failed ({_reason(exc)})') from None


def failure(error: WebError) -> ActionReturn:
    """The result of a tool call that failed on the web: ``HTTP_ERROR`` without
    a reply, ``API_ERROR`` when the service answered with an error status."""
    state = ActionStatusCode.HTTP_ERROR if error.status is None else ActionStatusCode.API_ERROR
    return ActionReturn(errmsg=str(error), state=state)


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if len(secret) >= 6:  # shorter ones are no secret, and would blank out ordinary words
            text = text.replace(secret, '***')
    return text


def _reason(exc: BaseException) -> str:
    """A one-line reason from a requests/urllib3 error (their messages repeat the URL and nest)."""
    innermost: BaseException = exc
    while True:
        inner = innermost.__context__ or innermost.__cause__
        if inner is None or inner is innermost:
            break
        innermost = inner
    text = str(innermost) or type(innermost).__name__
    return ' '.join(text.split())[:200]
