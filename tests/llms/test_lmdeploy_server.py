"""LMDeployServer launching lmdeploy's real command line (``lmdeploy serve
api_server``), with the CPU engine of ``tests/fixtures/lmdeploy_cpu.py`` where a
server must answer, and the plain ``lmdeploy`` of this machine (no CUDA device)
where it must fail as lmdeploy fails without a GPU."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import torch

from lagent.errors import EngineStartError, EngineUnavailableError, MissingExtraError, RequestError
from lagent.llms.lmdeploy_client import LMDeployClient
from lagent.llms.lmdeploy_server import LMDeployServer, find_lmdeploy, lmdeploy_command, no_cuda_reason
from lagent.llms.process import free_port
from lagent.schema import ModelStatusCode
from tests.fixtures.lmdeploy_cpu import model_folder, scripted_model
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
SLOW = [{'role': 'user', 'content': '[[slow]]'}]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason='checks lmdeploy without a CUDA device')


@pytest.fixture
def leftovers() -> Leftovers:
    found = Leftovers()
    yield found
    found.kill_all()


@pytest.fixture
def on_path(lmdeploy_command: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the CPU engine's ``lmdeploy`` the one on PATH (for code that runs the default command)."""
    monkeypatch.setenv('PATH', f'{lmdeploy_command.parent}{os.pathsep}{os.environ.get("PATH", "")}')
    return lmdeploy_command


