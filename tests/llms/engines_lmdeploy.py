"""The three lmdeploy engines on lmdeploy's own code, for the contract and agent
suites: ``LMDeployClient`` against lmdeploy's real api_server, ``LMDeployServer``
launching lmdeploy's real command line, ``LMDeployPipeline`` on lmdeploy's real
``Pipeline`` — all on the CPU engine of ``tests/fixtures/lmdeploy_cpu.py``.

The model is SmolLM2 through llama.cpp, plus a script for the questions that
need a tool call: the contract suite's forced ``get_weather`` call, and the agent
suite's ``What is 37 * 12?`` (first a tool call, after the tool's result the
answer), each call in the format of lmdeploy's ``qwen`` tool parser. SmolLM2's chat template ignores ``tools`` (so the model alone never
calls one, and lmdeploy does not force a named ``tool_choice``); the script is
what makes lmdeploy's tool-call parsing run end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lagent.llms.base import BaseLLM
from tests.fixtures.lmdeploy_cpu import cpu_engine, scripted_model, write_command
from tests.fixtures.lmdeploy_cpu_server import CPUServer, api_server
from tests.llms.engines import engines_by_keywords, fresh_engines

MODEL_NAME = 'smollm2'
SESSION_LEN = 2048
TOOL_PARSER = 'qwen'
AGENT_RULES = [
    {
        'when': 'What is the weather in Paris?',
        'reply': '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    },
    {'when': '444', 'reply': 'The answer is 444.'},
    {
        'when': '37 * 12',
        'reply': '<tool_call>\n{"name": "Calculator", "arguments": {"expression": "37 * 12"}}\n</tool_call>',
    },
]
SERVE_OPTIONS = ('--model-name', MODEL_NAME, '--session-len', str(SESSION_LEN), '--tool-call-parser', TOOL_PARSER)

SCRIPTED_NAME = 'scripted'
WEATHER_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "%s"}}\n</tool_call>'
PROTOCOL_RULES = [
    {'when': '[[slow]]', 'reply': ' tick', 'forever': True, 'delay': 0.05},
    {'when': '[[weather]]', 'reply': WEATHER_CALL % 'Paris'},
    {'when': '[[two cities]]', 'reply': 'Checking both.\n' + WEATHER_CALL % 'Paris' + '\n' + WEATHER_CALL % 'Rome'},
    {'when': '[[special]]', 'reply': 'Hi <|im_start|> there'},
    {'when': '[[stop]]', 'reply': 'Alpha beta STOP_HERE gamma delta.'},
    {'when': '[[long]]', 'reply': ' word', 'repeat': 3000},
]
"""The deterministic protocol cases of the scripted server (a marker in the prompt picks one)."""

MakeEngine = Callable[..., BaseLLM]


@pytest.fixture(scope='session')
def lmdeploy_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the lmdeploy fixtures' command, model, logs and event files."""
    return tmp_path_factory.mktemp('lmdeploy')


@pytest.fixture(scope='session')
def lmdeploy_command(lmdeploy_workdir: Path) -> Path:
    """An ``lmdeploy`` executable running lmdeploy's real CLI with the CPU engine."""
    bin_dir = lmdeploy_workdir / 'bin'
    bin_dir.mkdir(exist_ok=True)
    return write_command(bin_dir)


@pytest.fixture(scope='session')
def lmdeploy_model(lmdeploy_workdir: Path) -> Path:
    """SmolLM2 (llama.cpp) with the agent script, as a model folder lmdeploy loads."""
    return scripted_model(lmdeploy_workdir / 'smollm2-agent-script', AGENT_RULES, base='smollm2')


@pytest.fixture(scope='session')
def lmdeploy_cpu_server(lmdeploy_command: Path, lmdeploy_model: Path, lmdeploy_workdir: Path) -> Iterator[CPUServer]:
    """lmdeploy's api_server on the CPU engine serving :func:`lmdeploy_model` as ``smollm2``."""
    with api_server(lmdeploy_command, lmdeploy_model, lmdeploy_workdir, *SERVE_OPTIONS) as server:
        yield server


@pytest.fixture(scope='session')
def lmdeploy_scripted(lmdeploy_command: Path, lmdeploy_workdir: Path) -> Iterator[CPUServer]:
    """lmdeploy's api_server on the CPU engine serving :data:`PROTOCOL_RULES` as ``scripted``."""
    model = scripted_model(lmdeploy_workdir / 'protocol-script', PROTOCOL_RULES)
    options = ('--model-name', SCRIPTED_NAME, '--tool-call-parser', TOOL_PARSER)
    with api_server(lmdeploy_command, model, lmdeploy_workdir, *options) as server:
        yield server


@pytest.fixture(scope='session')
def lmdeploy_url(lmdeploy_cpu_server: CPUServer) -> str:
    """Base URL of :func:`lmdeploy_cpu_server`."""
    return lmdeploy_cpu_server.url


@pytest.fixture(scope='session')
def lmdeploy_pipeline(lmdeploy_model: Path) -> Iterator[Any]:
    """A lagent ``LMDeployPipeline`` built by its constructor on the CPU engine (closed after the session)."""
    from lagent.llms.lmdeploy_pipeline import LMDeployPipeline

    with cpu_engine():
        llm = LMDeployPipeline(path=str(lmdeploy_model), backend='pytorch', session_len=SESSION_LEN)
    yield llm
    llm.close()


@pytest.fixture
def engine_lmdeploy_client(lmdeploy_url: str) -> Iterator[MakeEngine]:
    from lagent.llms.lmdeploy_client import LMDeployClient

    yield from fresh_engines(lambda **kwargs: LMDeployClient(lmdeploy_url, **kwargs))


@pytest.fixture(scope='session')
def lmdeploy_servers(lmdeploy_command: Path, lmdeploy_model: Path) -> Iterator[MakeEngine]:
    """``make(**kwargs) -> LMDeployServer``, one child server per distinct kwargs, stopped after the session."""
    from lagent.llms.lmdeploy_server import LMDeployServer

    def build(**kwargs: Any) -> LMDeployServer:
        return LMDeployServer(
            str(lmdeploy_model),
            model_name=MODEL_NAME,
            session_len=SESSION_LEN,
            serve_cfg={'tool_call_parser': TOOL_PARSER},
            command=str(lmdeploy_command),
            ready_timeout=240,
            **kwargs,
        )

    yield from engines_by_keywords(build)


@pytest.fixture
def engine_lmdeploy_server(lmdeploy_servers: MakeEngine) -> MakeEngine:
    return lmdeploy_servers


@pytest.fixture
def engine_lmdeploy_pipeline(lmdeploy_pipeline: Any) -> MakeEngine:
    """``make(**kwargs)``: an ``LMDeployPipeline`` sharing the session's lmdeploy ``Pipeline``."""
    from lagent.llms.lmdeploy_pipeline import LMDeployPipeline

    def make(**kwargs: Any) -> LMDeployPipeline:
        if not kwargs:
            return lmdeploy_pipeline
        return LMDeployPipeline.from_pipeline(lmdeploy_pipeline.pipe, **kwargs)

    return make
