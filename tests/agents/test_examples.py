"""The agent examples, run as users run them: as scripts, on the real SmolLM2 model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / 'examples'


def run_example(*args: str, stdin: str = '', timeout: float = 240) -> list[str]:
    """Run an example script; return its output lines (it must exit 0)."""
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    done = subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=EXAMPLES.parent,
        env=env,
    )
    assert done.returncode == 0, f'exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}'
    return done.stdout.splitlines()


@pytest.mark.slow
def test_readme_example_answers_444_through_the_calculator() -> None:
    lines = run_example(str(EXAMPLES / 'function_calling_agent.py'))
    assert lines[0] == '[user] What is 37 * 12?'
    calls = [line for line in lines if line.startswith('[tool call] ')]
    assert calls == ['[tool call] Calculator {"expression": "37 * 12"}']
    assert '[tool result] 444' in lines
    [answer] = [line for line in lines if line.startswith('[answer ')]
    assert answer.startswith('[answer END] ') and '444' in answer
    assert lines.index(calls[0]) < lines.index('[tool result] 444') < lines.index(answer)
    streamed = [line for line in lines if line.startswith('[assistant] ')]
    assert streamed and '444' in streamed[-1]


@pytest.mark.slow
def test_streaming_chat_example_replies_and_ends_on_an_empty_line() -> None:
    lines = run_example(str(EXAMPLES / 'streaming_chat.py'), stdin='Say hello.\nAnd goodbye.\n\n')
    replies = [line for line in lines if 'bot> ' in line]
    assert len(replies) == 2
    assert all(line.split('bot> ', 1)[1].strip() for line in replies)
    assert lines[-1].endswith('you> ')  # the empty line ended the loop


@pytest.mark.slow
def test_default_agent_answers_arithmetic_through_the_calculator() -> None:
    """Three questions of benchmarks/agent_arithmetic.py, default settings, the embedded model."""
    from lagent.actions import Calculator
    from lagent.agents import FunctionCallAgent
    from lagent.llms import default_llm

    with default_llm() as llm:
        for question, expected in [
            ('What is 845 + 1277?', '2122'),
            ('What is 612 - 389?', '223'),
            ('What is 99 * 99?', '9801'),
        ]:
            result = FunctionCallAgent(llm, [Calculator()]).chat(question)
            assert result.status.name == 'END', (question, result.errmsg)
            assert [r.format_result() for r in result.tool_results] == [expected]
            assert expected in result.answer, (question, result.answer)
