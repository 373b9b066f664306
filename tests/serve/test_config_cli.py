"""Serve configs (several engines and agents from one file) and the ``lagent serve`` command line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from lagent.actions.builtin import tools_by_name
from lagent.cli import main
from lagent.cli.serve import served_name
from lagent.llms import ScriptedLLM
from lagent.serve import ServedAgent, load_serve_config
from tests.fixtures.process_checks import read_line
from tests.serve.served import REPO
from tests.serve.wire import user

CONFIG = {
    'models': {
        'echo': {'type': 'ScriptedLLM', 'replies': ['Hello!'] * 10},
    },
    'agents': {
        'calc': {'llm': 'echo', 'tools': ['calculator'], 'max_turn': 2, 'native': False},
        'own-engine': {'llm': {'type': 'ScriptedLLM', 'replies': ['Hi.']}, 'type': 'ReAct'},
    },
}


def test_a_serve_config_builds_engines_and_agents() -> None:
    with load_serve_config(CONFIG) as config:
        assert list(config.models) == ['echo', 'calc', 'own-engine']
        calc = config.models['calc']
        assert isinstance(calc, ServedAgent) and calc.llm is config.models['echo']
        assert calc.executor.names == ['Calculator'] and calc.make().max_turn == 2
        assert calc.make() is not calc.make()  # one agent per conversation
        own = config.models['own-engine']
        assert isinstance(own, ServedAgent) and own.agent_class.__name__ == 'ReAct'
        assert isinstance(own.llm, ScriptedLLM) and own.llm is not config.models['echo']


@pytest.mark.parametrize(
    ('config', 'message'),
    [
        ({'engines': {}}, 'sections "models" and/or "agents"'),
        ({'models': {}}, 'lists no models'),
        ({'models': {'a': {'type': 'nope'}}}, "models.a: unknown engine 'nope'"),
        ({'models': {'a': {'type': 'ScriptedLLM', 'replies': [], 'colour': 1}}}, "models.a: ScriptedLLM does not take 'colour'"),
        ({'agents': {'x': {'llm': 'missing'}}}, "agents.x.llm: no model 'missing'"),
        ({'models': {'a': {'type': 'ScriptedLLM', 'replies': []}}, 'agents': {'x': {'llm': 'a', 'type': 'Smart'}}},
         "agents.x.type: unknown agent 'Smart'"),
        ({'models': {'a': {'type': 'ScriptedLLM', 'replies': []}}, 'agents': {'x': {'llm': 'a', 'tools': ['web']}}},
         "unknown tool 'web'"),
        ({'models': {'a': {'type': 'ScriptedLLM', 'replies': []}}, 'agents': {'x': {'llm': 'a', 'max_turn': 0}}},
         'agents.x: max_turn must be at least 1'),
        ({'models': {'a': {'type': 'ScriptedLLM', 'replies': []}}, 'agents': {'a': {'llm': 'a'}}},
         'agents.a: the name is already used'),
    ],
)  # fmt: skip
def test_config_errors_name_the_entry_at_fault(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_serve_config(config)


def test_a_yaml_serve_config(tmp_path: Path) -> None:
    path = tmp_path / 'serve.yaml'
    path.write_text('models:\n  echo:\n    type: ScriptedLLM\n    replies: [Hi]\nagents:\n  calc:\n    llm: echo\n')
    with load_serve_config(path) as config:
        assert list(config.models) == ['echo', 'calc']


def test_tools_by_name_builtins_and_imported() -> None:
    calculator, function = tools_by_name(['calculator', 'lagent.actions.calculator:Calculator'])
    assert type(calculator).__name__ == type(function).__name__ == 'Calculator'
    with pytest.raises(ValueError, match="no attribute 'Nope'"):
        tools_by_name(['lagent.actions:Nope'])


def test_served_name_is_the_model_file_or_name() -> None:
    assert served_name(ScriptedLLM([]), 'scripted-backend') == 'scripted'
    llm = ScriptedLLM([])
    llm.path = '/models/SmolLM2-135M-Instruct.Q4_1.gguf'
    assert served_name(llm, 'llamacpp') == 'SmolLM2-135M-Instruct.Q4_1'
    llm.path = None
    assert served_name(llm, 'openai') == 'openai'


def test_engine_options_do_not_mix_with_a_serve_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / 'serve.json'
    path.write_text(json.dumps(CONFIG))
    assert main(['serve', '--config', str(path), '--backend', 'llamacpp', '--agent', 'x']) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith('lagent: error:') and '--backend, --agent apply to one engine only' in error
    assert len(error.splitlines()) == 1


def test_lagent_serve_on_port_0_announces_its_address_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    path = tmp_path / 'serve.json'
    path.write_text(json.dumps(CONFIG))
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'LAGENT_SERVE_API_KEYS': 'k1, k2'}
    server = subprocess.Popen(
        [sys.executable, '-m', 'lagent', 'serve', '--config', str(path), '--port', '0'],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        line = read_line(server, timeout=60)
        assert line.startswith('lagent serve: serving echo, calc, own-engine at http://127.0.0.1:'), line
        url = line.rsplit(' ', 1)[1]
        body = {'model': 'echo', 'messages': user('Hi')}
        assert requests.post(f'{url}/v1/chat/completions', json=body, timeout=10).status_code == 401
        answer = requests.post(
            f'{url}/v1/chat/completions', json=body, headers={'Authorization': 'Bearer k2'}, timeout=10
        )
        assert answer.json()['choices'][0]['message']['content'] == 'Hello!'
        server.send_signal(signal.SIGINT)
        assert server.wait(20) == 0
        assert 'SIGINT: finishing running requests' in server.stderr.read().decode()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        server.stdout.close()
        server.stderr.close()


def test_serve_help_lists_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(['serve', '--help'])
    text = capsys.readouterr().out
    for option in ('--host', '--port', '--api-key', '--agent', '--tools', '--max-concurrency', '--drain-timeout'):
        assert option in text
