"""The tokenizer training data is built with: a model's own tokenizer and chat template.

:func:`load_tokenizer` takes a GGUF file (tokenized by llama.cpp, which
loads only the vocabulary, in well under a second) or a Hugging Face
tokenizer (a model directory, or a name in the local cache). Both are seen
through :class:`ChatTokenizer`: text to ids with special tokens parsed, ids
back to text, and the chat template that shapes a conversation.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lagent._optional import import_optional
from lagent.prompts import ChatTemplate
from lagent.prompts.gguf_metadata import read_gguf_metadata

__all__ = ['ChatTokenizer', 'GGUFTokenizer', 'HFTokenizer', 'load_tokenizer']

_GGUF_KEYS = {
    'tokenizer.chat_template',
    'tokenizer.ggml.tokens',
    'tokenizer.ggml.bos_token_id',
    'tokenizer.ggml.eos_token_id',
    'tokenizer.ggml.add_bos_token',
}


class ChatTokenizer(ABC):
    """A tokenizer with its chat template, as the SFT builder uses it.

    Attributes:
        chat_template: The model's own chat template (``None`` if it has none).
        bos_token: The text of the BOS token (``''`` if there is none).
        bos_token_id: Its id (``None`` if there is none).
        add_bos: Whether the model expects BOS before every sequence.
    """

    chat_template: ChatTemplate | None
    bos_token: str
    bos_token_id: int | None
    add_bos: bool

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, special tokens (``<|im_start|>``...) parsed as such, no BOS added."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, special tokens written out."""

    def close(self) -> None:  # noqa: B027  (an optional hook: most tokenizers hold nothing to free)
        """Free the tokenizer's resources."""


class GGUFTokenizer(ChatTokenizer):
    """The tokenizer of a GGUF file, run by llama.cpp (vocabulary only: no weights are loaded).

    Args:
        path: The ``.gguf`` file.

    Raises:
        MissingExtraError: llama-cpp-python is not installed.
        ValueError: The file is not GGUF, or llama.cpp cannot read its vocabulary.
    """

    def __init__(self, path: str | os.PathLike[str]):
        llama_cpp = import_optional('llama_cpp', package='llama-cpp-python', extra='llamacpp')
        metadata = read_gguf_metadata(path, keys=_GGUF_KEYS)
        tokens = metadata.get('tokenizer.ggml.tokens') or []
        self.path = os.fspath(path)
        self.bos_token_id = metadata.get('tokenizer.ggml.bos_token_id')
        self.bos_token = _token(tokens, self.bos_token_id)
        self.add_bos = bool(metadata.get('tokenizer.ggml.add_bos_token', False)) and self.bos_token_id is not None
        source = metadata.get('tokenizer.chat_template')
        eos = _token(tokens, metadata.get('tokenizer.ggml.eos_token_id'))
        self.chat_template = ChatTemplate(source, bos_token=self.bos_token, eos_token=eos) if source else None
        try:
            self._llama = llama_cpp.Llama(self.path, vocab_only=True, n_ctx=8, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f'llama.cpp cannot read the vocabulary of {self.path!r}: {exc}') from exc

    def __repr__(self) -> str:
        return f'GGUFTokenizer({self.path!r})'

    def encode(self, text: str) -> list[int]:
        return list(self._llama.tokenize(text.encode('utf-8'), add_bos=False, special=True))

    def decode(self, ids: Sequence[int]) -> str:
        return self._llama.detokenize(list(ids), special=True).decode('utf-8', errors='replace')

    def close(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()


class HFTokenizer(ChatTokenizer):
    """A Hugging Face tokenizer (``transformers``).

    Args:
        tokenizer: A loaded tokenizer (``AutoTokenizer.from_pretrained(...)``).
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.bos_token = tokenizer.bos_token or ''
        self.bos_token_id = tokenizer.bos_token_id
        with_specials = tokenizer('', add_special_tokens=True)['input_ids']
        self.add_bos = self.bos_token_id is not None and self.bos_token_id in with_specials
        source = tokenizer.chat_template
        if isinstance(source, dict):  # several named templates: take the default one
            source = source.get('default')
        self.chat_template = (
            ChatTemplate(source, bos_token=self.bos_token, eos_token=tokenizer.eos_token or '') if source else None
        )

    def __repr__(self) -> str:
        return f'HFTokenizer({getattr(self.tokenizer, "name_or_path", "")!r})'

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)['input_ids'])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def load_tokenizer(source: str | os.PathLike[str] | Any) -> ChatTokenizer:
    """Load the tokenizer of a model.

    Args:
        source: A ``.gguf`` file, a model directory or cached model name (Hugging
            Face tokenizer), a loaded ``transformers`` tokenizer, or a :class:`ChatTokenizer`.

    Raises:
        MissingExtraError: The library the tokenizer needs is not installed.
        ValueError: The file is not a tokenizer.
        OSError: The path does not exist.
    """
    if isinstance(source, ChatTokenizer):
        return source
    if not isinstance(source, (str, os.PathLike)):
        return HFTokenizer(source)
    path = Path(source).expanduser()
    if path.suffix.lower() == '.gguf':
        if not path.is_file():
            raise FileNotFoundError(f'no GGUF file at {os.fspath(source)!r}')
        return GGUFTokenizer(path)
    transformers = import_optional('transformers', package='transformers', extra='hf')
    return HFTokenizer(transformers.AutoTokenizer.from_pretrained(os.fspath(source)))


def _token(tokens: Sequence[str], token_id: Any) -> str:
    return tokens[token_id] if isinstance(token_id, int) and 0 <= token_id < len(tokens) else ''
