"""``HFTransformer``: a causal language model run in process by transformers.

The model is a local model directory (safetensors) or a GGUF file, which
transformers de-quantizes on load. Conversations are rendered by the
tokenizer's own chat template unless a ``meta_template`` or ``chat_template``
is given. Streaming runs ``generate`` in a worker thread that feeds a
``TextIteratorStreamer``; closing the stream stops that thread at the next
token. A list of prompts is generated as one left-padded batch.

A vision-language model (its config has a ``vision_config``) is loaded with
its ``AutoProcessor`` and takes images: the processor renders the messages
(or lagent's template puts its image placeholder in the prompt) and turns the
images, read by lagent within the engine's image policy, into the pixel
values the model sees.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lagent._optional import import_optional
from lagent.errors import EngineUnavailableError, LLMError
from lagent.images import IMAGE_PART_TYPE, ImageRef, find_images, load_image
from lagent.llms import results
from lagent.llms.base import BaseLLM, LLMRequest
from lagent.prompts import ChatTemplate
from lagent.schema import Chunk, GenerationParams

__all__ = ['HFTransformer', 'HFTransformerCasualLM', 'HFTransformerChat']

logger = logging.getLogger(__name__)

_TORCH_NOTE = 'torch is not part of that extra: install the CPU or CUDA build of torch first, as its guide shows'


class HFTransformer(BaseLLM):
    """A causal language model run in this process by transformers.

    Args:
        path: A model directory (or hub-style name already in the local cache),
            or a ``.gguf`` file. A vision-language model is loaded with its processor.
        meta_template: Role dicts (or a registered name) to render conversations;
            without one (and without ``chat_template``) the tokenizer's chat
            template applies.
        chat_template: A Jinja chat template rendered by lagent instead.
        gguf_file: The GGUF file inside the ``path`` directory, if the model is one.
        device: ``'auto'`` (CUDA when available, else CPU), ``'cpu'`` or ``'cuda'``
            (``'cuda:1'``...).
        torch_dtype: The weights' dtype (``'auto'``, ``'float32'``, ``torch.bfloat16``...).
        trust_remote_code: Allow the model directory's own Python code to run.
        tokenizer_path: Where the tokenizer is, when not with the model (lagent 0.2).
        tokenizer_kwargs: Further keywords of ``AutoTokenizer.from_pretrained`` (lagent 0.2).
        model_kwargs: Further keywords of ``AutoModelForCausalLM.from_pretrained`` (lagent 0.2).
        **gen_params: Generation defaults (see :class:`~lagent.llms.base.BaseLLM`);
            ``seed`` seeds torch's global generator before each call.

    Raises:
        MissingExtraError: torch or transformers is not installed.
        EngineUnavailableError: ``device='cuda'`` but no CUDA device is visible.
    """

    accepts_messages = True
    native_batching = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        *,
        chat_template: ChatTemplate | str | None = None,
        gguf_file: str | None = None,
        device: str = 'auto',
        torch_dtype: Any = 'auto',
        trust_remote_code: bool = False,
        tokenizer_path: str | os.PathLike[str] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
        **gen_params: Any,
    ):
        torch = import_optional('torch', package='torch', extra='hf', note=_TORCH_NOTE)
        transformers = import_optional('transformers', package='transformers', extra='hf')
        super().__init__(os.fspath(path), meta_template, chat_template=chat_template, **gen_params)
        device = _pick_device(torch, device)  # before the slow load
        source, gguf_file = _split_gguf(Path(path), gguf_file)
        options: dict[str, Any] = dict(trust_remote_code=trust_remote_code)
        if gguf_file is not None:
            options['gguf_file'] = gguf_file
        tokenizer_source, tokenizer_options = source, dict(options)
        if tokenizer_path is not None:
            tokenizer_source, tokenizer_gguf = _split_gguf(Path(tokenizer_path), None)
            tokenizer_options.pop('gguf_file', None)
            if tokenizer_gguf is not None:
                tokenizer_options['gguf_file'] = tokenizer_gguf
        tokenizer_options.update(tokenizer_kwargs or {})
        loading = {'dtype': torch_dtype, **options, **(model_kwargs or {})}
        processor = None
        if gguf_file is None and _is_vision_model(transformers, source, options):
            processor = transformers.AutoProcessor.from_pretrained(tokenizer_source, **tokenizer_options)
            tokenizer = processor.tokenizer
            model = transformers.AutoModelForImageTextToText.from_pretrained(source, **loading)
        else:
            tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_source, **tokenizer_options)
            model = transformers.AutoModelForCausalLM.from_pretrained(source, **loading)
        self._attach(torch, transformers, model, tokenizer, device, processor)

    @classmethod
    def from_loaded(
        cls,
        model: Any,
        tokenizer: Any,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        *,
        chat_template: ChatTemplate | str | None = None,
        device: str = 'auto',
        processor: Any = None,
        **gen_params: Any,
    ) -> HFTransformer:
        """Wrap a model and tokenizer that are already loaded (several engines may share them).

        Args:
            model: A transformers causal (or image-text-to-text) language model.
            tokenizer: Its tokenizer (``None`` with a ``processor``: the processor's).
            meta_template: As for the constructor.
            chat_template: As for the constructor.
            device: Where the model runs (it is moved there): ``'auto'``, ``'cpu'`` or ``'cuda[:N]'``.
            processor: The processor of a vision-language model; with one, the engine takes images.
            **gen_params: Generation defaults.
        """
        torch = import_optional('torch', package='torch', extra='hf', note=_TORCH_NOTE)
        transformers = import_optional('transformers', package='transformers', extra='hf')
        llm = cls.__new__(cls)
        BaseLLM.__init__(
            llm, getattr(model, 'name_or_path', None), meta_template, chat_template=chat_template, **gen_params
        )
        if tokenizer is None and processor is not None:
            tokenizer = processor.tokenizer
        llm._attach(torch, transformers, model, tokenizer, device, processor)
        return llm

    # ------------------------------------------------------------------ hooks

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        if request.prompt is not None:
            if request.images:
                yield from self._stream_encoded(self._vision_inputs(request.prompt, request.images, True), params)
            else:
                yield from self._stream_text(request.prompt, params, add_special_tokens=True)
            return
        messages = request.messages or []
        if self.processor is not None:
            self._check_open()
            text = self.processor.apply_chat_template(
                _processor_messages(messages), add_generation_prompt=True, tokenize=False
            )
            yield from self._stream_encoded(self._vision_inputs(text, find_images(messages), False), params)
        else:
            yield from self._stream_text(self._render(messages), params, add_special_tokens=False)

    def _answer_batch(self, requests: list[LLMRequest], params: GenerationParams) -> list[list[Chunk]]:
        """Generate every request in one left-padded batch (one at a time for vision models)."""
        self._check_open()
        if self.processor is not None:
            return [list(self._stream(request, params)) for request in requests]
        if any(request.prompt is not None for request in requests):
            texts, add_special = [request.prompt or '' for request in requests], True
        else:
            texts, add_special = [self._render(request.messages or []) for request in requests], False
        encoded = self.tokenizer(
            texts, return_tensors='pt', padding=True, padding_side='left', add_special_tokens=add_special
        ).to(self.device)
        prompt_length = encoded['input_ids'].shape[1]
        with _engine_errors():
            output = self.model.generate(**encoded, **self._generate_options(params))
        eos_ids = _eos_ids(self.model)
        skip = params.skip_special_tokens is not False
        replies = []
        for row, attention in zip(output, encoded['attention_mask'], strict=True):
            new_tokens = row[prompt_length:].tolist()
            length = next((i + 1 for i, token in enumerate(new_tokens) if token in eos_ids), None)
            finish_reason = 'length' if length is None else 'stop'
            new_tokens = new_tokens[: length or len(new_tokens)]
            text = self.tokenizer.decode(new_tokens, skip_special_tokens=skip)
            usage = results.usage(int(attention.sum()), len(new_tokens))
            replies.append([Chunk(text, finish_reason, usage)])
        return replies

    def close(self) -> None:
        """Drop the model, tokenizer and processor (freed once nothing else refers to them)."""
        self.model = None
        self.tokenizer = None
        self.processor = None

    # ------------------------------------------------------------------ helpers

    def _attach(
        self, torch: Any, transformers: Any, model: Any, tokenizer: Any, device: str, processor: Any = None
    ) -> None:
        self._torch = torch
        self._transformers = transformers
        self.device = _pick_device(torch, device)
        self.tokenizer = tokenizer
        self.processor = processor
        """The processor of a vision-language model (``None`` for a text model)."""
        self.accepts_images = frozenset({'messages', 'prompt'}) if processor is not None else frozenset()
        self.model = model.to(self.device)
        self.model.eval()
        self._pad_token_id = _pad_token_id(tokenizer, model)

    def _render(self, messages: list[dict[str, Any]]) -> str:
        self._check_open()
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _vision_inputs(self, text: str, images: Sequence[ImageRef], add_special_tokens: bool) -> Any:
        """The processor's inputs (token ids and pixel values) for a prompt and its images."""
        self._check_open()
        pictures = [load_image(ref, self.image_policy) for ref in images]
        with _engine_errors():
            encoded = self.processor(
                text=[text], images=pictures or None, return_tensors='pt', add_special_tokens=add_special_tokens
            )
        return encoded.to(self.device)

    def _stream_text(self, text: str, params: GenerationParams, *, add_special_tokens: bool) -> Iterator[Chunk]:
        self._check_open()
        encoded = self.tokenizer(text, return_tensors='pt', add_special_tokens=add_special_tokens).to(self.device)
        yield from self._stream_encoded(encoded, params)

    def _stream_encoded(self, encoded: Any, params: GenerationParams) -> Iterator[Chunk]:
        prompt_tokens = encoded['input_ids'].shape[1]
        streamer = self._transformers.TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=params.skip_special_tokens is not False
        )
        progress = _Progress(self._torch, prompt_tokens)
        options = self._generate_options(params)
        options['stopping_criteria'] = self._transformers.StoppingCriteriaList([progress])
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.model.generate(**encoded, streamer=streamer, **options)
            except BaseException as exc:  # raised again in the reading thread
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name='lagent-hf-generate', daemon=True)
        worker.start()
        try:
            for piece in streamer:
                if piece:
                    yield Chunk(piece)
        finally:
            progress.cancel.set()
            worker.join()
        if failure:
            raise LLMError(f'transformers generate failed: {failure[0]}') from failure[0]
        generated = progress.generated
        finish_reason = 'length' if generated >= params.max_new_tokens else 'stop'
        yield Chunk(finish_reason=finish_reason, usage=results.usage(prompt_tokens, generated))

    def _generate_options(self, params: GenerationParams) -> dict[str, Any]:
        """``generate`` keywords for ``params``."""
        options: dict[str, Any] = dict(
            max_new_tokens=params.max_new_tokens,
            repetition_penalty=params.repetition_penalty,
            pad_token_id=self._pad_token_id,
        )
        if params.greedy:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            options.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or 0)
        if params.ignore_eos:
            options['min_new_tokens'] = params.max_new_tokens
        elif params.min_new_tokens:
            options['min_new_tokens'] = params.min_new_tokens
        if params.seed is not None:
            self._transformers.set_seed(params.seed)
        return options

    def _check_open(self) -> None:
        if self.model is None:
            raise EngineUnavailableError(f'{type(self).__name__} is closed')


