"""Errors the server answers with, in OpenAI's error format.

Every failure reaches the client as ``{"error": {"message", "type", "param",
"code"}}`` with the status OpenAI uses for it, so the official clients raise
their usual exceptions (``BadRequestError``, ``AuthenticationError``,
``NotFoundError``, ``RateLimitError``...). :func:`api_error_from` converts
the errors of engines and agents, in one place:

======================================  ======  ==============================
error                                   status  note
======================================  ======  ==============================
``ValueError`` / ``TypeError``          400     a bad field or message
:class:`~lagent.errors.RateLimitError`  429     the upstream server is saturated
:class:`~lagent.errors.RequestError`    400     the upstream server refused (401/403: 502)
:class:`~lagent.errors.LLMTimeoutError` 504
other connection / 5xx / stream errors  502     the upstream server failed
:class:`~lagent.errors.EngineUnavailableError`  503
any other :class:`~lagent.errors.LLMError`      500
======================================  ======  ==============================
"""

from __future__ import annotations

import json
from typing import Any

from lagent.errors import (
    APIStatusError,
    EngineUnavailableError,
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    RequestError,
    StreamError,
)

__all__ = ['APIError', 'api_error_from']

_TYPES = {
    400: 'invalid_request_error',
    401: 'invalid_request_error',
    404: 'invalid_request_error',
    405: 'invalid_request_error',
    409: 'invalid_request_error',
    413: 'invalid_request_error',
    415: 'invalid_request_error',
    429: 'rate_limit_error',
}
_RETRY_SOON = {'Retry-After': '1'}


class APIError(Exception):
    """An error answered to the client with an HTTP status and OpenAI's error JSON.

    Args:
        status: The HTTP status.
        message: What went wrong, worded for the client to act on.
        param: The request field at fault, if one is.
        code: A short machine-readable code (``'model_not_found'``...).
        headers: Extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        """OpenAI's error type for the status."""
        return _TYPES.get(self.status, 'server_error' if self.status >= 500 else 'invalid_request_error')

    def body(self) -> dict[str, Any]:
        """The error JSON object."""
        return {'error': {'message': self.message, 'type': self.type, 'param': self.param, 'code': self.code}}

    def encode(self) -> bytes:
        """The error JSON, encoded."""
        return json.dumps(self.body(), ensure_ascii=False).encode()


def api_error_from(exc: BaseException) -> APIError:
    """The error to answer for an exception raised by an engine, an agent or request validation."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, (ValueError, TypeError)):
        return APIError(400, _one_line(exc))
    if isinstance(exc, RateLimitError):
        return APIError(
            429, f'the upstream server is busy: {exc.message}', code='upstream_rate_limited', headers=_RETRY_SOON
        )
    if isinstance(exc, RequestError):
        if exc.status_code in (401, 403):
            return APIError(502, f"the upstream server refused this server's credentials: {exc.message}")
        return APIError(400, f'the upstream server refused the request: {exc.message}', code='upstream_refused')
    if isinstance(exc, LLMTimeoutError):
        return APIError(504, f'the engine timed out: {_one_line(exc)}', code='engine_timeout')
    if isinstance(exc, (LLMConnectionError, APIStatusError, StreamError)):
        return APIError(502, f'the upstream server failed: {_one_line(exc)}', code='upstream_error')
    if isinstance(exc, EngineUnavailableError):
        return APIError(503, f'the engine is unavailable: {_one_line(exc)}', code='engine_unavailable')
    if isinstance(exc, LLMError):
        return APIError(500, f'the engine failed: {_one_line(exc)}', code='engine_error')
    return APIError(500, f'internal server error ({type(exc).__name__}); see the server log', code='internal_error')


def _one_line(exc: BaseException) -> str:
    return ' '.join(str(exc).split()) or type(exc).__name__
