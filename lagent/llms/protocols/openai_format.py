"""The events and answers of OpenAI's ``/v1/completions`` and
``/v1/chat/completions``, as chunks.

Servers that speak this format (vLLM, lmdeploy, llama.cpp, SGLang...) get the
same treatment: finish reasons, usage and tool-call fragments go through
:mod:`lagent.llms.results` (as every engine's do), and a field of the wrong
type (a number where text belongs, a string token count, an integer finish
reason) raises :class:`~lagent.errors.StreamError`, so no chunk ever carries
anything but text in ``text``.

The per-event functions are on the streaming hot path: the common event
(text only) costs a few dictionary lookups and one type check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from lagent.errors import StreamError
from lagent.llms.protocols.base import in_band_error
from lagent.llms.results import finish_reason, openai_tool_deltas, openai_usage
from lagent.schema import Chunk, Usage

__all__ = ['answer_chunk', 'chat_answer', 'chat_chunks', 'completion_answer', 'completion_chunks']


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
        return Chunk(usage=openai_usage(counts)) if counts else None
    choice = choices[0]
    finish = choice.get('finish_reason')
    text = choice.get('text')
    if text.__class__ is not str:
        text = _text(text)
    if finish is None and counts is None:
        return Chunk(text) if text else None
    return Chunk(text, finish_reason(finish), openai_usage(counts))


def _chat_delta(event: dict[str, Any]) -> Chunk | None:
    """One ``/v1/chat/completions`` stream event as a chunk (``None``: nothing in it)."""
    choices = event['choices']
    counts = event.get('usage')
    if not choices:
        return Chunk(usage=openai_usage(counts)) if counts else None
    choice = choices[0]
    delta = choice.get('delta') or {}
    text = delta.get('content')
    if text.__class__ is not str:
        text = _text(text)
    calls = delta.get('tool_calls')
    finish = choice.get('finish_reason')
    if finish is None and counts is None and not calls:
        return Chunk(text) if text else None
    return Chunk(text, finish_reason(finish), openai_usage(counts), openai_tool_deltas(calls))


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
            counts = openai_usage(event['usage'])
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
            counts = openai_usage(event['usage'])
    return _merged(texts, finish, counts, calls)


def _merged(texts: list[Any], finish: str | None, counts: Usage | None, calls: list[Any] | None) -> list[Chunk]:
    """One chunk of several events' pieces (finish reason and usage already checked, each as it came)."""
    if not texts and finish is None and counts is None and not calls:
        return []
    try:
        text = ''.join(texts)
    except TypeError:
        raise StreamError(f'the server sent text that is not a string: {texts!r:.200}') from None
    return [Chunk(text, finish, counts, openai_tool_deltas(calls))]


# ---------------------------------------------------------------------- whole answers


def completion_answer(answer: dict[str, Any]) -> Chunk:
    """A whole ``/v1/completions`` answer as one chunk."""
    choice = answer['choices'][0]
    return Chunk(
        _answer_text(choice.get('text')), finish_reason(choice.get('finish_reason')), openai_usage(answer.get('usage'))
    )


def chat_answer(answer: dict[str, Any]) -> Chunk:
    """A whole ``/v1/chat/completions`` answer as one chunk."""
    choice = answer['choices'][0]
    message = choice.get('message') or {}
    return Chunk(
        _answer_text(message.get('content')),
        finish_reason(choice.get('finish_reason')),
        openai_usage(answer.get('usage')),
        openai_tool_deltas(message.get('tool_calls')),
    )


def _answer_text(value: Any) -> str:
    return value if value.__class__ is str else _text(value)


def answer_chunk(answer: Any, parse: Callable[[Any], Chunk]) -> Chunk:
    """A non-streamed answer as one chunk, read by ``parse`` (:func:`completion_answer`, :func:`chat_answer`).

    Raises:
        StreamError: The answer is an error object, or not the shape ``parse`` reads.
    """
    if isinstance(answer, Mapping) and answer.get('error') is not None:
        raise in_band_error(answer)
    try:
        return parse(answer)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise StreamError(f'unexpected answer from the server: {str(answer)[:200]!r}', body=answer) from exc
