"""One bounded HTTP fetch of a whole body, for what is not an engine: the web
tools (:mod:`lagent.actions`) and images given by URL (:mod:`lagent.images`).

It is made of the transport's own parts (:mod:`lagent.llms.http`):

* time: a connect timeout, an idle timeout (the longest wait for the next
  bytes) and a total deadline, redirects included, which the watchdog of
  :mod:`lagent.llms._http_deadline` enforces: when it passes, the socket is
  shut down, so a server that trickles bytes, in its headers or in its body,
  cannot stretch a call (the name lookup is left to the system's resolver);
* size: a body larger than ``max_bytes``, announced or found while reading,
  is an error, and no more of it is read;
* errors: failures of ``requests`` and ``urllib3`` become :mod:`lagent.errors`
  through :func:`~lagent.llms._http_errors.translate_errors`; an error status
  (>= 400) is the :class:`~lagent.errors.APIStatusError` the transport raises,
  with the server's own message; the secrets given are removed from every
  error that leaves.

Proxies from the environment (``HTTPS_PROXY``...) apply, as in ``requests``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from lagent.errors import LLMError, LLMTimeoutError
from lagent.llms._http_deadline import (
    WATCHDOG,
    check_not_expired,
    close_session,
    total_timeout,
    watched_session,
    watching,
)
from lagent.llms._http_errors import ERROR_BODY_LIMIT, status_error_from, translate_errors, without_secret
from lagent.llms.http import check_base_url

__all__ = ['BodyTooLargeError', 'FetchedBody', 'fetch_bytes']

_READ_SIZE = 1 << 16
_MAX_REDIRECTS = 30


class BodyTooLargeError(LLMError):
    """A body is larger than the limit of the call (announced or found while reading).

    Attributes:
        limit: The most bytes the call accepted.
    """

    def __init__(self, message: str, *, limit: int):
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class FetchedBody:
    """What a server answered (with a status below 400)."""

    status: int
    """The HTTP status."""
    body: bytes
    """The whole body, decompressed."""
    headers: Mapping[str, str]
    """The response headers (names case-insensitive)."""
    url: str
    """The final URL, after redirects."""


def fetch_bytes(
    method: str,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    connect_timeout: float | None = None,
    idle_timeout: float | None = None,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    max_redirects: int = _MAX_REDIRECTS,
    secrets: str | Iterable[str] = (),
    what: str | None = None,
) -> FetchedBody:
    """Send one request and read its whole answer, within a deadline and a size limit.

    Args:
        method: ``'GET'``, ``'POST'``...
        url: An ``http(s)://`` address.
        timeout: Seconds the whole call may take, redirects included.
        max_bytes: Most bytes of the (decompressed) body.
        connect_timeout: Seconds to establish a connection (``None``: ``timeout``).
        idle_timeout: Seconds to wait for the next bytes (``None``: ``timeout``).
        params: Query parameters.
        json_body: A body sent as JSON.
        headers: Request headers (API keys go here or in ``params``, and into ``secrets``).
        max_redirects: Most redirects followed.
        secrets: A value (an API key), or several, that must not appear in any error.
        what: What is being fetched, to begin error messages with (default: ``'<method> <url>'``).

    Returns:
        The answer, if its status is below 400 (a redirect not followed included).

    Raises:
        ValueError: ``url`` is not an ``http(s)://host...`` address, or a limit is not positive.
        BodyTooLargeError: The body is larger than ``max_bytes``.
        APIStatusError: The server answered with an error status (>= 400).
        LLMTimeoutError: A connect or idle timeout, or the deadline, expired.
        LLMConnectionError: The server could not be reached, or the connection broke.
        StreamError: The body could not be decoded (a broken ``Content-Encoding``).
    """
    check_base_url(url)
    for name, value in (('timeout', timeout), ('connect_timeout', connect_timeout), ('idle_timeout', idle_timeout)):
        if value is not None and not value > 0:
            raise ValueError(f'{name} must be a positive number of seconds, got {value!r}')
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f'max_bytes must be a positive integer, got {max_bytes!r}')
    what = what or f'{method} {url}'
    hidden = (secrets,) if isinstance(secrets, str) else tuple(secrets)
    deadline = time.monotonic() + timeout
    watch = WATCHDOG.watch(deadline)
    session = watched_session(1, trust_env=True)
    session.max_redirects = max_redirects
    try:
        with translate_errors(what, hidden), total_timeout(watch, what):
            with watching(watch):
                response = session.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    headers=headers,
                    timeout=(min(connect_timeout or timeout, timeout), min(idle_timeout or timeout, timeout)),
                    stream=True,
                )
            with response:
                if response.status_code >= 400:
                    content = response.raw.read(min(max_bytes, ERROR_BODY_LIMIT), decode_content=True)
                    raise status_error_from(response.status_code, content, response.headers)
                body = _read_body(response, max_bytes, deadline, what)
        check_not_expired(watch, what)  # a body cut short by the deadline may look complete
        return FetchedBody(response.status_code, body, response.headers, response.url)
    except LLMError as error:
        raise without_secret(error, hidden) from error.__cause__
    finally:
        WATCHDOG.cancel(watch)
        close_session(session)


def _read_body(response: requests.Response, max_bytes: int, deadline: float, what: str) -> bytes:
    """The body, read until its end, ``max_bytes`` or the deadline (where no socket could be watched: SOCKS)."""
    declared = response.headers.get('Content-Length', '')
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLargeError(
            f'{what}: the body is larger than {max_bytes} bytes ({declared} announced)', limit=max_bytes
        )
    body = bytearray()
    for piece in response.iter_content(_READ_SIZE):
        body += piece
        if len(body) > max_bytes:
            raise BodyTooLargeError(f'{what}: the body is larger than {max_bytes} bytes', limit=max_bytes)
        if time.monotonic() > deadline:
            raise LLMTimeoutError(f'{what}: the total timeout expired')
    return bytes(body)
