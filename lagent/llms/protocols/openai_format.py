"""OpenAI's result shapes, normalized once for every engine that returns them:
finish reasons, :class:`~lagent.schema.Usage`, tool-call deltas, and the
events and answers of ``/v1/completions`` and ``/v1/chat/completions``.

Servers (vLLM, lmdeploy, llama.cpp, SGLang...) and libraries
(llama-cpp-python) that speak this format get the same treatment: a field of
the wrong type (a number where text belongs, a string token count, an integer
finish reason) raises :class:`~lagent.errors.StreamError`, so no chunk ever
carries anything but text in ``text``.

The per-event functions are on the streaming hot path: the common event
(text only) costs a few dictionary lookups and one type check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lagent.errors import StreamError
from lagent.llms.protocols.base import in_band_error
from lagent.schema import Chunk, ToolCallDelta, Usage

__all__ = [
    'answer_chunks',
    'chat_answer',
    'chat_chunks',
    'completion_answer',
    'completion_chunks',
    'finish_reason',
    'tool_call_deltas',
    'usage',
]

FINISH_REASONS = {'function_call': 'tool_calls', 'eos_token': 'stop', 'eos': 'stop', 'max_tokens': 'length'}
"""Finish reasons some servers use, in OpenAI's words."""

_USAGE_FIELDS = ('prompt_tokens', 'completion_tokens', 'total_tokens')


def finish_reason(reason: Any) -> str | None:
    """A server's finish reason in OpenAI's words (``None``: not finished yet).

    Raises:
        StreamError: The server reported ``"error"``, or the reason is not a string.
    """
    if reason is None:
        return None
    if type(reason) is not str:
        raise StreamError(f'the server sent a finish_reason that is not a string: {reason!r}')
    if reason == 'error':
        raise StreamError('the server ended the reply with finish_reason "error"')
    return FINISH_REASONS.get(reason, reason)


def usage(counts: Any) -> Usage | None:
    """Token counts as :class:`~lagent.schema.Usage` (``None``: none reported).

    A missing or ``null`` count is 0.

    Raises:
        StreamError: The counts are not an object, or a count is not a non-negative integer.
    """
    if not counts:
        return None
    if not isinstance(counts, Mapping):
        raise StreamError(f'the server sent usage that is not an object: {counts!r:.200}')
    values = {}
    for name in _USAGE_FIELDS:
        value = counts.get(name)
        if value is None:
            value = 0
        elif type(value) is not int or value < 0:
            raise StreamError(f'the server sent usage.{name} that is not a token count: {value!r:.100}')
        values[name] = value
    return Usage(**values)


def tool_call_deltas(calls: Any) -> list[ToolCallDelta] | None:
    """OpenAI ``tool_calls`` (stream deltas, or a whole message's calls) as fragments.

    A call without ``index`` takes its position in the list.

    Raises:
        StreamError: The calls are not a list of objects with the documented field types.
    """
    if not calls:
        return None
    if not isinstance(calls, list):
        raise StreamError(f'the server sent tool_calls that are not a list: {calls!r:.200}')
    deltas = []
    for position, call in enumerate(calls):
        if not isinstance(call, Mapping):
            raise StreamError(f'the server sent a tool call that is not an object: {call!r:.200}')
        function = call.get('function') or {}
        index = call.get('index', position)
        name = function.get('name') if isinstance(function, Mapping) else function
        arguments = function.get('arguments') if isinstance(function, Mapping) else None
        call_id = call.get('id')
        if (
            not isinstance(function, Mapping)
            or type(index) is not int
            or index < 0
            or not isinstance(call_id, (str, type(None)))
            or not isinstance(name, (str, type(None)))
            or not isinstance(arguments, (str, type(None)))
        ):
            raise StreamError(f'the server sent a malformed tool call: {call!r:.300}', body=call)
        deltas.append(ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments or ''))
    return deltas


def _text(value: Any) -> str:
    """Text of an event: a string, or ``''`` for ``null``."""
    if value is None:
        return ''
    raise StreamError(f'the server sent text that is not a string: {value!r:.200}')


# ---------------------------------------------------------------------- stream events (the hot path)


def _completion_delta(event: dict[str, Any]) -> Chunk | None:
    """One ``/v1/completions`` stream event as a chunk (``None``: nothing in it)."""
    choices = event['choices']
    counts = event.get('usage')
    if not choices:
        return Chunk(usage=usage(counts)) if counts else None
    choice = choices[0]
    finish = choice.get('finish_reason')
    text = choice.get('text')
    if text.__class__ is not str:
        text = _text(text)
    if finish is None and counts is None:
        return Chunk(text) if text else None
    return Chunk(text, finish_reason(finish), usage(counts))


