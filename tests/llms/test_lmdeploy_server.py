"""LMDeployServer's real lifecycle. lmdeploy's CUDA engines cannot run here, so
a stand-in ``lmdeploy`` executable first on PATH checks the argv against
lmdeploy's CLI and execs a real llama.cpp OpenAI-compatible server."""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lagent.errors import EngineStartError, MissingExtraError
from lagent.llms.lmdeploy_server import LMDeployServer, find_lmdeploy, lmdeploy_command
from lagent.llms.process import free_port
from lagent.schema import ModelStatusCode
from tests.fixtures import lmdeploy_standin
from tests.fixtures.process_checks import (
    REPO,
    Leftovers,
    group_alive,
    owned_server_pid,
    start_owner,
    wait_group_gone,
)

MODEL_ID = 'internlm/internlm2_5-7b-chat'
USER = [{'role': 'user', 'content': 'Say hello.'}]


@dataclass
class StandIn:
    args_file: Path

    def args(self) -> dict:
        return json.loads(self.args_file.read_text())


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smollm2_path: Path) -> StandIn:
    """Put the stand-in ``lmdeploy`` first on PATH; it serves SmolLM2 through llama.cpp."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    executable = bin_dir / 'lmdeploy'
    executable.write_text(f'#!{sys.executable}\n' + Path(lmdeploy_standin.__file__).read_text())
    executable.chmod(0o755)
    args_file = tmp_path / 'lmdeploy-args.json'
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ.get("PATH", "")}')
    monkeypatch.setenv('LMDEPLOY_STANDIN_GGUF', str(smollm2_path))
    monkeypatch.setenv('LMDEPLOY_STANDIN_ARGS', str(args_file))
    return StandIn(args_file)


@pytest.fixture
def leftovers() -> Iterator[Leftovers]:
    found = Leftovers()
    yield found
    found.kill_all()


def test_command_parses_as_lmdeploy_cli() -> None:
    command = lmdeploy_command(
        'lmdeploy',
        MODEL_ID,
        server_name='127.0.0.1',
        server_port=23334,
        tp=2,
        backend='pytorch',
        model_name='internlm2',
        session_len=4096,
        log_level='INFO',
        api_keys=['k1', 'k2'],
        serve_cfg={
            'cache_max_entry_count': 0.5,
            'enable_prefix_caching': True,
            'max_batch_size': None,
            'allow_origins': ['http://a', 'http://b'],
        },
    )
    args = lmdeploy_standin.build_parser().parse_args(command[1:])
    assert (args.command, args.serve_command, args.model_path) == ('serve', 'api_server', MODEL_ID)
    assert (args.server_name, args.server_port, args.tp, args.backend) == ('127.0.0.1', 23334, 2, 'pytorch')
    assert (args.model_name, args.session_len, args.log_level) == ('internlm2', 4096, 'INFO')
    assert args.api_keys == ['k1', 'k2']
    assert args.cache_max_entry_count == 0.5
    assert args.enable_prefix_caching is True
    assert args.max_batch_size is None
    assert args.allow_origins == ['http://a', 'http://b']


def test_command_refuses_values_without_a_command_line_form() -> None:
    with pytest.raises(TypeError, match="'backend-config'"):
        lmdeploy_command('lmdeploy', MODEL_ID, server_name='h', server_port=1, serve_cfg={'backend_config': object()})


def test_command_parses_with_real_lmdeploy_cli() -> None:
    try:
        from lmdeploy.cli.cli import CLI
        from lmdeploy.cli.serve import SubCliServe

        SubCliServe.add_parser_api_server()
    except ImportError as exc:
        pytest.skip(f'lmdeploy CLI not importable here: {exc}')
    command = lmdeploy_command(
        'lmdeploy',
        MODEL_ID,
        server_name='127.0.0.1',
        server_port=23334,
        tp=2,
        backend='pytorch',
        model_name='internlm2',
        session_len=4096,
        api_keys=['k1', 'k2'],
        serve_cfg={'cache_max_entry_count': 0.5, 'enable_prefix_caching': True, 'allow_origins': ['a', 'b']},
    )
    args = CLI.parser.parse_args(command[1:])
    assert (args.model_path, args.server_port, args.tp, args.backend) == (MODEL_ID, 23334, 2, 'pytorch')
    assert (args.model_name, args.session_len, args.api_keys) == ('internlm2', 4096, ['k1', 'k2'])
    assert (args.cache_max_entry_count, args.enable_prefix_caching, args.allow_origins) == (0.5, True, ['a', 'b'])


def test_spawn_ready_chat_close(standin: StandIn, leftovers: Leftovers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keys = ['sk-first-secret', 'sk-second-secret']
    llm = LMDeployServer(
        MODEL_ID,
        model_name='internlm2',
        tp=1,
        session_len=1024,
        api_keys=keys,
        serve_cfg={'cache_max_entry_count': 0.5, 'enable_prefix_caching': True},
        max_new_tokens=8,
        temperature=0,
    )
    pgid = leftovers.group(llm.process.pid)
    try:
        args = standin.args()
        assert (args['model_path'], args['model_name'], args['session_len']) == (MODEL_ID, 'internlm2', 1024)
        assert (args['server_name'], args['server_port']) == ('127.0.0.1', llm.process.port)
        assert args['api_keys'] == keys and args['cache_max_entry_count'] == 0.5 and args['enable_prefix_caching']
        assert group_alive(pgid)

        assert llm.chat(USER).strip()
        assert llm.generate('The capital of France is').strip()
        steps = list(llm.stream_chat(USER))
        assert steps[-1][0] == ModelStatusCode.END and steps[-1][1].strip()
        response = llm.complete(USER)
        assert response.usage is not None and 0 < response.usage.completion_tokens <= 8

        for key in keys:
            assert key not in repr(llm) and key not in repr(llm.process)
            assert key not in caplog.text
        assert '--api-keys *** ***' in caplog.text
    finally:
        llm.close()
    assert not group_alive(pgid)
    llm.close()  # a second close does nothing


async def test_async_context_manager_stops_server(standin: StandIn, leftovers: Leftovers) -> None:
    async with LMDeployServer(MODEL_ID, max_new_tokens=8, temperature=0) as llm:
        pgid = leftovers.group(llm.process.pid)
        assert (await llm.achat(USER)).strip()
        assert (await llm.agenerate('Once upon a time')).strip()
    assert standin.args()['model_name'] is None  # served under the model path, found through /v1/models
    assert not group_alive(pgid)


def test_context_manager_stops_server(standin: StandIn, leftovers: Leftovers) -> None:
    with LMDeployServer(MODEL_ID, model_name='m', max_new_tokens=4) as llm:
        pgid = leftovers.group(llm.process.pid)
        assert llm.generate('Hello').strip()
    assert not group_alive(pgid)


def test_server_exits_early(standin: StandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv('LMDEPLOY_STANDIN_EXIT', '3')
    started = time.monotonic()
    with pytest.raises(EngineStartError) as info:
        LMDeployServer(MODEL_ID, ready_timeout=120, log_path=tmp_path / 'lmdeploy.log')
    assert time.monotonic() - started < 10  # not the ready timeout
    message = str(info.value)
    assert f'RuntimeError: failed to load model {MODEL_ID}: out of memory' in message
    assert 'code 3' in message


def test_real_lmdeploy_failure_is_quoted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``lmdeploy`` command, where it cannot serve (no CUDA device, an
    empty model folder): the error quotes its last words, and nothing is left."""
    try:
        find_lmdeploy()
    except MissingExtraError:
        pytest.skip('lmdeploy is not installed')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')  # never reach for a model hub
    with pytest.raises(EngineStartError, match='exited with code') as info:
        LMDeployServer(str(tmp_path), backend='pytorch', ready_timeout=300, log_path=tmp_path / 'lmdeploy.log')
    message = str(info.value)
    assert 'Error' in message.split('last lines of its log', 1)[1]  # lmdeploy's own words


