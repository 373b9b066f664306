"""``LMDeployPipeline``: lmdeploy's inference engine (TurboMind or PyTorch) in process.

lmdeploy runs on CUDA (and, with the PyTorch backend, a few other accelerators)
only, so the device is checked before lmdeploy is imported: without one the
constructor raises :class:`~lagent.errors.EngineUnavailableError`.

How the lagent contract maps onto lmdeploy:

* prompts are sent with ``do_preprocess=False`` (lagent rendered them);
  conversations without a lagent template go as messages and lmdeploy applies
  the model's chat template;
* ``stream``/``stream_chat`` use ``Pipeline.stream_infer`` with a session of
  their own, aborted when the stream is closed early; batches use ``infer``;
* the async methods drive the engine's own async API (``preprocess`` +
  ``generate`` from lmdeploy 0.16, ``generate`` before) on the pipeline's event
  loop, so no worker thread waits on a blocking iterator;
* images (vision-language models) go in lmdeploy's VL input format, read and
  checked by lagent first (see :func:`pipeline_inputs`); lmdeploy turns them
  into the model's pixel values and its engine runs the vision encoder. A
  model lmdeploy builds no image encoder for takes no images.

The translation of settings and requests into lmdeploy's inputs is done by
the pure functions :func:`engine_config_fields`, :func:`generation_config_fields`
and :func:`pipeline_inputs`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from lagent._optional import import_optional
from lagent.errors import EngineUnavailableError, LLMError
from lagent.images import ImagePolicy, find_images, has_images, load_image
from lagent.llms import results
from lagent.llms._threads import LoopHandoff
from lagent.llms.base import BaseLLM, LLMRequest
from lagent.llms.streaming import BatchedIterator
from lagent.prompts import ChatTemplate
from lagent.schema import Chunk, GenerationParams

__all__ = ['LMDeployPipeline', 'engine_config_fields', 'generation_config_fields', 'pipeline_inputs']

logger = logging.getLogger(__name__)

BACKENDS = ('turbomind', 'pytorch')
"""lmdeploy's engines."""
MIN_VERSION = (0, 12)
"""The oldest lmdeploy this engine speaks to."""
PREPROCESS_API_VERSION = (0, 16)
"""From this lmdeploy version on, the async engine takes ``preprocess`` then ``generate``."""


MARKER_HINT = (
    "; the prompt places its images at lmdeploy's <IMAGE_TOKEN> markers, which only some of lmdeploy's vision "
    'models read (in lmdeploy 0.18 Qwen2-VL, InternVL, DeepSeek-VL and Llama 4 do; LLaVA, Gemma 3, GLM-4V and '
    'Molmo place images themselves and reject them): for those, send messages without a lagent template'
)
"""Added to an lmdeploy failure of a rendered prompt with images."""