@pytest.fixture(scope='module')
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scripted model that ticks forever (0.05 s a token) when asked ``[[slow]]``."""
    return scripted_model(
        tmp_path_factory.mktemp('slow') / 'model',
        [{'when': '[[slow]]', 'reply': ' tick', 'forever': True, 'delay': 0.05}],
    )


# ---------------------------------------------------------------------- the command line


def test_command_parses_with_real_lmdeploy_cli() -> None:
    from lmdeploy.cli.cli import CLI
    from lmdeploy.cli.serve import SubCliServe

    SubCliServe.add_parser_api_server()
    command = lmdeploy_command(
        ['conda', 'run', '-n', 'lmd', 'lmdeploy'],
        MODEL_ID,
        server_name='127.0.0.1',
        server_port=23334,
        tp=2,
        backend='pytorch',
        model_name='internlm2',
        session_len=4096,
        api_keys=['k1', 'k2'],
        serve_cfg={
            'cache_max_entry_count': 0.5,
            'enable_prefix_caching': True,
            'max_batch_size': None,
            'allow_origins': ['a', 'b'],
            'tool_call_parser': 'qwen',
        },
    )
    assert command[:7] == ['conda', 'run', '-n', 'lmd', 'lmdeploy', 'serve', 'api_server']
    args = CLI.parser.parse_args(command[5:])
    assert (args.model_path, args.server_port, args.tp, args.backend) == (MODEL_ID, 23334, 2, 'pytorch')
    assert (args.model_name, args.session_len, args.api_keys) == ('internlm2', 4096, ['k1', 'k2'])
    assert (args.cache_max_entry_count, args.enable_prefix_caching, args.allow_origins) == (0.5, True, ['a', 'b'])
    assert (args.max_batch_size, args.tool_call_parser) == (None, 'qwen')


def test_command_refuses_values_without_a_command_line_form() -> None:
    with pytest.raises(TypeError, match="'backend-config'"):
        lmdeploy_command('lmdeploy', MODEL_ID, server_name='h', server_port=1, serve_cfg={'backend_config': object()})


@pytest.mark.parametrize(
    ('log', 'reason'),
    [
        (  # lmdeploy's engine checker, as its log line
            '2026 - lmdeploy - ERROR - base.py:54 - AssertionError: Torch not compiled with CUDA enabled\nmore',
            'AssertionError: Torch not compiled with CUDA enabled',
        ),
        (  # a CUDA build of torch on a machine without a driver
            'Traceback...\nRuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU',
            'RuntimeError: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU',
        ),
        ('RuntimeError: No CUDA GPUs are available', 'RuntimeError: No CUDA GPUs are available'),
        ('RuntimeError: CUDA error: out of memory', None),
        ('', None),
    ],
)
def test_no_cuda_reason_reads_lmdeploy_logs(log: str, reason: str | None) -> None:
    assert no_cuda_reason(log) == reason


# ---------------------------------------------------------------------- a real server on the CPU engine


def test_spawn_ready_chat_cancel_close(
    lmdeploy_command: Path, slow_model: Path, leftovers: Leftovers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = ['sk-first-secret', 'sk-second-secret']
    llm = LMDeployServer(
        str(slow_model),
        model_name='served',
        session_len=1024,
        api_keys=keys,
        serve_cfg={'max_batch_size': 1, 'enable_prefix_caching': True},  # one request at a time
        command=str(lmdeploy_command),
        max_new_tokens=8,
        temperature=0,
        ready_timeout=240,
    )
    pgid = leftovers.group(llm.process.pid)
    try:
        assert group_alive(pgid) and 'lmdeploy is ready' in caplog.text
        health = requests.get(f'{llm.process.url}/health', timeout=10)
        assert health.status_code == 200 and health.json()['status'] == 'healthy'
        assert llm.model_name == 'served'

        assert llm.chat(USER).startswith('The answer is')
        assert llm.generate('The capital of France is').strip()
        steps = list(llm.stream_chat(USER, stream=True))
        assert steps[-1][0] == ModelStatusCode.END and steps[-1][1].startswith('The answer is')
        response = llm.complete(USER)
        assert response.usage is not None and response.usage.completion_tokens == 8

        # a stream closed early frees lmdeploy's only request handle: the next request is served
        with llm.stream(SLOW, max_new_tokens=2000) as stream:
            assert next(stream).text == ' tick'
        started = time.monotonic()
        assert llm.generate('Hello', timeout=30).startswith('The answer is')
        assert time.monotonic() - started < 30

        # lmdeploy's own authentication
        anonymous = requests.post(f'{llm.process.url}/v1/completions', json={'model': 'served', 'prompt': 'x'})
        assert anonymous.status_code == 401
        stranger = LMDeployClient(llm.process.url, model_name='served', api_key='sk-wrong', max_retries=0)
        with stranger, pytest.raises(RequestError) as refused:
            stranger.generate('x')
        assert refused.value.status_code == 401
        with LMDeployClient(llm.process.url, api_key=keys[1]) as second:
            assert second.generate('x', max_new_tokens=2)

        for key in keys:
            assert key not in repr(llm) and key not in repr(llm.process)
            assert key not in caplog.text
        assert '--api-keys *** ***' in caplog.text
    finally:
        llm.close()
    assert not group_alive(pgid)
    llm.close()  # a second close does nothing


async def test_default_command_and_async_context_manager(on_path: Path, leftovers: Leftovers) -> None:
    """The default command is the ``lmdeploy`` on PATH (here the CPU engine's)."""
    async with LMDeployServer('scripted', max_new_tokens=8, temperature=0, ready_timeout=240) as llm:
        pgid = leftovers.group(llm.process.pid)
        assert llm.process.command_line.startswith(f'{on_path} serve api_server scripted ')
        assert (await llm.achat(USER)).startswith('The answer is')
        assert (await llm.agenerate('Once upon a time')).strip()
        assert llm.model_name == 'scripted'  # served under the model path, found through /v1/models
    assert not group_alive(pgid)


# ---------------------------------------------------------------------- failures, in lmdeploy's words


def test_model_path_that_does_not_exist(lmdeploy_command: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(EngineStartError) as info:
        LMDeployServer(
            'no-such-org/no-such-model', command=str(lmdeploy_command), ready_timeout=240, log_path=tmp_path / 'log'
        )
    assert time.monotonic() - started < 120  # it exited; no ready timeout
    message = str(info.value)
    assert 'exited with code' in message
    assert 'LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder' in message  # lmdeploy's words
    assert 'outgoing traffic has been disabled' in message  # the CPU engine never reaches for a model hub


@no_cuda
def test_no_cuda_device_is_a_clear_error(tmp_path: Path) -> None:
    """The plain ``lmdeploy`` of this machine, on a real model folder: its CLI asks
    torch for the GPU's name first, and fails with torch's words."""
    try:
        find_lmdeploy()
    except MissingExtraError:
        pytest.skip('lmdeploy is not installed')
    with pytest.raises(EngineUnavailableError, match='lmdeploy found no CUDA device') as info:
        LMDeployServer(
            str(model_folder('smollm2')), backend='pytorch', ready_timeout=240, log_path=tmp_path / 'lmdeploy.log'
        )
    assert 'Torch not compiled with CUDA enabled' in str(info.value)
    assert isinstance(info.value.__cause__, EngineStartError)


def test_bad_option_is_refused_by_the_cli(lmdeploy_command: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineStartError, match='unrecognized arguments: --no-such-option'):
        LMDeployServer(
            'scripted',
            serve_cfg={'no_such_option': 1},
            command=str(lmdeploy_command),
            ready_timeout=120,
            log_path=tmp_path / 'lmdeploy.log',
        )


def test_command_that_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(EngineStartError, match='cannot run'):
        LMDeployServer('scripted', command=[str(tmp_path / 'no-such-lmdeploy')])
    with pytest.raises(ValueError, match='must not be empty'):
        LMDeployServer('scripted', command='')


def test_port_taken(lmdeploy_command: Path) -> None:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(EngineStartError, match=f'127.0.0.1:{port}'):
            LMDeployServer('scripted', server_port=port, command=str(lmdeploy_command))


def test_missing_lmdeploy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('PATH', str(tmp_path))
    monkeypatch.setattr(sys, 'executable', str(tmp_path / 'python'))  # nor next to this Python
    with pytest.raises(MissingExtraError, match=r'pip install "lagent\[lmdeploy\]"'):
        LMDeployServer(MODEL_ID, server_port=free_port())


# ---------------------------------------------------------------------- the owner dies


def test_owner_killed_leaves_no_orphan(on_path: Path, leftovers: Leftovers, tmp_path: Path) -> None:
    owner = leftovers.proc(start_owner(tmp_path / 'server.log', 'lmdeploy', 'scripted'))
    pid = leftovers.group(owned_server_pid(owner, timeout=240))
    assert group_alive(pid)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    assert wait_group_gone(pid, timeout=15)


def test_owner_sigterm_stops_server(on_path: Path, leftovers: Leftovers, tmp_path: Path) -> None:
    owner = leftovers.proc(start_owner(tmp_path / 'server.log', 'lmdeploy', 'scripted'))
    pid = leftovers.group(owned_server_pid(owner, timeout=240))
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(60) == -signal.SIGTERM
    assert not group_alive(pid)


# ---------------------------------------------------------------------- old import paths


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