def test_bad_option_is_refused_by_the_cli(standin: StandIn, tmp_path: Path) -> None:
    with pytest.raises(EngineStartError, match='unrecognized arguments: --no-such-option'):
        LMDeployServer(MODEL_ID, serve_cfg={'no_such_option': 1}, ready_timeout=120, log_path=tmp_path / 'lmdeploy.log')


def test_port_taken(standin: StandIn) -> None:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(EngineStartError, match=f'127.0.0.1:{port}'):
            LMDeployServer(MODEL_ID, server_port=port)
    assert not standin.args_file.exists()  # nothing was spawned


def test_missing_lmdeploy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('PATH', str(tmp_path))
    monkeypatch.setattr(sys, 'executable', str(tmp_path / 'python'))  # nor next to this Python
    with pytest.raises(MissingExtraError, match=r'pip install "lagent\[lmdeploy\]"'):
        LMDeployServer(MODEL_ID, server_port=free_port())


def test_owner_killed_leaves_no_orphan(standin: StandIn, leftovers: Leftovers, tmp_path: Path) -> None:
    owner = leftovers.proc(start_owner(tmp_path / 'server.log', 'lmdeploy', MODEL_ID))
    pid = leftovers.group(owned_server_pid(owner, timeout=120))
    assert group_alive(pid)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    assert wait_group_gone(pid, timeout=5)


def test_owner_sigterm_stops_server(standin: StandIn, leftovers: Leftovers, tmp_path: Path) -> None:
    owner = leftovers.proc(start_owner(tmp_path / 'server.log', 'lmdeploy', MODEL_ID))
    pid = leftovers.group(owned_server_pid(owner, timeout=120))
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(30) == -signal.SIGTERM
    assert not group_alive(pid)


@pytest.mark.parametrize('module', ['lagent.llms.lmdeploy_wrapper', 'lagent.llms.lmdepoly_wrapper'])
@pytest.mark.parametrize(
    ('name', 'home'),
    [
        ('LMDeployServer', 'lagent.llms.lmdeploy_server'),
        ('LMDeployClient', 'lagent.llms.lmdeploy_client'),
        ('LMDeployPipeline', 'lagent.llms.lmdeploy_pipeline'),
        ('TritonClient', 'lagent.llms.triton'),
    ],
)
def test_compat_modules_export_the_engines(module: str, name: str, home: str) -> None:
    engine = getattr(importlib.import_module(home), name)
    assert getattr(importlib.import_module(module), name) is engine
    assert name in importlib.import_module(module).__all__


def test_compat_module_imports_no_engine_library() -> None:
    code = (
        'import sys; import lagent.llms.lmdepoly_wrapper, lagent.llms.lmdeploy_wrapper; '
        "print(sorted({'lmdeploy', 'llama_cpp', 'torch', 'transformers', 'tritonclient'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == '[]'
