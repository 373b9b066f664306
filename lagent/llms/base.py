"""The LLM contract every engine offers, and the machinery all engines share.

An engine subclasses :class:`BaseLLM` and implements one hook::

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]: ...

``request`` carries either a rendered ``prompt`` or OpenAI-style ``messages``
(with ``tools`` and ``tool_choice``); which one is decided here, once, from the
engine's template and its declared capabilities. Optional hooks:

* ``_astream(request, params)``: native async I/O (by default the sync hook
  runs in a worker thread);
* ``_answer(request, params)`` / ``_aanswer``: a faster path for a whole
  answer (by default the stream);
* ``_answer_batch(requests, params)``: real batching, for engines that declare
  ``native_batching``.

Capabilities are class attributes (``accepts_messages``, ``native_tools``,
``native_batching``, ``batch_concurrency``, ``accepts_images``), never probed.
Everything else lives here, once: parameter merging and validation, prompt
rendering, stop words (one path for streams, whole answers and batches),
cumulative text and status codes.

Which request ``chat`` makes:

* a ``meta_template`` (role dicts or a registered name) renders the prompt
  here; a meta_template whose roles all have an ``api_role`` only renames roles
  and sends messages;
* a ``chat_template`` (Jinja) renders the prompt here, tools included;
* with neither, engines that ``accepts_messages`` get the messages (the model's
  own template applies, and native ``tools`` go there); other engines get the
  message contents joined by newlines.

Images (``image_url`` content parts, see :mod:`lagent.images`) reach only an
engine that declares it takes them on the request's path (``accepts_images``);
anywhere else they raise :class:`~lagent.images.ImageError` naming the part.
With messages, local files become ``data:`` URIs here and every ``data:`` image
is checked against the engine's :class:`~lagent.images.ImagePolicy`; with a
rendered prompt, each image becomes the template's ``image_placeholder`` (or
the engine's own) and travels in ``request.images``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, Union, cast

from lagent.images import ImageError, ImagePolicy, ImageRef, find_images, inline_images
from lagent.llms._threads import LoopHandoff, stream_threads
from lagent.llms.streaming import (
    AsyncStream,
    BatchedIterator,
    ChunkAccumulator,
    StopFilter,
    Stream,
    aclose_source,
    batches_of,
    close_source,
)
from lagent.prompts import ChatTemplate, MetaTemplate, get_template, join_contents, normalize_messages
from lagent.schema import Chunk, GenerationParams, Message, MessageLike, ModelStatusCode, Response

__all__ = ['BaseLLM', 'LLMRequest', 'StreamChatStep']

logger = logging.getLogger(__name__)

T = TypeVar('T')
Conversation = Sequence[MessageLike]
StreamChatStep = tuple[ModelStatusCode, str, Union[Response, None]]
"""One step of ``stream_chat``: status, the whole text so far, and (on the
last step only) the whole :class:`~lagent.schema.Response`."""


@dataclass(frozen=True)
class LLMRequest:
    """What an engine is asked, after templating: exactly one of ``prompt`` and
    ``messages`` is set (see :meth:`BaseLLM.prepare`)."""

    prompt: str | None = None
    """The rendered prompt, or a raw prompt given to ``generate``."""
    messages: list[dict[str, Any]] | None = None
    """OpenAI-style messages, for engines that apply the model's chat template themselves."""
    tools: list[dict[str, Any]] | None = None
    """Tool schemas (OpenAI function format): sent natively with ``messages``, or
    already rendered into ``prompt`` by a chat template (then shown for information)."""
    tool_choice: str | dict[str, Any] | None = None
    """``'auto'``, ``'none'``, ``'required'`` or a forced function (messages only)."""
    images: tuple[ImageRef, ...] = ()
    """With ``prompt``: the conversation's images, one for each image placeholder in
    the prompt, in order (engines load them with :func:`lagent.images.load_image`)."""


