"""``OpenAICompatible``: any server that speaks the OpenAI completions and chat
completions API (vLLM, lmdeploy, llama.cpp, SGLang, OpenAI itself...)."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from lagent.errors import EngineUnavailableError
from lagent.llms.base import BaseLLM, LLMRequest
from lagent.llms.http import EventParser, HTTPTransport, check_base_url
from lagent.llms.protocols.openai_format import (
    answer_chunk,
    chat_answer,
    chat_chunks,
    completion_answer,
    completion_chunks,
)
from lagent.llms.protocols.sse import SSEStream
from lagent.schema import Chunk, GenerationParams

__all__ = ['GPTAPI', 'OpenAICompatible']


class OpenAICompatible(BaseLLM):
    """An LLM behind an OpenAI-compatible HTTP server.

    With a ``meta_template`` (or ``chat_template``) the prompt is rendered here
    and sent to ``/v1/completions``; without one, the messages (and native
    ``tools``) go to ``/v1/chat/completions`` and the server applies the model's
    chat template. ``generate``/``chat``/``complete`` ask for the whole answer
    at once; ``stream*`` methods stream it (usage is requested for the last event).
    Images go with the messages as ``image_url`` parts: local files as ``data:``
    URIs, ``http(s)`` URLs as they are (the server fetches them).

    Args:
        url: The server's base URL, with or without ``/v1`` (``http://127.0.0.1:8000``).
        model_name: The model to ask for; ``None``: the first model listed at
            ``/v1/models`` (asked once, on first use).
        api_key: Sent as ``Authorization: Bearer``; never logged or shown.
        meta_template: Role dicts or the name of a registered template (prompt path).
        chat_template: A Jinja chat template rendered here (prompt path).
        max_retries: Retries on connection errors, 429 and 5xx (never on other 4xx).
        connect_timeout: Seconds to establish a connection.
        idle_timeout: Seconds to wait for the next piece of a stream.
        timeout: Seconds a whole request may take, retries included; the
            ``timeout`` call keyword overrides it per call.
        retry_backoff: Base delay of the exponential backoff between retries, in seconds.
        extra_body: Fields added to every request body (options of a particular server).
        **gen_params: Generation defaults (``max_new_tokens``, ``temperature``,
            ``top_p``, ``stop_words``, ``seed``...), see :class:`~lagent.llms.BaseLLM`.

    Example:
        >>> llm = OpenAICompatible('http://127.0.0.1:8000', api_key='sk-...')  # doctest: +SKIP
        >>> llm.chat([{'role': 'user', 'content': 'Hi'}])  # doctest: +SKIP
    """

    accepts_messages = True
    native_tools = True
    accepts_images = frozenset({'messages'})
    batch_concurrency = 16

    def __init__(
        self,
        url: str,
        model_name: str | None = None,
        api_key: str | None = None,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        chat_template: Any = None,
        *,
        max_retries: int = 2,
        connect_timeout: float = 10.0,
        idle_timeout: float = 120.0,
        timeout: float | None = 600.0,
        retry_backoff: float = 0.5,
        extra_body: Mapping[str, Any] | None = None,
        **gen_params: Any,
    ):
        super().__init__(path=model_name, meta_template=meta_template, chat_template=chat_template, **gen_params)
        self.url = url
        self.extra_body = dict(extra_body or {})
        self.transport = HTTPTransport(
            api_base(url),
            api_key=api_key,
            max_retries=max_retries,
            connect_timeout=connect_timeout,
            idle_timeout=idle_timeout,
            timeout=timeout,
            retry_backoff=retry_backoff,
        )
        self._model_name = model_name
        self._model_lock = threading.Lock()

    def __repr__(self) -> str:
        return f'{type(self).__name__}(url={self.url!r}, model_name={self._model_name!r})'

    # ------------------------------------------------------------------ the model

    @property
    def model_name(self) -> str:
        """The model requests ask for (the server's first model unless one was given)."""
        if self._model_name is None:
            with self._model_lock:
                if self._model_name is None:
                    self._model_name = _first_model(self.transport.get_json('/models'))
        return self._model_name

    async def amodel_name(self) -> str:
        """Async twin of :attr:`model_name`."""
        if self._model_name is None:
            self._model_name = _first_model(await self.transport.aget_json('/models'))
        return self._model_name

    # ------------------------------------------------------------------ request bodies

    def _sampling_fields(self, params: GenerationParams) -> dict[str, Any]:
        """The OpenAI fields of the generation settings."""
        fields: dict[str, Any] = {
            'max_tokens': params.max_new_tokens,
            'temperature': params.temperature,
            'top_p': params.top_p,
        }
        if params.stop_words:
            fields['stop'] = list(params.stop_words)
        if params.seed is not None:
            fields['seed'] = params.seed
        return fields

    def _engine_fields(self, params: GenerationParams) -> dict[str, Any]:
        """Fields a particular server adds to every request; subclasses override this."""
        return {}

    def _body(self, model: str, request: LLMRequest, params: GenerationParams, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {'model': model}
        if request.prompt is not None:
            body['prompt'] = request.prompt
        else:
            body['messages'] = request.messages
            if request.tools:
                body['tools'] = request.tools
                if request.tool_choice is not None:
                    body['tool_choice'] = request.tool_choice
        body.update(self._sampling_fields(params))
        body.update(self._engine_fields(params))
        body['stream'] = stream
        if stream:
            body['stream_options'] = {'include_usage': True}
        body.update(self.extra_body)
        return body

    # ------------------------------------------------------------------ hooks

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        path, _, parse = _endpoint(request)
        body = self._body(self.model_name, request, params, stream=True)
        return self.transport.stream(
            path, body, parse, protocol=SSEStream, timeout=params.timeout, request_id=params.request_id
        )

    def _astream(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        if self._model_name is None:
            return self._astream_after_model_lookup(request, params)
        path, _, parse = _endpoint(request)
        body = self._body(self._model_name, request, params, stream=True)
        return self.transport.astream(
            path, body, parse, protocol=SSEStream, timeout=params.timeout, request_id=params.request_id
        )

    async def _astream_after_model_lookup(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        await self.amodel_name()
        stream = self._astream(request, params)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    def _answer(self, request: LLMRequest, params: GenerationParams) -> list[Chunk]:
        """One non-streamed request: the server sends the whole answer at once."""
        path, parse, _ = _endpoint(request)
        body = self._body(self.model_name, request, params, stream=False)
        answer = self.transport.post_json(path, body, timeout=params.timeout, request_id=params.request_id)
        return [answer_chunk(answer, parse)]

    async def _aanswer(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        path, parse, _ = _endpoint(request)
        body = self._body(await self.amodel_name(), request, params, stream=False)
        answer = await self.transport.apost_json(path, body, timeout=params.timeout, request_id=params.request_id)
        yield answer_chunk(answer, parse)

    def close(self) -> None:
        """Close the HTTP connections."""
        self.transport.close()

    async def aclose(self) -> None:
        """Close the HTTP connections, those of the running event loop included."""
        await self.transport.aclose()


class GPTAPI(OpenAICompatible):
    """:class:`OpenAICompatible` under the name and keywords of the original lagent.

    Args:
        model_type: The model to ask for.
        retry: Retries on connection errors, 429 and 5xx.
        key: The API key; ``'ENV'`` reads ``OPENAI_API_KEY``.
        api_base: The server's base URL (with or without ``/v1``, or the full
            ``.../chat/completions`` address the original took).
        meta_template: Role dicts; the original's ``api_role`` templates only rename roles.
        json_mode: Ask for a JSON object reply (``response_format``).
        openai_api_base: The original's name for ``api_base`` (wins when given).
        query_per_second: Accepted for the original's call shape; requests are
            not rate-limited here (the transport backs off on HTTP 429).
        **kwargs: Further :class:`OpenAICompatible` keywords and generation defaults.

    Raises:
        ValueError: ``key`` is a list with more than one key (the original
            rotated keys; pass one).
    """

    def __init__(
        self,
        model_type: str = 'gpt-4o-mini',
        retry: int = 2,
        key: str | Sequence[str] | None = 'ENV',
        api_base: str = 'https://api.openai.com/v1',
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        json_mode: bool = False,
        *,
        openai_api_base: str | None = None,
        query_per_second: float = 1,
        **kwargs: Any,
    ):
        if isinstance(key, (list, tuple)):
            if len(key) > 1:
                raise ValueError('GPTAPI takes one API key; the original rotated a list of keys, this does not')
            key = key[0] if key else None
        if key == 'ENV':
            key = os.environ.get('OPENAI_API_KEY')
        api_base = openai_api_base or api_base
        if isinstance(api_base, str):  # anything else is refused, with its reason, by OpenAICompatible
            for suffix in ('/chat/completions', '/completions'):
                api_base = api_base.removesuffix(suffix)
        extra_body = dict(kwargs.pop('extra_body', None) or {})
        if json_mode:
            extra_body['response_format'] = {'type': 'json_object'}
        super().__init__(
            api_base,
            model_name=model_type,
            api_key=key,
            meta_template=meta_template,
            max_retries=retry,
            extra_body=extra_body,
            **kwargs,
        )


def api_base(url: str) -> str:
    """Return the API root of a server URL given with or without ``/v1``.

    Raises:
        ValueError: Not an ``http(s)://host...`` URL.
    """
    url = check_base_url(url).rstrip('/')
    return url if url.endswith('/v1') else f'{url}/v1'


def _first_model(listing: Any) -> str:
    try:
        return str(listing['data'][0]['id'])
    except (KeyError, IndexError, TypeError) as exc:
        raise EngineUnavailableError(f'the server lists no model at /v1/models (got {str(listing)[:200]!r})') from exc


def _endpoint(request: LLMRequest) -> tuple[str, Callable[[Any], Chunk], EventParser[Chunk]]:
    """The path of a request, and how to read its whole answer and its stream events."""
    if request.prompt is not None:
        return '/completions', completion_answer, completion_chunks
    return '/chat/completions', chat_answer, chat_chunks