def _chat_delta(event: dict[str, Any]) -> Chunk | None:
    """One ``/v1/chat/completions`` stream event as a chunk (``None``: nothing in it)."""
    choices = event['choices']
    counts = event.get('usage')
    if not choices:
        return Chunk(usage=usage(counts)) if counts else None
    choice = choices[0]
    delta = choice.get('delta') or {}
    text = delta.get('content')
    if text.__class__ is not str:
        text = _text(text)
    calls = delta.get('tool_calls')
    finish = choice.get('finish_reason')
    if finish is None and counts is None and not calls:
        return Chunk(text) if text else None
    return Chunk(text, finish_reason(finish), usage(counts), tool_call_deltas(calls))


def completion_chunks(events: list[dict[str, Any]]) -> list[Chunk]:
    """The ``/v1/completions`` events of one network read as chunks: several events merge into one.

    Raises:
        StreamError: A field of the wrong type.
    """
    if len(events) == 1:
        chunk = _completion_delta(events[0])
        return [chunk] if chunk is not None else []
    texts, finish, counts = [], None, None
    for event in events:
        choices = event['choices']
        if choices:
            choice = choices[0]
            text = choice.get('text')
            if text:
                texts.append(text)
            if choice.get('finish_reason') is not None:
                finish = finish_reason(choice['finish_reason'])
        if event.get('usage'):
            counts = usage(event['usage'])
    return _merged(texts, finish, counts, None)


def chat_chunks(events: list[dict[str, Any]]) -> list[Chunk]:
    """The ``/v1/chat/completions`` events of one network read as chunks: several events merge into one.

    Raises:
        StreamError: A field of the wrong type.
    """
    if len(events) == 1:
        chunk = _chat_delta(events[0])
        return [chunk] if chunk is not None else []
    texts, finish, counts, calls = [], None, None, []
    for event in events:
        choices = event['choices']
        if choices:
            choice = choices[0]
            delta = choice.get('delta') or {}
            text = delta.get('content')
            if text:
                texts.append(text)
            more_calls = delta.get('tool_calls')
            if more_calls:
                if not isinstance(more_calls, list):
                    raise StreamError(f'the server sent tool_calls that are not a list: {more_calls!r:.200}')
                calls += more_calls
            if choice.get('finish_reason') is not None:
                finish = finish_reason(choice['finish_reason'])
        if event.get('usage'):
            counts = usage(event['usage'])
    return _merged(texts, finish, counts, calls)


def _merged(texts: list[Any], finish: str | None, counts: Usage | None, calls: list[Any] | None) -> list[Chunk]:
    """One chunk of several events' pieces (finish reason and usage already checked, each as it came)."""
    if not texts and finish is None and counts is None and not calls:
        return []
    try:
        text = ''.join(texts)
    except TypeError:
        raise StreamError(f'the server sent text that is not a string: {texts!r:.200}') from None
    return [Chunk(text, finish, counts, tool_call_deltas(calls))]


# ---------------------------------------------------------------------- whole answers


def completion_answer(answer: dict[str, Any]) -> Chunk:
    """A whole ``/v1/completions`` answer as one chunk."""
    choice = answer['choices'][0]
    return Chunk(
        _answer_text(choice.get('text')), finish_reason(choice.get('finish_reason')), usage(answer.get('usage'))
    )


def chat_answer(answer: dict[str, Any]) -> Chunk:
    """A whole ``/v1/chat/completions`` answer as one chunk (tool calls numbered by position)."""
    choice = answer['choices'][0]
    message = choice.get('message') or {}
    calls = message.get('tool_calls')
    if calls and isinstance(calls, list):
        calls = [
            {**call, 'index': position} if isinstance(call, Mapping) else call for position, call in enumerate(calls)
        ]
    return Chunk(
        _answer_text(message.get('content')),
        finish_reason(choice.get('finish_reason')),
        usage(answer.get('usage')),
        tool_call_deltas(calls),
    )


def _answer_text(value: Any) -> str:
    return value if value.__class__ is str else _text(value)


def answer_chunks(answer: Any, parse: Callable[[Any], Chunk]) -> list[Chunk]:
    """A non-streamed answer as one chunk, read by ``parse`` (:func:`completion_answer`, :func:`chat_answer`).

    Raises:
        StreamError: The answer is an error object, or not the shape ``parse`` reads.
    """
    if isinstance(answer, Mapping) and answer.get('error') is not None:
        raise in_band_error(answer)
    try:
        return [parse(answer)]
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise StreamError(f'unexpected answer from the server: {str(answer)[:200]!r}', body=answer) from exc