def engine_config_fields(
    *,
    tp: int = 1,
    session_len: int | None = None,
    cache_max_entry_count: float | None = None,
    pipeline_cfg: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fields of lmdeploy's engine config (``TurbomindEngineConfig`` or
    ``PytorchEngineConfig``) for the constructor keywords.

    ``pipeline_cfg`` holds any further engine-config fields; the named keywords
    win over it, and ``None`` keeps lmdeploy's default.
    """
    fields = dict(pipeline_cfg or {})
    fields['tp'] = tp
    if session_len is not None:
        fields['session_len'] = session_len
    if cache_max_entry_count is not None:
        fields['cache_max_entry_count'] = cache_max_entry_count
    return fields


def generation_config_fields(params: GenerationParams) -> dict[str, Any]:
    """The fields of lmdeploy's ``GenerationConfig`` for lagent's generation settings.

    Sampling is on unless ``temperature`` is 0 (greedy); special tokens are kept
    by default (``skip_special_tokens=False``) so that tool-call markers survive.
    """
    fields: dict[str, Any] = dict(
        max_new_tokens=params.max_new_tokens,
        do_sample=not params.greedy,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k or 0,
        repetition_penalty=params.repetition_penalty,
        ignore_eos=params.ignore_eos,
        skip_special_tokens=bool(params.skip_special_tokens),
        stop_words=list(params.stop_words) or None,
        random_seed=params.seed,
    )
    if params.min_new_tokens is not None:
        fields['min_new_tokens'] = params.min_new_tokens
    return fields


def require_device(pipeline_cfg: Mapping[str, Any] | None, backend: str) -> None:
    """Raise :class:`EngineUnavailableError` unless lmdeploy has a device to run on.

    The PyTorch backend may name another accelerator (``device_type``); then
    lmdeploy checks it itself. Otherwise a CUDA device must be visible to torch.
    """
    device_type = (pipeline_cfg or {}).get('device_type', 'cuda')
    if backend == 'pytorch' and device_type != 'cuda':
        return
    torch = import_optional(
        'torch', package='torch', extra='lmdeploy', note='install the CUDA build of torch that lmdeploy supports'
    )
    if not torch.cuda.is_available():
        raise EngineUnavailableError(
            'LMDeployPipeline needs a CUDA device and torch sees none; without a GPU use LlamaCpp or '
            'HFTransformer, or LMDeployClient against an lmdeploy server running elsewhere'
        )


class LMDeployPipeline(BaseLLM):
    """lmdeploy's inference engine run in this process.

    Args:
        path: A model directory or a model name lmdeploy can load.
        model_name: The name of lmdeploy's chat template for the model, when
            lmdeploy cannot tell it from the path (``ChatTemplateConfig``).
        tp: Tensor-parallel degree (number of GPUs).
        pipeline_cfg: Further engine-config fields (``max_batch_size``,
            ``quant_policy``, ``device_type``...); unknown names raise ``ValueError``.
        meta_template: Role dicts (or a registered name) to render conversations
            here; without one (and without ``chat_template``) lmdeploy applies
            the model's own chat template.
        chat_template: A Jinja chat template rendered by lagent instead.
        backend: ``'turbomind'`` or ``'pytorch'``.
        session_len: Most tokens of one sequence (prompt and reply); ``None``:
            lmdeploy's default for the model.
        cache_max_entry_count: Fraction of free GPU memory for the KV cache.
        **gen_params: Generation defaults (see :class:`~lagent.llms.base.BaseLLM`).

    Raises:
        EngineUnavailableError: No CUDA device, or an lmdeploy older than 0.12.
        MissingExtraError: lmdeploy (or torch) is not installed.
        ValueError: An unknown backend or engine-config field.
    """

    accepts_messages = True
    accepts_images = frozenset({'messages', 'prompt'})
    image_placeholder = '<IMAGE_TOKEN>'
    """lmdeploy's own image marker: its vision models put each image's tokens there."""
    native_batching = True

    def __init__(
        self,
        path: str,
        model_name: str | None = None,
        tp: int = 1,
        pipeline_cfg: Mapping[str, Any] | None = None,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        *,
        chat_template: ChatTemplate | str | None = None,
        backend: str = 'turbomind',
        session_len: int | None = None,
        cache_max_entry_count: float | None = None,
        **gen_params: Any,
    ):
        super().__init__(path, meta_template, chat_template=chat_template, **gen_params)
        if backend not in BACKENDS:
            raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
        require_device(pipeline_cfg, backend)
        lmdeploy = _import_lmdeploy()
        fields = engine_config_fields(
            tp=tp, session_len=session_len, cache_max_entry_count=cache_max_entry_count, pipeline_cfg=pipeline_cfg
        )
        config_class = lmdeploy.TurbomindEngineConfig if backend == 'turbomind' else lmdeploy.PytorchEngineConfig
        backend_config = _build(config_class, fields, what=f'{backend} engine config')
        template_config = None
        if model_name is not None:
            template_config = lmdeploy.ChatTemplateConfig(model_name=model_name)
        self._attach(
            lmdeploy, lmdeploy.pipeline(path, backend_config=backend_config, chat_template_config=template_config)
        )

    @classmethod
    def from_pipeline(
        cls,
        pipe: Any,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        *,
        chat_template: ChatTemplate | str | None = None,
        **gen_params: Any,
    ) -> LMDeployPipeline:
        """Wrap an lmdeploy ``Pipeline`` that is already built (``lmdeploy.pipeline(...)``).

        Args:
            pipe: The pipeline; :meth:`close` closes it.
            meta_template: As for the constructor.
            chat_template: As for the constructor.
            **gen_params: Generation defaults.

        Raises:
            MissingExtraError: lmdeploy is not installed.
            EngineUnavailableError: lmdeploy is older than 0.12.
        """
        llm = cls.__new__(cls)
        BaseLLM.__init__(
            llm, getattr(pipe, 'model_path', None), meta_template, chat_template=chat_template, **gen_params
        )
        llm._attach(_import_lmdeploy(), pipe)
        return llm

    # ------------------------------------------------------------------ hooks

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        inputs, do_preprocess = pipeline_inputs(request, self.image_policy)
        pipe = self._pipe()
        session = pipe.session()
        gen_config = self._generation_config(params)
        finished = False
        last = None
        try:
            with _engine_errors():
                for last in pipe.stream_infer(
                    inputs, sessions=session, gen_config=gen_config, do_preprocess=do_preprocess
                ):
                    _raise_for_error(last, request)
                    if last.text:
                        yield Chunk(last.text)
            finished = True
        finally:
            if not finished:
                session.abort()
        if last is not None:
            yield _final_chunk(last.finish_reason, last.input_token_len, last.generate_token_len)

    def _astream(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        return BatchedIterator(self._abatches(request, params))

    async def _abatches(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[list[Chunk]]:
        """The async stream as lists of the chunks of the outputs that arrived together."""
        if _has_images(request):  # reading images (maybe from the network) must not block the event loop
            inputs, do_preprocess = await asyncio.to_thread(pipeline_inputs, request, self.image_policy)
        else:
            inputs, do_preprocess = pipeline_inputs(request)
        pipe = self._pipe()
        engine_loop = pipe.internal_thread.loop
        session = pipe.session()
        gen_config = self._generation_config(params)
        handoff: LoopHandoff[Any] = LoopHandoff(asyncio.get_running_loop())

        async def pump() -> None:  # runs on lmdeploy's event loop
            try:
                async for out in self._engine_outputs(pipe.async_engine, inputs, session, gen_config, do_preprocess):
                    handoff.send(out)
            except BaseException as exc:  # handed to the reader, raised there
                handoff.end(exc)
                raise
            handoff.end()

        work = asyncio.run_coroutine_threadsafe(pump(), engine_loop)
        last = None
        outputs = handoff.batches()
        try:
            async for batch in outputs:
                last = batch[-1]
                chunks = [Chunk(out.response) for out in batch if out.response]
                if chunks:
                    yield chunks
            if handoff.error is not None:
                raise _failure(str(handoff.error), request) from handoff.error
        finally:
            await outputs.aclose()
            if not work.done():
                work.cancel()
                with suppress(Exception):
                    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(session.async_abort(), engine_loop))
        if last is not None:
            yield [_final_chunk(last.finish_reason, last.input_token_len, last.generate_token_len)]

    def _answer_batch(self, requests: list[LLMRequest], params: GenerationParams) -> list[list[Chunk]]:
        """Answer a batch with one ``infer`` call (lmdeploy batches it on the GPU)."""
        # a batch is all prompts or all conversations; lmdeploy's infer takes all strings or all message lists, and a
        # prompt with images is a message list
        as_message = any(_prompt_with_images(request) for request in requests)
        inputs = [pipeline_inputs(request, self.image_policy, as_message=as_message)[0] for request in requests]
        do_preprocess = requests[0].prompt is None
        with _engine_errors():
            outputs = self._pipe().infer(
                inputs, gen_config=self._generation_config(params), do_preprocess=do_preprocess
            )
        return [_whole_reply(output, request) for output, request in zip(outputs, requests, strict=True)]

    def close(self) -> None:
        """Stop lmdeploy's engine and free the GPU memory it holds."""
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.close()

    # ------------------------------------------------------------------ helpers

    def _attach(self, lmdeploy: Any, pipe: Any) -> None:
        self._generation_config_class = lmdeploy.GenerationConfig
        self._preprocess_api = _version_tuple(lmdeploy.__version__) >= PREPROCESS_API_VERSION
        self.pipe = pipe
        # lmdeploy builds an image encoder for a vision-language model only; for a text model, 0.16 answers as if
        # the images were not there (0.18 refuses them)
        if getattr(getattr(pipe, 'async_engine', pipe), 'vl_encoder', None) is None:
            self.accepts_images = frozenset()

    def _pipe(self) -> Any:
        if self.pipe is None:
            raise EngineUnavailableError(f'{type(self).__name__} is closed')
        return self.pipe

    def _generation_config(self, params: GenerationParams) -> Any:
        return _build(self._generation_config_class, generation_config_fields(params), what='generation config')

    def _engine_outputs(
        self, engine: Any, inputs: Any, session: Any, gen_config: Any, do_preprocess: bool
    ) -> AsyncIterator[Any]:
        """The async engine's outputs (``GenOut``: delta text and token counts)."""
        if self._preprocess_api:
            return _preprocess_then_generate(engine, inputs, session, gen_config, do_preprocess)
        return engine.generate(
            inputs, session, gen_config=gen_config, stream_response=True, do_preprocess=do_preprocess
        )


