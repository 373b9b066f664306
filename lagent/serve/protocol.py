"""The OpenAI wire format, server side: request models validated at the edge,
and the JSON of answers and stream chunks.

Requests are pydantic models that forbid unknown fields, so a typo is a 400
naming the field rather than a setting silently ignored. OpenAI fields this
server cannot honour are accepted only at their neutral value
(``frequency_penalty: 0``, ``logprobs: false``...) and refused otherwise.
lmdeploy's and vLLM's extra sampling fields (``top_k``,
``repetition_penalty``, ``ignore_eos``, ``skip_special_tokens``) are accepted,
so lagent's own clients of those servers can talk to this one.

Stream chunks are encoded by :class:`ChunkEncoder`, whose text-only chunk (the
hot path) is two byte strings around one encoded string.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lagent.schema import Chunk, Message, Response, ToolCall, ToolCallDelta, Usage
from lagent.serve.errors import APIError

__all__ = [
    'ChatCompletionRequest',
    'ChunkEncoder',
    'CompletionRequest',
    'chat_answer',
    'completion_answer',
    'merge_chunks',
    'parse_request',
    'usage_json',
]

_NEUTRAL = {
    'frequency_penalty': 0,
    'presence_penalty': 0,
    'logprobs': False,
    'top_logprobs': None,
    'logit_bias': None,
    'echo': False,
    'best_of': 1,
    'suffix': None,
    'parallel_tool_calls': True,
}
"""OpenAI fields accepted only at the value that changes nothing."""

_json = json.JSONEncoder(ensure_ascii=False, separators=(',', ':')).encode


class StreamOptions(BaseModel):
    """``stream_options`` of a streamed request."""

    model_config = ConfigDict(extra='forbid')

    include_usage: bool = False
    """Send the token counts in a last chunk with no choices."""


class _GenerationRequest(BaseModel):
    """Fields shared by chat completions and completions."""

    model_config = ConfigDict(extra='forbid')

    model: str = Field(min_length=1)
    """The served model (engine or agent) to ask."""
    stream: bool = False
    """Stream the answer as Server-Sent Events."""
    stream_options: StreamOptions | None = None
    """Streaming options (only with ``stream: true``)."""
    max_tokens: int | None = Field(None, ge=1)
    """Most tokens to generate (the engine's default when absent)."""
    temperature: float | None = Field(None, ge=0)
    """Sampling temperature; ``0`` is greedy."""
    top_p: float | None = Field(None, gt=0, le=1)
    """Nucleus sampling mass."""
    top_k: int | None = Field(None, ge=0)
    """Sample among the k most likely tokens (an lmdeploy/vLLM extension)."""
    repetition_penalty: float | None = Field(None, gt=0)
    """Penalty on repeated tokens (an lmdeploy/vLLM extension)."""
    seed: int | None = None
    """Random seed."""
    stop: str | list[str] | None = None
    """Strings that end the answer, added to the engine's own stop words."""
    n: int = 1
    """Number of answers; only 1 is supported."""
    ignore_eos: bool | None = None
    """Keep generating past the end-of-sequence token (an lmdeploy/vLLM extension)."""
    skip_special_tokens: bool | None = None
    """Drop special tokens when decoding (an lmdeploy/vLLM extension)."""
    user: str | None = None
    """An end-user id; accepted and not used."""
    # OpenAI fields accepted at their neutral value only (see ``check``)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: Any = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator('stop')
    @classmethod
    def _stop_words(cls, value: str | list[str] | None) -> str | list[str] | None:
        words = [value] if isinstance(value, str) else value or []
        if any(not word for word in words):
            raise ValueError('stop strings must not be empty')
        return value

    def check(self) -> None:
        """Refuse what the server cannot honour, naming the field.

        Raises:
            APIError: 400.
        """
        if self.n != 1:
            raise APIError(400, f'n: only 1 answer per request is supported, got {self.n}', param='n')
        for name, neutral in _NEUTRAL.items():
            value = getattr(self, name, neutral)
            if value is None or value == neutral or (neutral is None and not value):
                continue
            raise APIError(400, f'{name}: {value!r} is not supported by this server (leave it out)', param=name)
        if self.stream_options is not None and not self.stream:
            raise APIError(400, 'stream_options: only allowed with stream: true', param='stream_options')

    @property
    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage

    def generation_kwargs(self, max_tokens: int | None = None) -> dict[str, Any]:
        """The per-call generation settings this request asks for (absent fields keep the engine's)."""
        kwargs: dict[str, Any] = {}
        limit = max_tokens if max_tokens is not None else self.max_tokens
        if limit is not None:
            kwargs['max_new_tokens'] = limit
        for name in (
            'temperature',
            'top_p',
            'top_k',
            'repetition_penalty',
            'seed',
            'ignore_eos',
            'skip_special_tokens',
        ):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs

    def sampling_fields(self) -> list[str]:
        """The generation fields this request sets."""
        names = ('max_tokens', 'temperature', 'top_p', 'top_k', 'repetition_penalty', 'seed', 'stop', 'ignore_eos')
        return [name for name in (*names, 'skip_special_tokens') if getattr(self, name) is not None]


class ChatCompletionRequest(_GenerationRequest):
    """A ``POST /v1/chat/completions`` body."""

    messages: list[Message] = Field(min_length=1)
    """The conversation (for an agent with a ``session_id``: the new messages only)."""
    max_completion_tokens: int | None = Field(None, ge=1)
    """OpenAI's newer name for ``max_tokens``."""
    tools: list[dict[str, Any]] | None = None
    """Tool schemas for engines with native tool calling."""
    tool_choice: str | dict[str, Any] | None = None
    """``'auto'``, ``'none'``, ``'required'`` or a named function."""
    parallel_tool_calls: bool | None = None
    session_id: str | None = Field(None, min_length=1, max_length=128, pattern=r'^[A-Za-z0-9_.:-]+$')
    """For agents: keep the conversation on the server under this id (a lagent extension)."""

    def check(self) -> None:
        super().check()
        limits = {self.max_tokens, self.max_completion_tokens} - {None}
        if len(limits) > 1:
            raise APIError(400, 'max_completion_tokens: disagrees with max_tokens; give one', param='max_tokens')
        if self.tool_choice is not None and not self.tools:
            raise APIError(400, 'tool_choice: needs tools', param='tool_choice')

    def generation_kwargs(self, max_tokens: int | None = None) -> dict[str, Any]:
        return super().generation_kwargs(self.max_completion_tokens if max_tokens is None else max_tokens)


class CompletionRequest(_GenerationRequest):
    """A ``POST /v1/completions`` body."""

    prompt: str
    """The raw prompt (no template applied); batches of prompts are not supported."""
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None

    @field_validator('prompt', mode='before')
    @classmethod
    def _one_prompt(cls, value: Any) -> Any:
        if isinstance(value, list):
            raise ValueError('send one prompt string; batches of prompts are not supported')
        return value


def parse_request(model: type[_GenerationRequest], body: Any) -> Any:
    """Validate a decoded JSON body into ``model``.

    Raises:
        APIError: 400 naming the first field at fault.
    """
    if not isinstance(body, Mapping):
        raise APIError(400, f'the request body must be a JSON object, got {type(body).__name__}')
    try:
        request = model.model_validate(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    request.check()
    return request


def _validation_error(exc: ValidationError) -> APIError:
    errors = exc.errors(include_url=False)
    error = next((error for error in errors if error['type'] == 'extra_forbidden'), errors[0])
    location = [str(part) for part in error['loc']]
    param = '.'.join(location) or None
    if error['type'] == 'extra_forbidden':
        message = f'unknown field {param!r}'
    elif error['type'] == 'missing':
        message = f'{param}: this field is required'
    elif error['type'] == 'value_error':
        message = f'{param}: {error["msg"].removeprefix("Value error, ")}'
    else:
        given = error.get('input')
        shown = '' if isinstance(given, Mapping) else f' (got {_short(given)})'
        message = f'{param}: {error["msg"]}{shown}'
    more = len(errors) - 1
    if more:
        message += f' (and {more} more problem{"s" if more > 1 else ""})'
    return APIError(400, message, param=param, code='invalid_value')


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + '...'


# ---------------------------------------------------------------------- answers


def new_id(prefix: str) -> str:
    """A fresh response id, e.g. ``chatcmpl-1f0e...``: unique, not secret (it grants nothing),
    so it is drawn without a system call per request."""
    return f'{prefix}-{random.getrandbits(128):032x}'


def usage_json(usage: Usage | None) -> dict[str, int] | None:
    """Token counts in OpenAI's form (``None`` when the engine reported none)."""
    if usage is None:
        return None
    return {
        'prompt_tokens': usage.prompt_tokens,
        'completion_tokens': usage.completion_tokens,
        'total_tokens': usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def tool_calls_json(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """Whole tool calls in OpenAI's form."""
    return [call.model_dump(mode='json') for call in calls]


def tool_deltas_json(deltas: Sequence[ToolCallDelta]) -> list[dict[str, Any]]:
    """Tool-call fragments in OpenAI's stream form (id, type and name only where known)."""
    result = []
    for delta in deltas:
        item: dict[str, Any] = {'index': delta.index}
        if delta.id is not None:
            item['id'] = delta.id
            item['type'] = 'function'
        function: dict[str, str] = {'arguments': delta.arguments}
        if delta.name is not None:
            function['name'] = delta.name
        item['function'] = function
        result.append(item)
    return result


def chat_answer(
    model: str, response: Response, *, finish_reason: str | None = None, extension: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A whole ``chat.completion`` answer."""
    message: dict[str, Any] = {'role': 'assistant', 'content': response.text}
    if response.tool_calls:
        message['tool_calls'] = tool_calls_json(response.tool_calls)
        message['content'] = response.text or None
    answer = {
        'id': new_id('chatcmpl'),
        'object': 'chat.completion',
        'created': int(time.time()),
        'model': model,
        'choices': [
            {'index': 0, 'message': message, 'finish_reason': finish_reason or response.finish_reason or 'stop'}
        ],
        'usage': usage_json(response.usage),
    }
    if extension is not None:
        answer['lagent'] = extension
    return answer


def completion_answer(model: str, response: Response) -> dict[str, Any]:
    """A whole ``text_completion`` answer."""
    return {
        'id': new_id('cmpl'),
        'object': 'text_completion',
        'created': int(time.time()),
        'model': model,
        'choices': [{'index': 0, 'text': response.text, 'finish_reason': response.finish_reason or 'stop'}],
        'usage': usage_json(response.usage),
    }


def merge_chunks(chunks: Sequence[Chunk]) -> Chunk:
    """One chunk saying what ``chunks`` say in order: texts joined, fragments of
    the same tool call joined, the last finish reason and usage."""
    if len(chunks) == 1:
        return chunks[0]
    for chunk in chunks:
        if chunk.finish_reason is not None or chunk.usage is not None or chunk.tool_calls:
            break
    else:  # text only: the common case, kept cheap
        return Chunk(''.join([chunk.text for chunk in chunks]))
    texts = []
    finish = usage = None
    calls: list[ToolCallDelta] = []
    for chunk in chunks:
        if chunk.text:
            texts.append(chunk.text)
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
        for delta in chunk.tool_calls or ():
            last = calls[-1] if calls else None
            if last is not None and last.index == delta.index and delta.id in (None, last.id):
                name = last.name if delta.name is None else (last.name or '') + delta.name
                calls[-1] = ToolCallDelta(last.index, last.id, name, last.arguments + delta.arguments)
            else:
                calls.append(ToolCallDelta(delta.index, delta.id, delta.name, delta.arguments))
    return Chunk(''.join(texts), finish, usage, calls or None)


# ---------------------------------------------------------------------- stream chunks


class ChunkEncoder:
    """Encodes the Server-Sent Events of one streamed answer.

    Args:
        model: The model name the chunks carry.
        kind: ``'chat'`` (``chat.completion.chunk``, ``delta`` objects) or
            ``'completion'`` (``text_completion``, ``text`` fields).
    """

    __slots__ = ('_head', '_kind', '_text_prefix', '_text_suffix', 'first')

    def __init__(self, model: str, kind: Literal['chat', 'completion']):
        self._kind = kind
        prefix, object_name = ('chatcmpl', 'chat.completion.chunk') if kind == 'chat' else ('cmpl', 'text_completion')
        head = {'id': new_id(prefix), 'object': object_name, 'created': int(time.time()), 'model': model}
        self._head = head
        opening = _json(head)[:-1]
        if kind == 'chat':
            self._text_prefix = f'data: {opening},"choices":[{{"index":0,"delta":{{"content":'.encode()
            self._text_suffix = b'},"finish_reason":null}]}\n\n'
        else:
            self._text_prefix = f'data: {opening},"choices":[{{"index":0,"text":'.encode()
            self._text_suffix = b',"finish_reason":null}]}\n\n'
        self.first = True
        """Whether nothing was encoded yet (the first chat delta carries the role)."""

    def text(self, text: str) -> bytes:
        """A chunk of text only (the hot path)."""
        if self.first:
            return self.chunk(Chunk(text))
        return self._text_prefix + _json(text).encode() + self._text_suffix

    def chunk(self, chunk: Chunk, extension: dict[str, Any] | None = None) -> bytes:
        """Any chunk: text, tool-call fragments and the finish reason (usage goes in :meth:`usage`)."""
        if chunk.finish_reason is None and not chunk.tool_calls and extension is None and not self.first:
            return self.text(chunk.text)
        if self._kind == 'chat':
            delta: dict[str, Any] = {}
            if self.first:
                delta['role'] = 'assistant'
            if chunk.text or self.first:
                delta['content'] = chunk.text
            if chunk.tool_calls:
                delta['tool_calls'] = tool_deltas_json(chunk.tool_calls)
            choice: dict[str, Any] = {'index': 0, 'delta': delta, 'finish_reason': chunk.finish_reason}
        else:
            choice = {'index': 0, 'text': chunk.text, 'finish_reason': chunk.finish_reason}
        self.first = False
        event = {**self._head, 'choices': [choice]}
        if extension is not None:
            event['lagent'] = extension
        return self.event(event)

    def usage(self, usage: Usage | None) -> bytes:
        """The last chunk of a stream that asked for ``include_usage``: no choices, the token counts."""
        return self.event({**self._head, 'choices': [], 'usage': usage_json(usage)})

    @staticmethod
    def event(data: dict[str, Any]) -> bytes:
        """One event holding ``data`` as JSON."""
        return b'data: ' + _json(data).encode() + b'\n\n'

    @staticmethod
    def error(error: APIError) -> bytes:
        """An in-band error event, in the error format of HTTP errors (the stream ends after it, without ``[DONE]``)."""
        return ChunkEncoder.event(error.body())


DONE = b'data: [DONE]\n\n'
"""The event that ends a stream."""
