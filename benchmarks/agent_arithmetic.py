"""Does an agent on the embedded default model answer, and answer right?

Twenty two-number arithmetic questions go through the calculator, with
default settings, two ways:

* ``python``: ``FunctionCallAgent(default_llm(), [Calculator()]).chat(question)``;
* ``cli``: ``lagent agent --tools calculator "<question>"`` (one process per question).

A question counts as answered correctly when the run ends with an answer
(status ``END``; the command exits 0), the calculator was called, and the
answer contains the right number. The target is at least 18 of 20 each way.
It also counts the answers that copy the request's wording (its list of tool
results) instead of only answering.

    python benchmarks/agent_arithmetic.py                 # both ways, all 20
    python benchmarks/agent_arithmetic.py --way python --limit 5

The machine's load changes the timings, not the answers: decoding is greedy.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

QUESTIONS: list[tuple[str, float]] = [
    ('What is 37 * 12?', 444),
    ('What is 845 + 1277?', 2122),
    ('What is 9031 - 4567?', 4464),
    ('What is 144 / 12?', 12),
    ('How much is 23 times 19?', 437),
    ('What is 58 + 67?', 125),
    ('What is 1000 - 358?', 642),
    ('What is 125 * 8?', 1000),
    ('What is 756 / 14?', 54),
    ('What is 4321 + 1234?', 5555),
    ('What is 99 * 99?', 9801),
    ('What is 8192 / 64?', 128),
    ('What is 612 - 389?', 223),
    ('What is 47 * 53?', 2491),
    ('What is 3600 / 48?', 75),
    ('Add 2718 and 3141.', 5859),
    ('What is 620 - 175?', 445),
    ('What is 16 * 256?', 4096),
    ('What is 999 + 1?', 1000),
    ('Divide 1728 by 12.', 144),
]
"""The questions and their answers."""

_NUMBER = re.compile(r'-?\d[\d,]*(?:\.\d+)?')
_REQUEST_WORDING = re.compile(r'(?i)tool results|results of the tools|Calculator\(')


@dataclass
class Outcome:
    """One question, one way."""

    question: str
    expected: float
    answer: str
    ended: bool
    called: bool
    seconds: float

    @property
    def correct(self) -> bool:
        return self.ended and self.called and mentions(self.answer, self.expected)

    @property
    def repeats_the_request(self) -> bool:
        """Whether the answer copies the request's wording (its list of tool results) instead of answering."""
        return bool(_REQUEST_WORDING.search(self.answer))


def mentions(text: str, expected: float) -> bool:
    """Whether ``text`` contains the number ``expected`` (``1,000`` and ``1000.0`` count)."""
    for found in _NUMBER.findall(text):
        try:
            value = float(found.replace(',', ''))
        except ValueError:
            continue
        if math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9):
            return True
    return False


def run_python(questions: list[tuple[str, float]]) -> list[Outcome]:
    from lagent.actions import Calculator
    from lagent.agents import FunctionCallAgent
    from lagent.llms import default_llm

    outcomes = []
    with default_llm() as llm:
        for question, expected in questions:
            started = time.monotonic()
            result = FunctionCallAgent(llm, [Calculator()]).chat(question)
            called = any(call.function.name == 'Calculator' for call in result.tool_calls)
            ended = result.status.name == 'END'
            outcomes.append(Outcome(question, expected, result.answer, ended, called, time.monotonic() - started))
            report('python', outcomes[-1], result.errmsg)
    return outcomes


def run_cli(questions: list[tuple[str, float]]) -> list[Outcome]:
    outcomes = []
    for question, expected in questions:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, '-m', 'lagent', 'agent', '--tools', 'calculator', question],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        lines = done.stdout.splitlines()
        answers = [line.removeprefix('[final answer] ') for line in lines if line.startswith('[final answer] ')]
        called = any('tool call: Calculator(' in line for line in lines)
        answer = answers[-1] if answers else ''
        outcomes.append(Outcome(question, expected, answer, done.returncode == 0, called, time.monotonic() - started))
        report('cli', outcomes[-1], done.stderr.strip().splitlines()[-1] if done.returncode else None)
    return outcomes


def report(way: str, outcome: Outcome, why: str | None) -> None:
    mark = 'ok  ' if outcome.correct else 'MISS'
    detail = f'  ({why})' if why and not outcome.correct else ''
    answer = ' '.join(outcome.answer.split())[:80]
    print(f'{way:6} {mark} {outcome.seconds:6.1f}s  {outcome.question:26} -> {answer!r}{detail}', flush=True)


def summary(way: str, outcomes: list[Outcome]) -> str:
    right = sum(outcome.correct for outcome in outcomes)
    ended = sum(outcome.ended for outcome in outcomes)
    repeating = sum(outcome.repeats_the_request for outcome in outcomes)
    median = statistics.median(outcome.seconds for outcome in outcomes)
    return (
        f'{way}: {right}/{len(outcomes)} correct through the calculator, {ended}/{len(outcomes)} ended with '
        f'an answer, {repeating} repeating the request, median {median:.1f}s per question'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--way', choices=('python', 'cli', 'both'), default='both')
    parser.add_argument('--limit', type=int, default=len(QUESTIONS), help='run the first N questions')
    args = parser.parse_args()
    questions = QUESTIONS[: args.limit]
    results = {}
    if args.way in ('python', 'both'):
        results['python'] = run_python(questions)
    if args.way in ('cli', 'both'):
        results['cli'] = run_cli(questions)
    for way, outcomes in results.items():
        print(summary(way, outcomes))


if __name__ == '__main__':
    main()