async def _preprocess_then_generate(
    engine: Any, inputs: Any, session: Any, gen_config: Any, do_preprocess: bool
) -> AsyncIterator[Any]:
    request = await engine.preprocess(inputs, session, gen_config=gen_config, do_preprocess=do_preprocess)
    async for out in engine.generate(request, stream_response=True):
        yield out


def _import_lmdeploy() -> Any:
    lmdeploy = import_optional('lmdeploy', package='lmdeploy', extra='lmdeploy')
    if _version_tuple(lmdeploy.__version__) < MIN_VERSION:
        raise EngineUnavailableError(f'lmdeploy {lmdeploy.__version__} is too old; lagent needs lmdeploy >= 0.12')
    return lmdeploy


def _build(config_class: type, fields: dict[str, Any], *, what: str) -> Any:
    """Instantiate one of lmdeploy's config dataclasses, naming what it rejects."""
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f'unknown {what} fields for lmdeploy: {", ".join(unknown)}')
    try:
        return config_class(**fields)
    except (AssertionError, TypeError, ValueError) as exc:
        raise ValueError(f'lmdeploy rejected the {what} {fields}: {exc or type(exc).__name__}') from exc


def _version_tuple(version: str) -> tuple[int, ...]:
    """``'0.16.1'`` -> ``(0, 16, 1)``; pre-release and local tails (``rc1``, ``.dev3``) are dropped."""
    match = re.match(r'\d+(?:\.\d+)*', version)
    return tuple(int(part) for part in match.group().split('.')) if match else ()


