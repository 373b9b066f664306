"""``lagent serve`` run for real, as a child process: the session's server of
SmolLM2 (an engine and a function-calling agent, behind an API key), and the
contract-suite fixture ``engine_served``: ``OpenAICompatible`` talking to it.

The child is run by lagent's own :class:`~lagent.llms.process.ServerProcess`
(its readiness probe is ``/health``, then ``/v1/models`` with the key).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lagent.llms.openai_compatible import OpenAICompatible
from lagent.llms.process import ServerProcess, free_port
from tests.llms.engines import fresh_engines

REPO = Path(__file__).resolve().parents[2]
API_KEY = 'sk-test-lagent-serve'
ENGINE = 'smollm2'
AGENT = 'assistant'


@dataclass
class Served:
    """A running ``lagent serve``."""

    process: ServerProcess
    api_key: str | None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.process.url

    @property
    def v1(self) -> str:
        """The API root, for OpenAI clients."""
        return f'{self.process.url}/v1'


@contextlib.contextmanager
def lagent_serve(
    *arguments: str, api_key: str | None = None, log_path: Path | None = None, ready_timeout: float = 120.0
) -> Iterator[Served]:
    """Run ``python -m lagent serve ARGUMENTS`` on a free port until the block ends."""
    port = free_port()
    command = [sys.executable, '-m', 'lagent', 'serve', '--port', str(port), *arguments]
    if api_key is not None:
        command += ['--api-key', api_key]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))
    process = ServerProcess(
        command,
        port=port,
        name='lagent-serve',
        api_key=api_key,
        log_path=log_path,
        ready_timeout=ready_timeout,
        env={**os.environ, 'PYTHONPATH': path},
    )
    with process:
        yield Served(process, api_key)


@pytest.fixture(scope='session')
def served_smollm2(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``lagent serve --backend llamacpp`` on SmolLM2 with the key ``API_KEY``: the engine as
    ``smollm2`` and, as ``assistant``, a function-calling agent with a calculator whose
    first reply must call it (a 135M model would not choose to)."""
    log = tmp_path_factory.mktemp('lagent-serve') / 'serve.log'
    arguments = [
        '--backend', 'llamacpp', '--model', str(smollm2_path), '--model-name', ENGINE,
        '--temperature', '0', '--max-new-tokens', '64',
        '--agent', AGENT, '--tools', 'calculator', '--tool-choice', 'Calculator', '--next-tool-choice', 'none',
        '--max-concurrency', '512',
    ]  # fmt: skip
    with lagent_serve(*arguments, api_key=API_KEY, log_path=log) as served:
        yield served


@pytest.fixture
def engine_served(served_smollm2: Served) -> Iterator[Callable[..., OpenAICompatible]]:
    """Contract-suite engine: ``OpenAICompatible`` against SmolLM2 served by ``lagent serve``."""
    yield from fresh_engines(
        lambda **kwargs: OpenAICompatible(served_smollm2.url, model_name=ENGINE, api_key=API_KEY, **kwargs)
    )
