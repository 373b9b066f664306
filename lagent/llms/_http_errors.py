"""How failures of the HTTP libraries and of servers become :mod:`lagent.errors`,
without the API key: the error mapping, error bodies and ``Retry-After``."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http.client
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import timezone
from typing import Any, TypeVar

import aiohttp
import requests
import urllib3.exceptions

from lagent.errors import LLMConnectionError, LLMError, LLMTimeoutError, StreamError, status_error

__all__ = [
    'ERROR_BODY_LIMIT',
    'REDACTED',
    'Secrets',
    'parse_retry_after',
    'status_error_from',
    'translate_errors',
    'without_secret',
]

REDACTED = '***'
ERROR_BODY_LIMIT = 1 << 20
"""The most bytes of an error body read (an error page need not be read whole)."""
_MAX_RETRY_AFTER = 60.0

Secrets = str | Iterable[str] | None
"""A value that must never show (an API key), several, or none."""


@contextlib.contextmanager
def translate_errors(what: str, secret: Secrets = None) -> Iterator[None]:
    """Convert ``requests``, ``urllib3``, ``http.client`` and ``aiohttp`` failures into :mod:`lagent.errors`.

    Args:
        what: What was being done, for the message (e.g. ``'POST http://host/v1/completions'``).
        secret: A value (the API key), or several, that must not appear in the message;
            when the library's error shows one, the lagent error is not chained to it.

    Raises:
        LLMTimeoutError: A connect, idle or total timeout expired.
        StreamError: The body could not be decoded (a broken ``Content-Encoding``).
        LLMConnectionError: The server could not be reached or the connection broke.
    """
    try:
        yield
    except LLMError:
        raise
    except Exception as exc:
        error = _library_error(what, exc)
        if error is None:
            raise
        secrets = _secrets(secret)
        if secrets and _shows(exc, secrets):
            raise without_secret(error, secrets) from None  # aiohttp's reprs show the request headers
        raise without_secret(error, secrets) from exc


def _library_error(what: str, exc: Exception) -> LLMError | None:
    """The lagent error for a failure of an HTTP library (``None``: not one)."""
    if _is_timeout(exc):
        return LLMTimeoutError(f'{what}: timed out ({_describe(exc)})')
    if isinstance(exc, (requests.exceptions.ContentDecodingError, urllib3.exceptions.DecodeError)):
        return StreamError(f'{what}: the body could not be decoded ({_describe(exc)})')
    if isinstance(
        exc,
        (
            requests.RequestException,
            urllib3.exceptions.HTTPError,
            http.client.HTTPException,
            aiohttp.ClientError,
            aiohttp.http_exceptions.HttpProcessingError,
            OSError,  # ConnectionError, and a socket shut down under a read
        ),
    ):
        return LLMConnectionError(f'{what}: {_describe(exc)}')
    return None


def _is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is, or wraps, a timeout (``requests`` wraps a read timeout
    in the middle of a body into a plain ``ConnectionError``)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, urllib3.exceptions.NewConnectionError):
            pass  # a refused or unresolvable connection: urllib3 files it under ConnectTimeoutError
        elif isinstance(
            current,
            (
                TimeoutError,
                asyncio.TimeoutError,  # not TimeoutError before Python 3.11
                requests.Timeout,
                urllib3.exceptions.TimeoutError,
                aiohttp.ServerTimeoutError,
            ),
        ):
            return True
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [link for link in (current.__cause__, current.__context__) if link is not None]
    return False


def _describe(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {exc}' if str(exc) else type(exc).__name__


E = TypeVar('E', bound=BaseException)


def without_secret(error: E, secret: Secrets) -> E:
    """Remove ``secret`` (one value or several) from the message, body and notes of ``error`` (in place)."""
    secrets = _secrets(secret)
    if not secrets:
        return error
    error.args = tuple(_redact(arg, secrets) for arg in error.args)
    for name in ('message', 'body'):
        if hasattr(error, name):
            setattr(error, name, _redact(getattr(error, name), secrets))
    if getattr(error, '__notes__', None):
        error.__notes__ = [_redact(note, secrets) for note in error.__notes__]
    return error


def _secrets(secret: Secrets) -> tuple[str, ...]:
    if secret is None:
        return ()
    if isinstance(secret, str):
        return (secret,) if secret else ()
    return tuple(value for value in secret if value)


def _shows(exc: BaseException, secrets: tuple[str, ...]) -> bool:
    chain: BaseException | None = exc
    for _ in range(20):
        if chain is None:
            return False
        shown = (str(chain), repr(chain), repr(chain.args))
        if any(secret in text for secret in secrets for text in shown):
            return True
        chain = chain.__cause__ or chain.__context__
    return True  # a chain this long: do not risk it


def _redact(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every occurrence of each secret in its strings replaced."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, bytes):
        for secret in secrets:
            for encoded in _encodings(secret):
                if encoded in value:
                    value = value.replace(encoded, REDACTED.encode())
        return value
    if isinstance(value, Mapping):
        return {_redact(key, secrets): _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(item, secrets) for item in value)
    return value


def _encodings(secret: str) -> set[bytes]:
    """How ``secret`` may stand in a body: as sent in a header (Latin-1), or as UTF-8."""
    forms = {secret.encode('utf-8')}
    with contextlib.suppress(UnicodeEncodeError):
        forms.add(secret.encode('latin-1'))
    return forms


def status_error_from(status: int, content: bytes, headers: Mapping[str, str]) -> LLMError:
    """Build the status error, with the server's own message from its error body."""
    try:
        body: Any = json.loads(content)
    except (ValueError, RecursionError):
        body = content.decode(errors='replace')
    message = _error_message(body) or f'(no message; body: {str(body)[:500]!r})'
    return status_error(status, message, body=body, request_id=headers.get('x-request-id'))


def _error_message(body: Any) -> str | None:
    """The message of the error shapes servers use: OpenAI ``{"error": {"message"}}``,
    lmdeploy ``{"message", "type", "code", "object": "error"}``, FastAPI ``{"detail"}``."""
    if isinstance(body, str):
        return body.strip()[:2000] or None
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


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), capped.

    A value that is not a finite number or a valid date (``nan``, ``inf``,
    garbage) is ignored (``None``: the backoff applies); one in the past is 0.
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, says RFC 5322
            when = when.replace(tzinfo=timezone.utc)
        try:
            seconds = when.timestamp() - time.time()
        except (OverflowError, OSError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)