def _raise_for_error(response: Any, request: LLMRequest) -> None:
    if response.finish_reason == 'error':
        raise _failure(getattr(response, 'error_message', None) or 'the engine reported an error', request)


def _failure(reason: str, request: LLMRequest) -> LLMError:
    """The error for lmdeploy failing ``request``, with :data:`MARKER_HINT` where it may be the cause."""
    hint = MARKER_HINT if _prompt_with_images(request) else ''
    return LLMError(f'lmdeploy failed: {reason}{hint}')


def _final_chunk(finish_reason: str | None, prompt_tokens: int, completion_tokens: int) -> Chunk:
    return Chunk(
        finish_reason=results.finish_reason(finish_reason or 'stop'),
        usage=results.usage(prompt_tokens, completion_tokens),
    )


def _whole_reply(output: Any, request: LLMRequest) -> list[Chunk]:
    """The raw reply of one ``infer`` output."""
    _raise_for_error(output, request)
    final = _final_chunk(output.finish_reason, output.input_token_len, output.generate_token_len)
    return [Chunk(output.text, final.finish_reason, final.usage)]


def pipeline_inputs(
    request: LLMRequest, policy: ImagePolicy | None = None, *, as_message: bool = False
) -> tuple[Any, bool]:
    """What lmdeploy's pipeline takes for a request, and whether it applies its chat template.

    Images are read here, within ``policy``, and handed to lmdeploy decoded
    (lmdeploy fetches nothing itself): an ``image_url`` part of a message
    becomes lmdeploy's ``{'type': 'image_data', 'image_data': {'data': image}}``;
    a rendered prompt with images becomes one user message of the prompt's text
    and then its images, sent without lmdeploy's chat template. That is what
    lmdeploy makes of its own ``(prompt, [images])`` pair, in the form every
    entry point of it takes (its async engine takes no pairs); the prompt's
    ``<IMAGE_TOKEN>`` markers say where each image goes.

    Args:
        request: The request.
        policy: What lagent may do to read the images.
        as_message: Send a prompt without images as that one user message too
            (for a batch with prompts of both kinds).

    Raises:
        ImageError: An image is unreadable, too large or not allowed.
    """
    if request.prompt is not None:
        if request.images:
            images = [_image_part(load_image(ref, policy)) for ref in request.images]
            return [{'role': 'user', 'content': [{'type': 'text', 'text': request.prompt}, *images]}], False
        if as_message:
            return [{'role': 'user', 'content': request.prompt}], False
        return request.prompt, False
    messages = [dict(message) for message in request.messages or []]
    for ref in find_images(messages):
        parts = list(messages[ref.message_index]['content'])
        parts[ref.part_index] = _image_part(load_image(ref, policy))
        messages[ref.message_index]['content'] = parts
    return messages, True


def _image_part(image: Any) -> dict[str, Any]:
    """lmdeploy's content part for a decoded image."""
    return {'type': 'image_data', 'image_data': {'data': image}}


def _prompt_with_images(request: LLMRequest) -> bool:
    return request.prompt is not None and bool(request.images)


def _has_images(request: LLMRequest) -> bool:
    return bool(request.images) or (request.messages is not None and has_images(request.messages))


@contextmanager
def _engine_errors() -> Iterator[None]:
    """Turn lmdeploy's own failures into :class:`~lagent.errors.LLMError`."""
    try:
        yield
    except (RuntimeError, AssertionError) as exc:
        raise LLMError(f'lmdeploy failed: {exc}') from exc
