"""lagent 0.2's API model module: ``BaseAPIModel`` is :class:`~lagent.llms.BaseLLM`,
``APITemplateParser`` turns a conversation into API messages, and
``TokenBucket`` spaces out requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from lagent.llms.base import BaseLLM
from lagent.prompts import MetaTemplate, normalize_messages
from lagent.schema import MessageLike

__all__ = ['APITemplateParser', 'BaseAPIModel', 'TokenBucket']

BaseAPIModel = BaseLLM
"""lagent 0.2's name of the base class of API engines (see :class:`~lagent.llms.OpenAICompatible`)."""


class APITemplateParser:
    """Turns a conversation into the messages an API takes, renaming roles with
    a meta_template's ``api_role`` (lagent 0.2's parser).

    Args:
        meta_template: Role dicts with ``api_role`` (``None``: roles kept).
    """

    def __init__(self, meta_template: Sequence[Mapping[str, Any]] | None = None):
        self.meta_template = list(meta_template or [])
        self._template = MetaTemplate(self.meta_template) if self.meta_template else None

    def __call__(self, dialog: str | Sequence[MessageLike]) -> list[dict[str, Any]]:
        """The API messages for ``dialog`` (a string is one user message)."""
        if isinstance(dialog, str):
            return [{'role': 'user', 'content': dialog}]
        if self._template is None:
            return [message.to_openai() for message in normalize_messages(list(dialog), allow_strings=False)]
        return self._template.to_api_messages(dialog)


class TokenBucket:
    """Lets callers through at most ``rate`` times per second on average, with
    bursts of up to ``rate`` (lagent 0.2's client-side rate limit); thread-safe.

    Args:
        rate: Tokens added per second (and the bucket's size).

    Raises:
        ValueError: ``rate`` is not positive.
    """

    def __init__(self, rate: float):
        if not rate > 0:
            raise ValueError(f'rate must be positive, got {rate!r}')
        self.rate = rate
        self._tokens = float(rate)
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def get_token(self) -> None:
        """Wait until a token is free, and take it."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.rate, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            time.sleep(wait)
