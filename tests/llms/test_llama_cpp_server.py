"""LlamaCppServer: a real ``llama_cpp.server`` child serving SmolLM2, used
through the OpenAI-compatible client, then stopped."""

from __future__ import annotations

import gc
import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lagent.errors import MissingExtraError
from lagent.llms import llama_cpp_server
from lagent.llms.llama_cpp_server import LlamaCppServer, llama_cpp_server_command
from lagent.schema import ModelStatusCode
from tests.fixtures.process_checks import Leftovers, group_alive

USER = [{'role': 'user', 'content': 'Say hello.'}]


@pytest.fixture
def leftovers() -> Iterator[Leftovers]:
    found = Leftovers()
    yield found
    found.kill_all()


def test_defaults_chat_stream_close(leftovers: Leftovers, smollm2_path: Path) -> None:
    llm = LlamaCppServer(max_new_tokens=12, temperature=0)
    pgid = leftovers.group(llm.process.pid)
    try:
        assert llm.path == str(smollm2_path)
        models = requests.get(f'{llm.process.url}/v1/models', timeout=10).json()
        assert [model['id'] for model in models['data']] == ['smollm2']

        assert llm.chat(USER).strip()
        chunks = list(llm.stream(USER))
        assert ''.join(chunk.text for chunk in chunks).strip()
        assert sum(1 for chunk in chunks if chunk.text) > 1  # really streamed
        steps = list(llm.stream_chat(USER))
        assert [status for status, _, _ in steps[:-1]] == [ModelStatusCode.STREAM_ING] * (len(steps) - 1)
        assert steps[-1][0] == ModelStatusCode.END and steps[-1][1] == steps[-2][1]
        assert steps[-1][2] is not None and steps[-1][2].text == steps[-1][1]
        response = llm.complete(USER)
        assert response.text.strip() and response.usage is not None
        assert 0 < response.usage.completion_tokens <= 12
    finally:
        llm.close()
    assert not group_alive(pgid)
    llm.close()  # a second close does nothing


async def test_async_chat_and_stream(leftovers: Leftovers) -> None:
    async with LlamaCppServer(max_new_tokens=8, temperature=0, n_ctx=1024, n_threads=2) as llm:
        pgid = leftovers.group(llm.process.pid)
        assert (await llm.achat(USER)).strip()
        texts = [chunk.text async for chunk in llm.astream(USER)]
        assert ''.join(texts).strip()
    assert not group_alive(pgid)


def test_dropped_engine_stops_its_server(leftovers: Leftovers) -> None:
    llm = LlamaCppServer(max_new_tokens=4)
    pgid = leftovers.group(llm.process.pid)
    assert group_alive(pgid)
    del llm
    gc.collect()
    assert not group_alive(pgid)


def test_api_key_required_and_never_logged(leftovers: Leftovers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = 'sk-llama-secret-42'
    with LlamaCppServer(api_key=key, max_new_tokens=4) as llm:
        leftovers.group(llm.process.pid)
        assert requests.get(f'{llm.process.url}/v1/models', timeout=10).status_code == 401
        assert llm.generate('Hello').strip()
        assert key not in repr(llm) and key not in repr(llm.process)
    assert key not in caplog.text
    assert '--api_key ***' in caplog.text


def test_missing_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec

    def without_llama_cpp(name: str, *args: object):
        return None if name == 'llama_cpp' else find_spec(name, *args)

    monkeypatch.setattr(llama_cpp_server.importlib.util, 'find_spec', without_llama_cpp)
    with pytest.raises(MissingExtraError, match=r'llama-cpp-python .*pip install "lagent\[llamacpp\]"'):
        LlamaCppServer()


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match='no GGUF model file'):
        LlamaCppServer(tmp_path / 'absent.gguf')


def test_command() -> None:
    command = llama_cpp_server_command(
        'm.gguf',
        model_name='m',
        host='127.0.0.1',
        port=8001,
        n_ctx=512,
        n_threads=2,
        chat_format='chatml-function-calling',
        server_cfg={'n_batch': 64, 'verbose': False, 'seed': None},
    )
    assert command[:3] == [sys.executable, '-m', 'llama_cpp.server']
    pairs = dict(zip(command[3::2], command[4::2], strict=True))
    assert pairs == {
        '--model': 'm.gguf',
        '--model_alias': 'm',
        '--host': '127.0.0.1',
        '--port': '8001',
        '--n_ctx': '512',
        '--n_threads': '2',
        '--chat_format': 'chatml-function-calling',
        '--interrupt_requests': 'false',
        '--n_batch': '64',
        '--verbose': 'false',
    }


def test_interrupting_requests_can_be_turned_back_on() -> None:
    command = llama_cpp_server_command(
        'm.gguf', model_name='m', host='127.0.0.1', port=1, server_cfg={'interrupt_requests': True}
    )
    assert command[command.index('--interrupt_requests') + 1] == 'true'