class BaseLLM:
    """Base class of every engine: the lagent LLM contract, sync and async.

    Args:
        path: The model (a path or a name), as the engine understands it.
        meta_template: Role dicts of a meta_template, or the name of a
            registered template (see :func:`lagent.prompts.get_template`).
        chat_template: A Jinja chat template (:class:`~lagent.prompts.ChatTemplate`
            or its source) used to render conversations instead of a meta_template.
        max_new_tokens: Most tokens to generate.
        top_p: Nucleus sampling mass in (0, 1].
        top_k: Sample among the k most likely tokens (``None`` or ``0``: no limit).
        temperature: Sampling temperature (``0``: greedy).
        repetition_penalty: Penalty on repeated tokens (``1.0``: none).
        stop_words: Strings that end a reply; defaults to the stop words of a
            named template.
        image_policy: Limits on images, and whether lagent may fetch URLs and read
            local files for them (default: ``ImagePolicy()``, see :mod:`lagent.images`).
        **gen_params: Further :class:`~lagent.schema.GenerationParams` fields
            (``min_new_tokens``, ``seed``, ``ignore_eos``, ``skip_special_tokens``, ``timeout``...).

    Raises:
        ValueError: An unknown keyword, an invalid value, or both templates given.
    """

    accepts_messages: ClassVar[bool] = False
    """The hook takes ``request.messages`` (the engine applies the chat template itself)."""
    native_tools: ClassVar[bool] = False
    """With messages, the hook takes ``tools`` and yields tool-call deltas."""
    native_batching: ClassVar[bool] = False
    """The engine generates a batch together, through :meth:`_answer_batch`."""
    batch_concurrency: ClassVar[int] = 1
    """Without native batching, how many requests of a batch run at once (1: one after another)."""
    accepts_images: frozenset[str] = frozenset()
    """Where the hook takes images: ``'messages'`` (``image_url`` parts in ``request.messages``)
    and/or ``'prompt'`` (``request.images``, placed by placeholders in ``request.prompt``).
    An engine may set it per instance (a model that reads images or not)."""
    image_placeholder: ClassVar[str | None] = None
    """The engine's own image marker in a rendered prompt, used instead of the template's."""

    def __init__(
        self,
        path: str | None = None,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        *,
        chat_template: ChatTemplate | str | None = None,
        max_new_tokens: int = 512,
        top_p: float = 0.8,
        top_k: int | None = 40,
        temperature: float = 0.8,
        repetition_penalty: float = 1.0,
        stop_words: str | Sequence[str] | None = None,
        image_policy: ImagePolicy | None = None,
        **gen_params: Any,
    ):
        self.path = path
        self.image_policy = image_policy or ImagePolicy()
        """What lagent may do with the images of a conversation sent to this engine."""
        self._warned_untemplated = False
        self.template: MetaTemplate | ChatTemplate | None = None
        template_stop_words: tuple[str, ...] = ()
        if meta_template is not None and chat_template is not None:
            raise ValueError('give either meta_template or chat_template, not both')
        if isinstance(meta_template, str):
            spec = get_template(meta_template)
            self.template, template_stop_words = spec.meta_template, spec.stop_words
        elif meta_template:  # an empty list means no template, as in the original lagent
            self.template = MetaTemplate(meta_template)
        elif isinstance(chat_template, str):
            self.template = ChatTemplate(chat_template)
        elif chat_template is not None:
            self.template = chat_template
        known = {*GenerationParams.model_fields, *GenerationParams.translated_keywords}
        unknown = [name for name in gen_params if name not in known]
        if unknown:
            from lagent.llms.config import explain_unknown_keywords  # only on this error path: it imports engines

            raise ValueError(explain_unknown_keywords(type(self), unknown))
        self.gen_params = GenerationParams.create(
            max_new_tokens=max_new_tokens,
            top_p=top_p,
            top_k=top_k,
            temperature=temperature,
            repetition_penalty=repetition_penalty,
            stop_words=template_stop_words if stop_words is None else stop_words,
            **gen_params,
        )

    def __repr__(self) -> str:
        return f'{type(self).__name__}(path={self.path!r})'

    @property
    def tool_calling(self) -> Literal['native', 'template', 'none']:
        """How ``tools=`` travel with a conversation, as this engine is configured.

        * ``'native'``: with the messages, to an engine that returns structured
          tool calls (:attr:`Response.tool_calls <lagent.schema.Response.tool_calls>`);
        * ``'template'``: rendered into the prompt by the ``chat_template``; the
          model writes its calls as text, for the caller to parse;
        * ``'none'``: this engine and template cannot carry tools (describe them
          in the prompt yourself).
        """
        template = self.template
        if isinstance(template, ChatTemplate):
            return 'template'
        if template is not None and not template.is_api_template:
            return 'none'
        return 'native' if self.accepts_messages and self.native_tools else 'none'

    @property
    def template_roles(self) -> frozenset[str] | None:
        """The message roles this engine's ``meta_template`` renders, or ``None``
        when it has no meta_template (conversations then go to the engine as
        messages, are rendered by a Jinja ``chat_template``, or are joined as text).

        Agents whose protocol has roles of its own (InternLM2's ``environment``)
        read this to know whether the engine renders their conversations.
        """
        template = self.template
        return frozenset(template.roles) if isinstance(template, MetaTemplate) else None

    # ------------------------------------------------------------------ hooks

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        """The engine hook: yield the reply to ``request`` as raw chunks.

        ``request.prompt`` is set, or (for engines that ``accepts_messages``)
        ``request.messages`` with ``tools`` and ``tool_choice``. Stop words are
        applied to what this yields by the caller; sending them to the engine
        too (so it stops early) is the engine's business. Closing the returned
        iterator must stop the generation.
        """
        raise NotImplementedError(f'{type(self).__name__} implements no _stream hook')

    def _astream(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        """Async twin of :meth:`_stream`; by default runs it in a worker thread."""
        return iterate_in_thread(lambda: self._stream(request, params))

    def _answer(self, request: LLMRequest, params: GenerationParams) -> Iterable[Chunk]:
        """Optional hook: the whole reply, for engines with a faster path than
        streaming (e.g. one non-streamed HTTP request). By default, the stream."""
        return self._stream(request, params)

    def _aanswer(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        """Async twin of :meth:`_answer`; by default, the async stream."""
        return self._astream(request, params)

    def _answer_batch(self, requests: list[LLMRequest], params: GenerationParams) -> list[list[Chunk]]:
        """Optional hook of engines that declare ``native_batching``: the raw
        replies to several requests generated together, in order."""
        raise NotImplementedError(f'{type(self).__name__} declares native_batching but has no _answer_batch')

    def close(self) -> None:
        """Release the engine's resources (connections, child processes, models)."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ preparing requests

    def params(self, **overrides: Any) -> GenerationParams:
        """Return the generation settings of a call: the defaults with ``overrides``
        applied (the defaults themselves never change).

        Raises:
            ValueError: An unknown keyword or an invalid value, named in the message.
        """
        return self.gen_params.override(**overrides)

    def prepare(
        self,
        inputs: str | Conversation,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
    ) -> LLMRequest:
        """Return exactly what the engine will be asked for ``inputs``: the rendered
        prompt, or the messages sent to a chat endpoint.

        Args:
            inputs: A raw prompt string (no template applied) or a conversation.
            tools: Tool schemas in the OpenAI function format.
            tool_choice: ``'auto'``, ``'none'``, ``'required'`` or a forced function.

        Raises:
            ValueError: The inputs are malformed, or ``tools`` were given where
                this engine and template cannot carry them.
            ImageError: An image this engine cannot take, or a bad, unreadable or
                disallowed image (the message names the part).
        """
        tool_list = _check_tools(tools)
        choice = dict(tool_choice) if isinstance(tool_choice, Mapping) else tool_choice
        if isinstance(inputs, str):
            if tool_list:
                raise ValueError('tools need a conversation (a list of messages), not a raw prompt')
            return LLMRequest(prompt=inputs)
        images = tuple(find_images(inputs))
        template = self.template
        if isinstance(template, MetaTemplate) and template.is_api_template:
            return self._messages_request(template.to_api_messages(inputs), tool_list, choice, images)
        if isinstance(template, MetaTemplate):
            if tool_list:
                raise ValueError('a meta_template cannot render tools; use a chat_template or a chat endpoint')
            self._check_images('prompt', images)
            prompt = template.render(inputs, image_placeholder=self.image_placeholder)
            return LLMRequest(prompt=prompt, images=images)
        if isinstance(template, ChatTemplate):
            self._check_images('prompt', images)
            prompt = template.render(inputs, tools=tool_list, image_placeholder=self.image_placeholder)
            return LLMRequest(prompt=prompt, tools=tool_list, images=images)
        if self.accepts_messages:
            items = cast('list[Message]', normalize_messages(inputs, allow_strings=False))
            return self._messages_request([item.to_openai() for item in items], tool_list, choice, images)
        if tool_list:
            raise ValueError(f'{type(self).__name__} has no native tools; give it a chat_template that renders them')
        self._check_images('prompt', images)
        if not self._warned_untemplated:
            self._warned_untemplated = True
            warnings.warn(
                f'{type(self).__name__} has no template: the messages are joined into one prompt without roles. '
                "Give it meta_template=... (e.g. 'chatml') or chat_template=... to render them as the model expects.",
                UserWarning,
                stacklevel=3,
            )
        return LLMRequest(prompt=join_contents(inputs))

    def _messages_request(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        tool_choice: Any,
        images: tuple[ImageRef, ...] = (),
    ) -> LLMRequest:
        if not self.accepts_messages:
            raise ValueError(
                f'{type(self).__name__} takes prompts only; give it a meta_template with begin/end strings'
            )
        if tools and not self.native_tools:
            raise ValueError(f'{type(self).__name__} has no native tools')
        if images:
            self._check_images('messages', images)
            messages = inline_images(messages, self.image_policy)
        return LLMRequest(messages=messages, tools=tools, tool_choice=tool_choice if tools else None)

    def _log_request(self, request: LLMRequest, params: GenerationParams) -> None:
        """Log at DEBUG exactly what the engine is asked (``lagent ... --debug`` shows it):
        the rendered prompt, or the messages and tools, and the generation settings."""
        if not logger.isEnabledFor(logging.DEBUG):
            return
        name = type(self).__name__
        if request.prompt is not None:
            asked = f'--- rendered prompt ({name}) ---\n{request.prompt}\n--- end of prompt ---'
        else:
            sent: dict[str, Any] = {'messages': request.messages}
            if request.tools:
                sent.update(tools=request.tools, tool_choice=request.tool_choice)
            dump = json.dumps(sent, indent=2, ensure_ascii=False)
            asked = f'--- messages ({name}, template applied by the engine) ---\n{dump}'
        settings = json.dumps(params.model_dump(mode='json'), ensure_ascii=False)
        logger.debug('%s\n--- generation settings ---\n%s', asked, settings)

    def _check_images(self, path: str, images: tuple[ImageRef, ...]) -> None:
        """Raise :class:`~lagent.images.ImageError` unless the engine takes images on ``path``."""
        if not images or path in self.accepts_images:
            return
        name = type(self).__name__
        if not self.accepts_images:
            raise ImageError(f'{images[0].describe()}: {name} does not take images')
        if path == 'prompt':
            how = 'with messages: leave out the template so the messages go to the engine as they are'
        else:
            how = 'with a rendered prompt: give it a template with an image placeholder'
        raise ImageError(f'{images[0].describe()}: {name} takes images {how}')

    def _open(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        self._log_request(request, params)
        return _filter_reply(self._stream(request, params), params.stop_words)

    def _aopen(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        self._log_request(request, params)
        return BatchedIterator(_afilter_batches(batches_of(self._astream(request, params)), params.stop_words))

    def _complete(self, request: LLMRequest, params: GenerationParams) -> Response:
        self._log_request(request, params)
        return _reply(self._answer(request, params), params)

    async def _acomplete(self, request: LLMRequest, params: GenerationParams) -> Response:
        self._log_request(request, params)
        accumulator = ChunkAccumulator()
        async for batch in _afilter_batches(batches_of(self._aanswer(request, params)), params.stop_words):
            for chunk in batch:
                accumulator.add(chunk)
        return accumulator.response()

    def _complete_many(self, requests: list[LLMRequest], params: GenerationParams) -> list[Response]:
        if self.native_batching and len(requests) > 1:
            for request in requests:
                self._log_request(request, params)
            return [_reply(chunks, params) for chunks in self._answer_batch(requests, params)]
        if self.batch_concurrency <= 1 or len(requests) <= 1:
            return [self._complete(request, params) for request in requests]
        with ThreadPoolExecutor(max_workers=min(self.batch_concurrency, len(requests))) as pool:
            return list(pool.map(lambda request: self._complete(request, params), requests))

    async def _acomplete_many(self, requests: list[LLMRequest], params: GenerationParams) -> list[Response]:
        limit = asyncio.Semaphore(max(1, self.batch_concurrency))

        async def one(request: LLMRequest) -> Response:
            async with limit:
                return await self._acomplete(request, params)

        return list(await asyncio.gather(*(one(request) for request in requests)))

    # ------------------------------------------------------------------ typed API

    def stream(
        self,
        inputs: str | Conversation,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **gen_params: Any,
    ) -> Stream[Chunk]:
        """Stream the reply as typed :class:`~lagent.schema.Chunk` deltas.

        Args:
            inputs: A raw prompt (no template applied) or a conversation.
            tools: Tool schemas (OpenAI function format) for native tool calling.
            tool_choice: ``'auto'``, ``'none'``, ``'required'`` or a forced function.
            **gen_params: Per-call overrides of the generation settings.

        Returns:
            A stream to iterate (and close early, or use as a context manager).
        """
        params = self.params(**gen_params)
        return Stream(self._open(self.prepare(inputs, tools=tools, tool_choice=tool_choice), params))

    def astream(
        self,
        inputs: str | Conversation,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **gen_params: Any,
    ) -> AsyncStream[Chunk]:
        """Async twin of :meth:`stream`."""
        params = self.params(**gen_params)
        return AsyncStream(self._aopen(self.prepare(inputs, tools=tools, tool_choice=tool_choice), params))

    def complete(
        self,
        inputs: str | Conversation,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **gen_params: Any,
    ) -> Response:
        """Return the whole typed reply: text, tool calls, finish reason, usage."""
        params = self.params(**gen_params)
        return self._complete(self.prepare(inputs, tools=tools, tool_choice=tool_choice), params)

    async def acomplete(
        self,
        inputs: str | Conversation,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **gen_params: Any,
    ) -> Response:
        """Async twin of :meth:`complete`."""
        params = self.params(**gen_params)
        return await self._acomplete(self.prepare(inputs, tools=tools, tool_choice=tool_choice), params)

    # ------------------------------------------------------------------ lagent API

    def generate(
        self, inputs: str | Sequence[str], session_id: int | str | None = None, **gen_params: Any
    ) -> str | list[str]:
        """Complete raw prompts (no template applied).

        Args:
            inputs: A prompt, or a list of prompts answered as a batch.
            session_id: Accepted for lagent compatibility (also positionally).
            **gen_params: Per-call overrides of the generation settings.

        Returns:
            The reply text; a list of replies for a list of prompts.
        """
        params = self.params(**_with_session(gen_params, session_id))
        if isinstance(inputs, str):
            return self._complete(LLMRequest(prompt=inputs), params).text
        requests = [LLMRequest(prompt=prompt) for prompt in _check_prompts(inputs)]
        return [response.text for response in self._complete_many(requests, params)]

    async def agenerate(
        self, inputs: str | Sequence[str], session_id: int | str | None = None, **gen_params: Any
    ) -> str | list[str]:
        """Async twin of :meth:`generate`."""
        params = self.params(**_with_session(gen_params, session_id))
        if isinstance(inputs, str):
            return (await self._acomplete(LLMRequest(prompt=inputs), params)).text
        requests = [LLMRequest(prompt=prompt) for prompt in _check_prompts(inputs)]
        return [response.text for response in await self._acomplete_many(requests, params)]

    def stream_generate(self, prompt: str, **gen_params: Any) -> Stream[str]:
        """Stream the completion of a raw prompt as the cumulative text so far."""
        if not isinstance(prompt, str):
            raise TypeError(f'stream_generate takes one prompt string, got {type(prompt).__name__}')
        return Stream(_cumulative(self.stream(prompt, **gen_params)))

    def astream_generate(self, prompt: str, **gen_params: Any) -> AsyncStream[str]:
        """Async twin of :meth:`stream_generate`."""
        if not isinstance(prompt, str):
            raise TypeError(f'astream_generate takes one prompt string, got {type(prompt).__name__}')
        return AsyncStream(_acumulative(self.astream(prompt, **gen_params)))

    def chat(self, inputs: Conversation | Sequence[Conversation], **gen_params: Any) -> str | list[str]:
        """Reply to a conversation, or to a list of conversations as a batch.

        Returns:
            The reply text; a list of replies for a list of conversations.
        """
        params = self.params(**gen_params)
        if _is_batch(inputs):
            requests = [self.prepare(conversation) for conversation in inputs]
            return [response.text for response in self._complete_many(requests, params)]
        return self._complete(self.prepare(cast(Conversation, inputs)), params).text

    async def achat(self, inputs: Conversation | Sequence[Conversation], **gen_params: Any) -> str | list[str]:
        """Async twin of :meth:`chat`."""
        params = self.params(**gen_params)
        if _is_batch(inputs):
            requests = [self.prepare(conversation) for conversation in inputs]
            return [response.text for response in await self._acomplete_many(requests, params)]
        return (await self._acomplete(self.prepare(cast(Conversation, inputs)), params)).text

    def stream_chat(
        self,
        inputs: Conversation,
        session_id: int | str | None = None,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        stream: bool = True,
        **gen_params: Any,
    ) -> Stream[StreamChatStep]:
        """Stream the reply to a conversation the lagent way.

        Args:
            inputs: The conversation.
            session_id: Accepted for lagent compatibility (also positionally).
            tools: Tool schemas for native tool calling.
            tool_choice: ``'auto'``, ``'none'``, ``'required'`` or a forced function.
            stream: ``False`` asks for the whole reply at once: one ``END`` step (lagent's option).
            **gen_params: Per-call overrides of the generation settings.

        Yields:
            ``(ModelStatusCode.STREAM_ING, text_so_far, None)`` as text arrives, then
            one ``(ModelStatusCode.END, full_text, response)`` where ``response`` is
            the whole :class:`~lagent.schema.Response` (tool calls, usage...).
        """
        gen_params = _with_session(gen_params, session_id)
        if not stream:
            response = self.complete(inputs, tools=tools, tool_choice=tool_choice, **gen_params)
            return Stream(iter([(ModelStatusCode.END, response.text, response)]))
        chunks = self.stream(inputs, tools=tools, tool_choice=tool_choice, **gen_params)
        return Stream(_status_steps(chunks))

    def astream_chat(
        self,
        inputs: Conversation,
        session_id: int | str | None = None,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        stream: bool = True,
        **gen_params: Any,
    ) -> AsyncStream[StreamChatStep]:
        """Async twin of :meth:`stream_chat`."""
        gen_params = _with_session(gen_params, session_id)
        if not stream:
            return AsyncStream(_whole_step(self.acomplete(inputs, tools=tools, tool_choice=tool_choice, **gen_params)))
        chunks = self.astream(inputs, tools=tools, tool_choice=tool_choice, **gen_params)
        return AsyncStream(_astatus_steps(chunks))

    def update_gen_params(self, **gen_params: Any) -> dict[str, Any]:
        """The generation settings with ``gen_params`` applied, as a dict (lagent's
        method); the LLM's own settings do not change.

        Raises:
            ValueError: An unknown setting or an invalid value.
        """
        return dict(self.params(**gen_params).items())

    @property
    def template_parser(self) -> Callable[[Conversation], str | list[dict[str, Any]]]:
        """lagent's ``template_parser``: called with a conversation, it returns what
        this LLM sends for it (the rendered prompt, or the messages)."""
        return functools.partial(_what_is_sent, self)


# ---------------------------------------------------------------------- shared stream plumbing


def _with_session(gen_params: dict[str, Any], session_id: int | str | None) -> dict[str, Any]:
    """The settings with a positional ``session_id`` (lagent's call shape) folded in."""
    return gen_params if session_id is None else {**gen_params, 'session_id': session_id}


def _what_is_sent(llm: BaseLLM, conversation: Conversation) -> str | list[dict[str, Any]]:
    request = llm.prepare(conversation)
    return request.prompt if request.prompt is not None else list(request.messages or [])


async def _whole_step(answer: Any) -> AsyncIterator[StreamChatStep]:
    response = await answer
    yield ModelStatusCode.END, response.text, response


class _ReplyFilter:
    """Applies stop words to a chunk sequence (shared by the sync and async paths)."""

    __slots__ = ('stop',)

    def __init__(self, stop_words: Sequence[str]):
        self.stop = StopFilter(stop_words)

    def process(self, chunk: Chunk) -> Chunk | None:
        stop = self.stop
        if not stop.stop_words:
            return chunk
        text = stop.feed(chunk.text)
        if stop.stopped:
            return Chunk(text=text, finish_reason='stop', usage=chunk.usage, tool_calls=chunk.tool_calls)
        if chunk.finish_reason is not None:
            text += stop.flush()
        if text == chunk.text:
            return chunk
        if not text and chunk.finish_reason is None and chunk.usage is None and not chunk.tool_calls:
            return None
        return Chunk(text=text, finish_reason=chunk.finish_reason, usage=chunk.usage, tool_calls=chunk.tool_calls)

    def finish(self) -> Chunk | None:
        tail = self.stop.flush()
        return Chunk(text=tail) if tail else None


def _reply(chunks: Iterable[Chunk], params: GenerationParams) -> Response:
    """The whole reply from raw chunks, stop words applied (closes the source at a stop word)."""
    accumulator = ChunkAccumulator()
    for chunk in _filter_reply(iter(chunks), params.stop_words):
        accumulator.add(chunk)
    return accumulator.response()


def _filter_reply(source: Iterator[Chunk], stop_words: Sequence[str]) -> Iterator[Chunk]:
    """``source`` with the reply's stop words applied (closing it at a stop word)."""
    if not stop_words:  # nothing to filter: the chunks pass as they are
        return source
    return _stop_reply(source, stop_words)


def _stop_reply(source: Iterator[Chunk], stop_words: Sequence[str]) -> Iterator[Chunk]:
    reply = _ReplyFilter(stop_words)
    try:
        for chunk in source:
            out = reply.process(chunk)
            if out is not None:
                yield out
            if reply.stop.stopped:
                return
        tail = reply.finish()
        if tail is not None:
            yield tail
    finally:
        close_source(source)


def _afilter_batches(source: AsyncIterator[list[Chunk]], stop_words: Sequence[str]) -> AsyncIterator[list[Chunk]]:
    """The async path's :func:`_filter_reply`, a list of chunks at a time."""
    if not stop_words:  # nothing to filter: the lists pass as they are
        return source
    return _stop_batches(source, stop_words)


async def _stop_batches(source: AsyncIterator[list[Chunk]], stop_words: Sequence[str]) -> AsyncIterator[list[Chunk]]:
    try:
        reply = _ReplyFilter(stop_words)
        async for batch in source:
            kept = []
            for chunk in batch:
                out = reply.process(chunk)
                if out is not None:
                    kept.append(out)
                if reply.stop.stopped:
                    break
            if kept:
                yield kept
            if reply.stop.stopped:
                return
        tail = reply.finish()
        if tail is not None:
            yield [tail]
    finally:
        await aclose_source(source)


def _cumulative(chunks: Stream[Chunk]) -> Iterator[str]:
    with chunks:
        text = ''
        for chunk in chunks:
            if chunk.text:
                text += chunk.text
                yield text


async def _acumulative(chunks: AsyncStream[Chunk]) -> AsyncIterator[str]:
    async with chunks:
        text = ''
        async for chunk in chunks:
            if chunk.text:
                text += chunk.text
                yield text


def _status_steps(chunks: Stream[Chunk]) -> Iterator[StreamChatStep]:
    accumulator = ChunkAccumulator()
    streaming = ModelStatusCode.STREAM_ING
    with chunks:
        text = ''
        for chunk in chunks:
            accumulator.add(chunk)
            if chunk.text:
                text += chunk.text
                yield streaming, text, None
    yield ModelStatusCode.END, text, accumulator.response()


async def _astatus_steps(chunks: AsyncStream[Chunk]) -> AsyncIterator[StreamChatStep]:
    accumulator = ChunkAccumulator()
    streaming = ModelStatusCode.STREAM_ING
    async with chunks:
        text = ''
        async for chunk in chunks:
            accumulator.add(chunk)
            if chunk.text:
                text += chunk.text
                yield streaming, text, None
    yield ModelStatusCode.END, text, accumulator.response()


def iterate_in_thread(factory: Callable[[], Iterator[T]]) -> BatchedIterator[T]:
    """Run a blocking iterator in a worker thread and yield its items asynchronously.

    Items reach the event loop through a :class:`~lagent.llms._threads.LoopHandoff`:
    in batches, with a wake-up only when the reader waits; the returned
    iterator's ``batches()`` reads those lists themselves.

    Closing the async iterator (or cancelling the task reading it) tells the
    worker to stop after its current item and closes the blocking iterator
    there, so in-process engines stop generating.
    """
    return BatchedIterator(_batches_in_thread(factory))


async def _batches_in_thread(factory: Callable[[], Iterator[T]]) -> AsyncIterator[list[T]]:
    handoff: LoopHandoff[T] = LoopHandoff(asyncio.get_running_loop())

    def work() -> None:
        try:
            iterator = factory()
            try:
                for item in iterator:
                    if handoff.stopped:
                        break
                    handoff.send(item)
            finally:
                close_source(iterator)
        except BaseException as exc:  # handed to the reader, raised there
            handoff.end(exc)
        else:
            handoff.end()

    stream_threads.submit(work)
    batches = handoff.batches()
    try:
        async for batch in batches:
            yield batch
    finally:
        await batches.aclose()  # marks the hand-off stopped, so the worker stops too
    if handoff.error is not None:
        raise handoff.error


def _check_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    if isinstance(tools, (str, Mapping)) or not isinstance(tools, Sequence):
        raise ValueError('tools must be a list of tool schemas ({"type": "function", "function": {...}})')
    result = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping) or not isinstance(tool.get('function'), Mapping):
            raise ValueError(f'tool {index} must be {{"type": "function", "function": {{"name": ..., ...}}}}')
        if not tool['function'].get('name'):
            raise ValueError(f'tool {index} has no function name')
        result.append(dict(tool))
    return result


def _check_prompts(inputs: Sequence[str]) -> list[str]:
    if isinstance(inputs, (bytes, Mapping)) or not isinstance(inputs, Sequence):
        raise ValueError(f'generate takes a prompt string or a list of them, got {type(inputs).__name__}')
    prompts = list(inputs)
    if not prompts:
        raise ValueError('generate needs at least one prompt')
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f'prompt {index} must be a str, got {type(prompt).__name__}')
    return prompts


def _is_batch(inputs: Any) -> bool:
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise ValueError(f'chat takes a conversation (a list of messages), got {type(inputs).__name__}')
    if not inputs:
        raise ValueError('chat needs at least one message')
    return isinstance(inputs[0], Sequence) and not isinstance(inputs[0], (str, Mapping))
