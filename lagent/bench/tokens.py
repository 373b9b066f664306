"""Counting the tokens of replies, for engines that report no usage."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from lagent._optional import import_optional

__all__ = ['token_counter']


def token_counter(tokenizer: str | os.PathLike[str]) -> Callable[[str], int]:
    """Return a function that counts the tokens of a reply's text with a Hugging Face tokenizer.

    Args:
        tokenizer: A tokenizer directory or name known locally, or a ``.gguf``
            model file (its tokenizer is read from the file's metadata).

    Raises:
        MissingExtraError: transformers is not installed (``pip install "lagent[hf]"``).
        OSError: The tokenizer cannot be found.
    """
    transformers = import_optional('transformers', package='transformers', extra='hf')
    path = Path(tokenizer)
    if path.suffix == '.gguf':
        loaded = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    else:
        loaded = transformers.AutoTokenizer.from_pretrained(os.fspath(tokenizer))

    def count(text: str) -> int:
        return len(loaded.encode(text, add_special_tokens=False))

    return count
