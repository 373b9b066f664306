"""``lagent agent`` ends with an answer (exit 0) or with one line saying why there is none (exit 1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def lagent_agent(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, '-m', 'lagent', 'agent', '--config', str(config), '--tools', 'calculator', *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def scripted(tmp_path: Path, replies: list[str]) -> Path:
    config = tmp_path / 'scripted.json'
    config.write_text(json.dumps({'type': 'scripted', 'replies': replies}))
    return config


def test_an_answer_exits_zero(tmp_path: Path) -> None:
    done = lagent_agent(scripted(tmp_path, ['It is 444.']), 'What is 37 * 12?')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == '[final answer] It is 444.'
    assert done.stderr == ''


def test_no_answer_exits_one_with_one_line_saying_why(tmp_path: Path) -> None:
    done = lagent_agent(scripted(tmp_path, ['', '']), '--max-turn', '3', 'What is 37 * 12?')
    assert done.returncode == 1
    assert done.stderr.splitlines() == ['lagent: no answer: the model gave an empty reply (reply 2 of max_turn=3)']
    assert done.stdout.splitlines()[-1].startswith('[stopped (SESSION_OUT_OF_LIMIT)]')
