"""``LMDeployServer``: lmdeploy's api_server as a child process, used through
:class:`~lagent.llms.lmdeploy_client.LMDeployClient`.

The server is started with the ``lmdeploy`` command line (``lmdeploy serve
api_server ...``) rather than ``lmdeploy.serve()``, which changed between
releases; :class:`~lagent.llms.process.ServerProcess` owns its lifecycle.
The command can be another one that takes lmdeploy's arguments (lmdeploy in a
conda environment, a wrapper script).

API keys: lmdeploy takes them only on its command line (``--api-keys``; it has
no environment variable or file for them), so while the server runs they are
readable by other users of the machine in ``ps`` and ``/proc/PID/cmdline``
(unless ``/proc`` is mounted with ``hidepid=2``). lagent masks them in its own
logs, errors and reprs.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lagent.errors import EngineStartError, EngineUnavailableError, MissingExtraError
from lagent.llms.lmdeploy_client import LMDeployClient
from lagent.llms.process import ChildServerMixin, ServerProcess, free_port

__all__ = ['LMDeployServer', 'find_lmdeploy', 'lmdeploy_command', 'no_cuda_reason']

DEFAULT_COMMAND = 'lmdeploy'
"""The command :class:`LMDeployServer` runs unless told otherwise."""
NO_CUDA_MARKERS = (
    'Torch not compiled with CUDA enabled',
    'Found no NVIDIA driver on your system',
    'No CUDA GPUs are available',
    'no CUDA-capable device is detected',
    'CUDA driver initialization failed',
    'libcuda.so: cannot open shared object file',
)
"""What lmdeploy (through torch) prints when it finds no usable CUDA device."""

_SCALARS = (str, int, float)
_NO_CUDA_LOG_LINES = 200


def lmdeploy_command(
    executable: str | Sequence[str],
    path: str,
    *,
    server_name: str,
    server_port: int,
    tp: int = 1,
    backend: str = 'turbomind',
    model_name: str | None = None,
    session_len: int | None = None,
    log_level: str = 'WARNING',
    api_keys: Sequence[str] = (),
    serve_cfg: Mapping[str, Any] | None = None,
) -> list[str]:
    """Build the argv of ``lmdeploy serve api_server``.

    Args:
        executable: The ``lmdeploy`` executable, or a command (a list) that takes
            lmdeploy's arguments, e.g. ``['conda', 'run', '-n', 'lmd', 'lmdeploy']``.
        path: The model (a local directory or a model id).
        server_name: ``--server-name``.
        server_port: ``--server-port``.
        tp: ``--tp``.
        backend: ``--backend`` (``'turbomind'`` or ``'pytorch'``).
        model_name: ``--model-name`` (``None``: left out; lmdeploy uses ``path``).
        session_len: ``--session-len`` (``None``: left out).
        log_level: ``--log-level``.
        api_keys: ``--api-keys`` values (empty: left out).
        serve_cfg: Further options by name: ``cache_max_entry_count=0.5``
            gives ``--cache-max-entry-count 0.5``, ``True`` a bare flag,
            ``False`` or ``None`` nothing, a list or tuple its values after one
            flag (lmdeploy's multi-value options), a dict its JSON.

    Raises:
        TypeError: A ``serve_cfg`` value that has no command-line form.
        ValueError: An empty command.
    """
    prefix = [executable] if isinstance(executable, str) else list(executable)
    if not prefix:
        raise ValueError('the lmdeploy command must not be empty')
    command = [
        *prefix, 'serve', 'api_server', path,
        '--server-name', server_name,
        '--server-port', str(server_port),
        '--tp', str(tp),
        '--backend', backend,
        '--log-level', log_level,
    ]  # fmt: skip
    if model_name is not None:
        command += ['--model-name', model_name]
    if session_len is not None:
        command += ['--session-len', str(session_len)]
    if api_keys:
        command += ['--api-keys', *api_keys]
    for key, value in (serve_cfg or {}).items():
        command += _option('--' + key.replace('_', '-'), value)
    return command


def _option(flag: str, value: Any) -> list[str]:
    if value is None or value is False:
        return []
    if value is True:
        return [flag]
    if isinstance(value, (list, tuple)) and all(isinstance(item, _SCALARS) for item in value):
        return [flag, *(str(item) for item in value)]
    if isinstance(value, Mapping):
        return [flag, json.dumps(value)]
    if isinstance(value, _SCALARS):
        return [flag, str(value)]
    raise TypeError(
        f'serve_cfg option {flag[2:]!r} must be a str, number, bool, list or dict (a command-line value), '
        f'got {type(value).__name__}; give engine settings as options, e.g. {{"cache_max_entry_count": 0.5}}'
    )


def no_cuda_reason(log: str) -> str | None:
    """What an lmdeploy log says about finding no CUDA device (the error, without
    the logger's prefix), or ``None`` if it says nothing of the kind."""
    for line in reversed(log.splitlines()):
        for marker in NO_CUDA_MARKERS:
            if marker in line:
                found = re.search(r'(?:\w+(?:Error|Exception): )?' + re.escape(marker) + r'.*', line)
                return found.group(0).strip() if found else marker
    return None


def find_lmdeploy() -> str:
    """Return the ``lmdeploy`` executable: on PATH, or next to this Python.

    Raises:
        MissingExtraError: lmdeploy is not installed.
    """
    found = shutil.which('lmdeploy') or shutil.which('lmdeploy', path=str(Path(sys.executable).parent))
    if found is None:
        raise MissingExtraError('lmdeploy', 'lmdeploy')
    return found


class LMDeployServer(ChildServerMixin, LMDeployClient):
    """lmdeploy's OpenAI-compatible api_server, started as a child process.

    Behaves as :class:`~lagent.llms.lmdeploy_client.LMDeployClient` pointed at
    the child. The child runs in its own process group and is stopped by
    :meth:`close` / :meth:`aclose`, on context-manager exit, at interpreter
    exit, on SIGTERM and when this process dies (see
    :class:`~lagent.llms.process.ServerProcess`).

    Args:
        path: The model: a local directory or a model id lmdeploy can fetch.
        model_name: The name the server serves the model under (default: ``path``).
        server_name: The address the server listens on.
        server_port: Its port (``None``: a free port).
        tp: Tensor-parallel GPU count.
        log_level: lmdeploy's log level (``'DEBUG'``...``'CRITICAL'``).
        serve_cfg: Further ``lmdeploy serve api_server`` options by name
            (``{'cache_max_entry_count': 0.5, 'enable_prefix_caching': True}``),
            written as in :func:`lmdeploy_command`.
        backend: ``'turbomind'`` or ``'pytorch'``.
        session_len: Longest session in tokens (``None``: the model's default).
        api_keys: Keys the server accepts (a string or a list); the first is
            used by this client. Never logged by lagent, but lmdeploy takes them
            on its command line, where other users of the machine can read them
            (see the module docstring).
        ready_timeout: Seconds to wait for the server to load the model and answer.
        log_path: File for the server's output (default: a temporary file).
        command: What to run instead of ``lmdeploy``: an executable, a command
            line (split as a shell would) or an argv list; it is given
            lmdeploy's arguments (``serve api_server PATH --server-port ...``).
        meta_template: Role dicts or a registered template name; with one, the
            prompt is rendered here and sent to ``/v1/completions``.
        **gen_params: Generation defaults (see :class:`~lagent.llms.base.BaseLLM`)
            and further :class:`LMDeployClient` keywords.

    Attributes:
        process: The :class:`~lagent.llms.process.ServerProcess` running the server
            (its ``pid``, ``url``, ``log_path``, ``log_tail()``).

    Raises:
        MissingExtraError: The ``lmdeploy`` command is not installed (the default command only).
        TypeError: A ``serve_cfg`` value that has no command-line form.
        ValueError: An empty ``command``.
        EngineUnavailableError: lmdeploy found no CUDA device where it ran.
        EngineStartError: The port is taken, the command cannot run, or the
            server exited or was not ready in time (the message quotes the end
            of its log, e.g. lmdeploy's words about a model path that does not exist).
    """

    def __init__(
        self,
        path: str,
        model_name: str | None = None,
        server_name: str = '127.0.0.1',
        server_port: int | None = None,
        tp: int = 1,
        log_level: str = 'WARNING',
        serve_cfg: Mapping[str, Any] | None = None,
        *,
        backend: str = 'turbomind',
        session_len: int | None = None,
        api_keys: str | Sequence[str] | None = None,
        ready_timeout: float = 1800.0,
        log_path: str | Path | None = None,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        command: str | Sequence[str] = DEFAULT_COMMAND,
        **gen_params: Any,
    ):
        keys = [api_keys] if isinstance(api_keys, str) else list(api_keys or ())
        port = server_port if server_port is not None else free_port(server_name)
        argv = lmdeploy_command(
            _resolve_command(command),
            path,
            server_name=server_name,
            server_port=port,
            tp=tp,
            backend=backend,
            model_name=model_name,
            session_len=session_len,
            log_level=log_level,
            api_keys=keys,
            serve_cfg=serve_cfg,
        )
        self.process = ServerProcess(
            argv,
            host=server_name,
            port=port,
            name='lmdeploy',
            log_path=log_path,
            ready_timeout=ready_timeout,
            api_key=keys[0] if keys else None,
            secrets=keys,
        )
        super().__init__(  # checks the generation settings before anything is spawned; no request yet
            self.process.url,
            model_name=model_name,
            meta_template=meta_template,
            api_key=keys[0] if keys else None,
            **gen_params,
        )
        self.path = path
        try:
            self._start_server()
        except EngineStartError as exc:
            reason = no_cuda_reason(self.process.log_tail(_NO_CUDA_LOG_LINES))
            if reason is None:
                raise
            raise EngineUnavailableError(
                f'lmdeploy found no CUDA device ({reason}), and LMDeployServer needs one; without a GPU use '
                'LlamaCpp or HFTransformer, or LMDeployClient against an lmdeploy server running elsewhere '
                f"(lmdeploy's log: {self.process.log_path})"
            ) from exc


def _resolve_command(command: str | Sequence[str]) -> list[str]:
    """The command as an argv prefix; the default ``lmdeploy`` is looked up as :func:`find_lmdeploy` does."""
    if command == DEFAULT_COMMAND:
        return [find_lmdeploy()]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
