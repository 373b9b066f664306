"""Engines for the batch tests, importable by Ray workers (they are pickled by reference).

Each builds a :class:`~lagent.llms.ScriptedLLM` whose reply depends on the
question, and notes each build in a file, so tests can count the engines
built and see which process built them. Questions trigger behaviours:

* ``fail``: the engine raises an :class:`~lagent.errors.LLMError`;
* ``die once``: the worker process exits at once (as if killed) on the first
  attempt at the task anywhere, and answers on the next;
* ``die always``: the worker process exits on every attempt;
* anything else: the answer is ``'answer to <question>'``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from lagent.errors import LLMError
from lagent.llms.scripted import ScriptedLLM

REPLIES = 1000


class QuestionEngine:
    """A picklable engine factory: ``QuestionEngine(workdir)()`` builds the engine."""

    def __init__(self, workdir: Path, delay_s: float = 0.0):
        self.workdir = Path(workdir)
        self.delay_s = delay_s

    def __call__(self) -> ScriptedLLM:
        with open(self.workdir / 'builds', 'a') as builds:
            builds.write(f'{os.getpid()}\n')
        return ScriptedLLM([self.reply] * REPLIES)

    def reply(self, messages: Any) -> str:
        question = messages[-1]['content']
        if self.delay_s:
            time.sleep(self.delay_s)
        if question == 'fail':
            raise LLMError('the scripted engine failed on purpose')
        if question.startswith('die once'):
            marker = self.workdir / f'died-{question.replace(" ", "-")}'
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)
        if question.startswith('die always'):
            os._exit(1)
        return f'answer to {question}'

    def builds(self) -> list[int]:
        """The pids of the processes that built an engine, one per build."""
        path = self.workdir / 'builds'
        return [int(line) for line in path.read_text().split()] if path.exists() else []
