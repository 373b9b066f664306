"""One HTTP request for the tools that call web services (search engines,
arXiv, maps): bounded in time and size, failing with one clear error.

The request is lagent's one bounded fetch (:mod:`lagent.llms._http_fetch`,
made of the engines' transport parts):

* Time: a connect timeout, a read timeout, and a deadline for the whole call
  that a server trickling bytes cannot stretch (its socket is shut down when
  the deadline passes).
* Size: the body is read up to ``max_bytes``; more is an error.
* Errors: :class:`WebError`, whose message says which service, what failed
  and (for an HTTP status) what the service answered. API keys never appear
  in messages or logs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from lagent.errors import APIStatusError, LLMConnectionError, LLMError, LLMTimeoutError
from lagent.schema import ActionReturn, ActionStatusCode

__all__ = ['WebError', 'WebReply', 'failure', 'fetch', 'service_key']

DEFAULT_TIMEOUT = 15.0
"""Seconds a whole request may take, by default."""
MAX_BYTES = 5 * 1024 * 1024
"""Largest body read, by default."""
_CONNECT_TIMEOUT = 5.0


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
    # here: the tools load the HTTP error mapping (and aiohttp with it) only once one calls the web
    from lagent.llms._http_errors import without_secret
    from lagent.llms._http_fetch import BodyTooLargeError, fetch_bytes

    hidden = tuple(secret for secret in secrets if len(secret) >= 6)  # shorter ones are no secret
    query = {key: value for key, value in (params or {}).items() if value is not None}
    status = None
    try:
        reply = fetch_bytes(
            method,
            url,
            params=query,
            json_body=json_body,
            headers=headers,
            timeout=timeout,
            connect_timeout=_CONNECT_TIMEOUT,
            max_bytes=max_bytes,
            secrets=hidden,
        )
    except ValueError as exc:  # not an address to send a request to
        message = f'the request failed ({exc})'
    except LLMTimeoutError:
        message = f'no reply within {timeout:g}s'
    except BodyTooLargeError:
        message = f'the reply is larger than {max_bytes} bytes'
    except APIStatusError as exc:
        status, message = exc.status_code, _status_message(exc.status_code, exc.body)
    except LLMConnectionError as exc:
        message = f'cannot connect ({_reason(exc)}); is the network reachable?'
    except LLMError as exc:
        message = f'reading the reply failed ({_reason(exc)})'
    else:
        if 200 <= reply.status < 300:
            return WebReply(reply.status, reply.body, reply.headers.get('Content-Type', ''), reply.url)
        status, message = reply.status, _status_message(reply.status, reply.body)
    raise without_secret(WebError(f'{service}: {message}', status), hidden) from None


def _status_message(status: int, body: Any) -> str:
    """``HTTP <status>`` and the start of what the service answered."""
    if isinstance(body, bytes):
        body = body.decode('utf-8', 'replace')
    elif not isinstance(body, str):
        body = json.dumps(body, ensure_ascii=False)
    detail = body[:300].strip()
    return f'HTTP {status}' + (f': {detail}' if detail else '')


def service_key(given: str | None, variable: str, *, owner: str, keyword: str, what: str) -> str:
    """A service's key: ``given``, else the environment variable ``variable``.

    Args:
        given: The key passed to the tool, if any.
        variable: The environment variable that may hold it.
        owner: The tool's name, for the error.
        keyword: The tool's keyword for the key, for the error.
        what: What the key is, for the error (``'a Serper API key'``).

    Raises:
        ValueError: Neither holds a key; the message names both ways to give one.
    """
    key = given or os.environ.get(variable)
    if not key:
        raise ValueError(f'{owner} needs {what}: pass {keyword}= or set {variable}')
    return key


def failure(error: WebError) -> ActionReturn:
    """The result of a tool call that failed on the web: ``HTTP_ERROR`` without
    a reply, ``API_ERROR`` when the service answered with an error status."""
    state = ActionStatusCode.HTTP_ERROR if error.status is None else ActionStatusCode.API_ERROR
    return ActionReturn(errmsg=str(error), state=state)


def _reason(exc: BaseException) -> str:
    """A one-line reason: the innermost error behind ``exc`` (the messages of the
    HTTP libraries repeat the URL and nest)."""
    innermost: BaseException = exc
    while True:
        inner = innermost.__context__ or innermost.__cause__
        if inner is None or inner is innermost:
            break
        innermost = inner
    text = str(innermost) or type(innermost).__name__
    return ' '.join(text.split())[:200]
