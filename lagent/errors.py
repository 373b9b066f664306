"""Errors raised by lagent engines.

Every failure of an engine reaches the caller as one of these, converted
where it enters the SDK (``raise ... from exc``), never as ``''``::

    LLMError                          root: anything an engine could not do
    ├── LLMConnectionError            the engine could not be reached, or the
    │   │                             connection broke (also a ConnectionError)
    │   └── LLMTimeoutError           connect, idle or total timeout (also a TimeoutError)
    ├── APIStatusError                the server answered with an HTTP error status
    │   ├── RequestError              4xx: the request was refused; never retried
    │   │   └── RateLimitError        429: retried, honouring Retry-After
    │   └── ServerError               5xx: retried
    ├── StreamError                   the server reported an error inside a stream,
    │                                 or sent data that could not be decoded
    ├── EngineStartError              a child server exited or never became ready
    └── EngineUnavailableError        the engine cannot run here (no CUDA device,
                                      model not loaded or not ready)

    MissingExtraError(ImportError)    an optional engine library is not installed;
                                      the message names the pip extra

Misuse of the API (a bad argument, an unknown role) raises ``ValueError``
or ``TypeError`` naming what was wrong.
"""

from __future__ import annotations

__all__ = [
    'APIStatusError',
    'EngineStartError',
    'EngineUnavailableError',
    'LLMConnectionError',
    'LLMError',
    'LLMTimeoutError',
    'MissingExtraError',
    'RateLimitError',
    'RequestError',
    'ServerError',
    'StreamError',
    'status_error',
]


class LLMError(Exception):
    """Root of every error an engine raises."""


class LLMConnectionError(LLMError, ConnectionError):
    """The engine could not be reached, or the connection broke."""


class LLMTimeoutError(LLMConnectionError, TimeoutError):
    """A connect, idle (between chunks) or total timeout expired."""


class APIStatusError(LLMError):
    """The server answered with an HTTP error status.

    Attributes:
        status_code: The HTTP status.
        message: The server's own explanation, taken from its error body.
        body: The response body as received (decoded JSON or text).
        request_id: The request id the server reported, if any.
    """

    def __init__(self, message: str, *, status_code: int, body: object = None, request_id: str | None = None):
        super().__init__(f'HTTP {status_code}: {message}')
        self.status_code = status_code
        self.message = message
        self.body = body
        self.request_id = request_id


class RequestError(APIStatusError):
    """The server refused the request (4xx); retrying would not help."""


class RateLimitError(RequestError):
    """The server is rate limiting (429); retried after ``Retry-After``."""


class ServerError(APIStatusError):
    """The server failed (5xx); retried."""


class StreamError(LLMError):
    """The server reported an error inside a stream, or sent undecodable data.

    Attributes:
        body: The offending event or error object as received.
    """

    def __init__(self, message: str, *, body: object = None):
        super().__init__(message)
        self.body = body


class EngineStartError(LLMError):
    """A child server process exited early or did not become ready in time."""


class EngineUnavailableError(LLMError):
    """The engine cannot serve here: no CUDA device, model missing or not ready."""


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message says what to install."""

    def __init__(self, package: str, extra: str, *, note: str | None = None):
        message = f'{package} is not installed; install it with: pip install "lagent[{extra}]"'
        super().__init__(f'{message} ({note})' if note else message)
        self.package = package
        self.extra = extra


def status_error(
    status_code: int, message: str, *, body: object = None, request_id: str | None = None
) -> APIStatusError:
    """Build the :class:`APIStatusError` subclass that fits an HTTP status."""
    if status_code == 429:
        cls: type[APIStatusError] = RateLimitError
    elif status_code >= 500:
        cls = ServerError
    elif status_code >= 400:
        cls = RequestError
    else:
        cls = APIStatusError
    return cls(message, status_code=status_code, body=body, request_id=request_id)