class _Progress:
    """A stopping criterion that counts generated tokens and stops when cancelled.

    ``generate`` calls it after every new token, in its own thread.
    """

    def __init__(self, torch: Any, prompt_tokens: int):
        self._torch = torch
        self.prompt_tokens = prompt_tokens
        self.generated = 0
        self.cancel = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        self.generated = input_ids.shape[1] - self.prompt_tokens
        return self._torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=self._torch.bool)


def _is_vision_model(transformers: Any, source: str, options: dict[str, Any]) -> bool:
    """Whether the model's config describes a vision-language model (it has a ``vision_config``)."""
    try:
        config = transformers.AutoConfig.from_pretrained(source, **options)
    except (OSError, ValueError):
        return False  # the model loader below reports the problem
    return getattr(config, 'vision_config', None) is not None


def _processor_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages in the form processors' chat templates read: an image part is
    ``{'type': 'image'}`` (the images themselves go to the processor apart)."""
    result = []
    for message in messages:
        content = message.get('content')
        if isinstance(content, list):
            parts = [{'type': 'image'} if part.get('type') == IMAGE_PART_TYPE else part for part in content]
            message = {**message, 'content': parts}
        result.append(message)
    return result


def _split_gguf(path: Path, gguf_file: str | None) -> tuple[str, str | None]:
    """A ``.gguf`` path becomes (its directory, its name), as transformers wants them."""
    if gguf_file is None and path.suffix == '.gguf':
        return str(path.parent), path.name
    return os.fspath(path), gguf_file


def _pick_device(torch: Any, device: str) -> str:
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise EngineUnavailableError(f'device={device!r} was asked for, but torch sees no CUDA device')
    if device != 'cpu' and not device.startswith('cuda'):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return device


def _eos_ids(model: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        return set()
    return set(eos) if isinstance(eos, (list, tuple)) else {eos}


def _pad_token_id(tokenizer: Any, model: Any) -> int | None:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    eos = model.generation_config.eos_token_id
    return eos[0] if isinstance(eos, (list, tuple)) else eos


@contextmanager
def _engine_errors() -> Iterator[None]:
    try:
        yield
    except (RuntimeError, ValueError) as exc:
        raise LLMError(f'transformers generate failed: {exc}') from exc


HFTransformerCasualLM = HFTransformer
"""lagent 0.2's name (sic) of :class:`HFTransformer`."""

HFTransformerChat = HFTransformer
"""lagent 0.2's chat variant: the same engine (without a meta_template it applies the tokenizer's chat template)."""
