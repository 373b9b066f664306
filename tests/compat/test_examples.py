"""lagent 0.2's examples (and 0.1's ReAct examples), run as scripts the way their
users ran them: typed input on stdin, the model class swapped for the embedded
model or an engine of the test fixtures (see ``run_example.py``), and the
internet replaced by local servers where an example needed it.

Scripted replies check the flow exactly (the tool is called, its result is fed
back, the final answer is printed); the real-model runs check that the same
scripts run to the end on every engine, not what a 135M model says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.actions.web_services import WebServices, web_services

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = Path(__file__).resolve().parent / 'examples'
TYPED = 'What is 6 * 7?\n\nexit\n\n'
"""A question ended by an empty line, then the examples' ``exit`` command."""


def run_example(
    engine: str, script: str, *args: str, stdin: str = '', env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<script>`` with its model swapped for ``engine``; it must exit 0."""
    done = subprocess.run(
        [sys.executable, '-m', 'tests.compat.run_example', engine, str(EXAMPLES / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})},
    )
    assert done.returncode == 0, f'exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}'
    return done


def scripted(replies: list[str], tmp_path: Path) -> tuple[dict[str, str], Path]:
    requests = tmp_path / 'requests.json'
    return {'EXAMPLE_REPLIES': json.dumps(replies), 'EXAMPLE_REQUESTS': str(requests)}, requests


@pytest.fixture(scope='module')
def services() -> Iterator[WebServices]:
    with web_services() as running:
        yield running


# ---------------------------------------------------------------------- model_cli_demo.py


@pytest.mark.slow
@pytest.mark.parametrize('engine', ['llamacpp', 'lmdeploy', 'triton'])
def test_model_cli_demo_chats_on_every_engine(engine: str, request: pytest.FixtureRequest) -> None:
    env = {}
    if engine == 'lmdeploy':
        env['EXAMPLE_LLAMACPP_URL'] = request.getfixturevalue('llamacpp_url')
    if engine == 'triton':
        env['EXAMPLE_TRITON_ADDR'] = request.getfixturevalue('triton_addr')
    # a question the 135M model answers in one line: the demo lets a reply run to 1024 tokens
    done = run_example(engine, 'model_cli_demo.py', stdin='What is the capital of France?\n\nexit\n\n', env=env)
    reply = done.stdout.split('InternLm2：', 1)[1].split('double enter to end input')[0]
    assert reply.strip(), done.stdout


def test_model_cli_demo_streams_the_reply_and_keeps_the_history(tmp_path: Path) -> None:
    env, requests = scripted(['Hello there!', 'Bye!'], tmp_path)
    done = run_example('scripted', 'model_cli_demo.py', stdin='Hi\n\nAgain\n\nexit\n\n', env=env)
    assert 'InternLm2：Hello there!' in done.stdout and 'InternLm2：Bye!' in done.stdout
    second = json.loads(requests.read_text())[1]
    assert second.endswith(
        '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello there!<|im_end|>\n'
        '<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n'
    )


# ---------------------------------------------------------------------- internlm2_agent_cli_demo.py


def test_internlm2_agent_demo_runs_code_and_answers(tmp_path: Path) -> None:
    code = 'Let me compute.<|action_start|><|interpreter|>\n```python\nprint(6 * 7)\n```<|action_end|>\n'
    env, requests = scripted([code, 'It is 42.'], tmp_path)
    done = run_example('scripted', 'internlm2_agent_cli_demo.py', stdin=TYPED, env=env)
    output = done.stdout
    assert 'Let me compute.' in output
    assert ' IPythonInterpreter: \n\nprint(6 * 7)' in output  # the call, as the demo prints it
    assert output.index('print(6 * 7)') < output.index('It is 42.')
    prompts = json.loads(requests.read_text())
    assert '<|im_start|>environment name=<|interpreter|>\n42<|im_end|>' in prompts[1]  # the result fed back
    assert '<|im_start|>system name=<|interpreter|>\n你可以在一个有状态的 Python 环境' in prompts[0]


@pytest.mark.slow
def test_internlm2_agent_demo_on_the_embedded_model() -> None:
    done = run_example('llamacpp', 'internlm2_agent_cli_demo.py', stdin=TYPED, timeout=900)
    assert 'InternLm2：' in done.stdout and 'Traceback' not in done.stderr


# ---------------------------------------------------------------------- the ReAct examples (lagent 0.1)


def test_hf_react_example_calls_python_and_prints_the_answer(tmp_path: Path) -> None:
    replies = [
        'Thought: compute it\nAction: PythonInterpreter\nAction Input: ```python\nprint(2 + 2)\n```',
        'Thought: I have it.\nFinal Answer: 4',
    ]
    env, requests = scripted(replies, tmp_path)
    done = run_example('scripted', 'hf_react_example.py', env=env)
    assert done.stdout.strip().splitlines()[-1] == '4'
    prompts = json.loads(requests.read_text())
    assert 'Action: PythonInterpreter' in prompts[0] or 'PythonInterpreter' in prompts[0]
    assert '<|im_start|>user\nObservation: 4<|im_end|>' in prompts[1]  # the result fed back


@pytest.mark.slow
def test_hf_react_example_on_the_embedded_model() -> None:
    done = run_example('llamacpp', 'hf_react_example.py', timeout=900)
    assert done.stdout.strip(), done.stderr[-2000:]


def test_react_example_answers_each_typed_question(tmp_path: Path) -> None:
    replies = [
        'Thought: compute\nAction: PythonInterpreter\nAction Input: print(6 * 7)',
        'Thought: done\nFinal Answer: 42',
    ]
    env, requests = scripted(replies, tmp_path)
    env['EXAMPLE_OPENAI_API_BASE'] = 'http://127.0.0.1:9/v1'  # not reached: the model is scripted
    done = run_example('scripted', 'react_example.py', stdin=TYPED, env=env)
    assert '42' in done.stdout.split('double enter to end input >>> ')[1].splitlines()
    second = json.loads(requests.read_text())[1]
    assert {'role': 'user', 'content': 'Observation: 42'} in second


@pytest.mark.slow
def test_react_example_against_the_llamacpp_server(llamacpp_url: str) -> None:
    env = {'EXAMPLE_OPENAI_API_BASE': f'{llamacpp_url}/v1', 'OPENAI_API_KEY': 'sk-unused'}
    done = run_example('llamacpp', 'react_example.py', stdin=TYPED, env=env, timeout=900)
    assert done.stdout.count('double enter to end input') == 2, done.stdout  # answered, then asked again


def test_rewoo_quickstart_plans_searches_and_answers(services: WebServices, tmp_path: Path) -> None:
    replies = [
        'Plan: find what Nicholas Ray did\n#E1 = GoogleSearch[Nicholas Ray profession]\n'
        'Plan: find what Elia Kazan did\n#E2 = GoogleSearch[Elia Kazan profession]',
        'Film director.',
    ]
    env, requests = scripted(replies, tmp_path)
    env.update(EXAMPLE_OPENAI_API_BASE='http://127.0.0.1:9/v1', EXAMPLE_SERPER_BASE=f'{services.url}/serper')
    done = run_example('scripted', 'rewoo_example.py', env=env)
    assert done.stdout.strip().splitlines()[-1] == 'Film director.'
    searches = [request.body['q'] for request in services.requests if request.path == '/serper/search']
    assert searches[-2:] == ['Nicholas Ray profession', 'Elia Kazan profession']
    solver = json.loads(requests.read_text())[1][-1]['content']
    assert 'Beijing is the capital.' in solver  # the search results reached the solver as evidence
