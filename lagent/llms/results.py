"""What engines report, in lagent's words: finish reasons, token usage and
OpenAI-style tool-call fragments.

Every engine reads its results through these functions, so a finish reason or
a token count means the same whatever the engine, and a malformed value from a
server becomes a :class:`~lagent.errors.StreamError` where it enters, never a
``TypeError`` later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lagent.errors import StreamError
from lagent.schema import ToolCallDelta, Usage

__all__ = ['finish_reason', 'openai_tool_deltas', 'openai_usage', 'usage']

_SYNONYMS = {
    'function_call': 'tool_calls',
    'eos': 'stop',
    'eos_token': 'stop',
    'max_tokens': 'length',
    'abort': 'stop',
}
"""Reasons some engines use, in OpenAI's words (``'stop'``, ``'length'``, ``'tool_calls'``)."""


def finish_reason(reported: Any) -> str | None:
    """lagent's finish reason for the one an engine reported (``None``: not finished yet).

    Known synonyms become OpenAI's reasons; other reasons pass through unchanged.

    Raises:
        StreamError: The reason is ``'error'`` (the engine failed mid-reply) or not a string.
    """
    if reported is None:
        return None
    if not isinstance(reported, str):
        raise StreamError(f'the server sent a finish_reason that is not a string: {reported!r}', body=reported)
    if reported == 'error':
        raise StreamError('the server ended the reply with finish_reason "error"')
    return _SYNONYMS.get(reported, reported)


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    """Token counts of one request; the total is their sum."""
    return Usage(
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens
    )


def openai_usage(reported: Any) -> Usage | None:
    """The ``usage`` object of an OpenAI-style answer (``None`` when absent or empty).

    Raises:
        StreamError: It is not an object, or a count is not a non-negative integer.
    """
    if not reported:
        return None
    if not isinstance(reported, Mapping):
        raise StreamError(f'the server sent a usage that is not an object: {reported!r}', body=reported)
    counts = {}
    for name in ('prompt_tokens', 'completion_tokens', 'total_tokens'):
        value = reported.get(name) or 0
        if type(value) is not int or value < 0:
            raise StreamError(f'the server sent usage.{name} = {value!r}, not a token count', body=reported)
        counts[name] = value
    return Usage(**counts)


def openai_tool_deltas(calls: Any) -> list[ToolCallDelta] | None:
    """OpenAI ``tool_calls`` entries (stream deltas or whole calls) as fragments.

    An entry without ``index`` takes its position in the list (whole answers
    carry none).

    Raises:
        StreamError: An entry is malformed (not an object, a name or arguments that are not strings).
    """
    if not calls:
        return None
    if not isinstance(calls, list):
        raise StreamError(f'the server sent tool_calls that are not a list: {calls!r}', body=calls)
    deltas = []
    for position, call in enumerate(calls):
        function = call.get('function') or {} if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            raise StreamError(f'the server sent a malformed tool call: {str(call)[:200]!r}', body=call)
        index, call_id = call.get('index', position), call.get('id')
        name, arguments = function.get('name'), function.get('arguments') or ''
        if (
            type(index) is not int
            or not _optional_str(name)
            or not _optional_str(call_id)
            or type(arguments) is not str
        ):
            raise StreamError(f'the server sent a malformed tool call: {str(call)[:200]!r}', body=call)
        deltas.append(ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments))
    return deltas


def _optional_str(value: Any) -> bool:
    return value is None or type(value) is str
