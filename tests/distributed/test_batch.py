"""``run_batch`` on worker threads and ``lagent batch``: every id exactly once,
resuming, failures, one engine per worker, and the agent config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lagent.actions import Calculator
from lagent.agents import AgentResult, FunctionCallAgent, ReAct
from lagent.distributed import AgentConfig, TaskOutcome, gpus_needed, run_batch
from lagent.distributed.agent_config import resolve_agent
from lagent.distributed.pools import ThreadPool
from tests.distributed.workloads import QuestionEngine


def tasks(count: int, *extra: str) -> list[dict[str, Any]]:
    questions = [f'q{index}' for index in range(count)] + list(extra)
    return [{'id': index, 'question': question} for index, question in enumerate(questions)]


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines()]


def assert_each_id_once(path: Path, expected: set[Any]) -> list[dict[str, Any]]:
    records = results(path)
    counts = Counter(record['id'] for record in records)
    assert set(counts) == expected
    assert set(counts.values()) == {1}, [task_id for task_id, count in counts.items() if count > 1]
    return records


def test_every_task_is_answered_once_by_its_own_question(tmp_path: Path) -> None:
    engine = QuestionEngine(tmp_path)
    outcomes: list[TaskOutcome] = []
    started: list[int] = []
    summary = run_batch(
        AgentConfig(llm=engine, options={'max_turn': 2}),
        tasks(40),
        tmp_path / 'out.jsonl',
        workers=4,
        on_start=started.append,
        on_result=outcomes.append,
    )
    assert (summary.total, summary.done, summary.skipped, summary.failed) == (40, 40, 0, {})
    assert started == [40]
    assert sorted(outcome.id for outcome in outcomes) == list(range(40))
    records = assert_each_id_once(tmp_path / 'out.jsonl', set(range(40)))
    for record in records:
        assert record['answer'] == f'answer to {record["question"]}'
        assert record['question'] == f'q{record["id"]}'
        assert AgentResult.model_validate(record).answer == record['answer']  # the line is an AgentResult too
    slots = {record['worker']['slot'] for record in records}
    assert slots <= {0, 1, 2, 3}
    assert len(engine.builds()) == 4  # one engine per worker, built once however many tasks it ran


def test_a_rerun_skips_the_ids_already_written(tmp_path: Path) -> None:
    out = tmp_path / 'out.jsonl'
    out.write_text('{"id": 0, "answer": "from before"}\n{"id": 3, "answer": "from before"}\n')
    engine = QuestionEngine(tmp_path)
    summary = run_batch(AgentConfig(llm=engine), tasks(6), out, workers=2)
    assert (summary.done, summary.skipped) == (4, 2)
    records = assert_each_id_once(out, set(range(6)))
    assert [record['answer'] for record in records[:2]] == ['from before'] * 2
    again = run_batch(AgentConfig(llm=engine), tasks(6), out, workers=2)
    assert (again.done, again.skipped) == (0, 6)
    assert len(engine.builds()) == 2  # nothing to do: no engine built


def test_a_task_whose_agent_fails_is_reported_not_written_and_retried_by_a_rerun(tmp_path: Path) -> None:
    out = tmp_path / 'out.jsonl'
    questions = tasks(5, 'fail')
    summary = run_batch(AgentConfig(llm=QuestionEngine(tmp_path)), questions, out, workers=2)
    assert summary.done == 5
    assert summary.failed == {5: 'LLMError: the scripted engine failed on purpose'}
    assert_each_id_once(out, set(range(5)))
    questions[5]['question'] = 'fixed'
    rerun = run_batch(AgentConfig(llm=QuestionEngine(tmp_path)), questions, out)
    assert (rerun.done, rerun.skipped, rerun.failed) == (1, 5, {})
    assert assert_each_id_once(out, set(range(6)))[-1]['answer'] == 'answer to fixed'


def test_each_worker_gets_its_own_copy_of_the_tools(tmp_path: Path) -> None:
    calculator = Calculator()
    pool = ThreadPool(AgentConfig(llm=QuestionEngine(tmp_path), tools=[calculator]))
    handles = [pool.spawn(slot) for slot in range(3)]
    try:
        identities = [started.result(timeout=60) for _, started in handles]
        copies = [worker.config.tools[0] for (_, worker), _ in handles]
        assert all(worker.agent is not None for (_, worker), _ in handles)
    finally:
        pool.close(wait=True)
    assert [identity['slot'] for identity in identities] == [0, 1, 2]
    assert len({id(copy) for copy in copies}) == 3 and calculator not in copies
    assert all(worker.agent is None for (_, worker), _ in handles)  # closed


def test_a_worker_that_cannot_build_its_engine_stops_the_batch_with_that_error(tmp_path: Path) -> None:
    config = AgentConfig(llm={'type': 'LlamaCpp', 'path': str(tmp_path / 'missing.gguf')})
    with pytest.raises(FileNotFoundError, match='no GGUF file at'):
        run_batch(config, tasks(3), tmp_path / 'out.jsonl', workers=2)
    assert (tmp_path / 'out.jsonl').read_text() == ''


def test_bad_arguments(tmp_path: Path) -> None:
    config = AgentConfig(llm=QuestionEngine(tmp_path))
    with pytest.raises(ValueError, match='workers must be at least 1'):
        run_batch(config, tasks(1), tmp_path / 'out.jsonl', workers=0)
    with pytest.raises(ValueError, match='max_attempts must be at least 1'):
        run_batch(config, tasks(1), tmp_path / 'out.jsonl', max_attempts=0)


# ---------------------------------------------------------------------- the agent config


def test_agent_config_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="llm config needs a 'type'"):
        AgentConfig(llm={'path': 'x'})
    with pytest.raises(ValueError, match="ScriptedLLM does not take 'colour'"):
        AgentConfig(llm={'type': 'ScriptedLLM', 'replies': [], 'colour': 'red'})
    with pytest.raises(ValueError, match='unknown engine'):
        AgentConfig(llm={'type': 'NoSuchEngine'})
    with pytest.raises(ValueError, match="unknown agent 'Nobody'"):
        AgentConfig(llm={'type': 'ScriptedLLM', 'replies': []}, agent='Nobody')
    with pytest.raises(ValueError, match="agent 'nowhere:Agent': no module named 'nowhere'"):
        AgentConfig(llm={'type': 'ScriptedLLM', 'replies': []}, agent='nowhere:Agent')
    with pytest.raises(ValueError, match='llm must be an engine config'):
        AgentConfig(llm='ScriptedLLM')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='tools must be a list'):
        AgentConfig(llm={'type': 'ScriptedLLM', 'replies': []}, tools='calculator')  # type: ignore[arg-type]


def test_agent_config_builds_any_agent_with_its_options() -> None:
    config = AgentConfig(
        llm={'type': 'ScriptedLLM', 'replies': ['Final Answer: 4']},
        agent='ReAct',
        tools=[Calculator()],
        options={'max_turn': 3, 'temperature': 0},
    )
    agent = config.build()
    assert isinstance(agent, ReAct) and agent.max_turn == 3 and agent.gen_params == {'temperature': 0}
    assert agent.chat('What is 2 + 2?').answer == '4'
    assert resolve_agent('lagent.agents:ReAct') is ReAct
    assert resolve_agent(FunctionCallAgent) is FunctionCallAgent


def test_gpu_needs_follow_the_engine_config() -> None:
    assert gpus_needed({'type': 'LMDeployPipeline', 'path': 'm', 'tp': 2}) == 2
    assert gpus_needed({'type': 'lmdeploy-server', 'path': 'm'}) == 1
    assert gpus_needed({'type': 'HFTransformer', 'path': 'm', 'device': 'cuda:1'}) == 1
    assert gpus_needed({'type': 'HFTransformer', 'path': 'm', 'device': 'cpu'}) == 0
    assert gpus_needed({'type': 'LMDeployClient', 'url': 'http://x'}) == 0
    assert gpus_needed(lambda: None) == 0  # type: ignore[arg-type,return-value]


def test_importing_lagent_distributed_does_not_import_ray_and_a_missing_ray_names_the_extra(tmp_path: Path) -> None:
    code = (
        'import sys\n'
        'import lagent.distributed as d\n'
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "sys.modules['ray'] = None  # as if it were not installed\n"
        "config = d.AgentConfig(llm={'type': 'ScriptedLLM', 'replies': ['a']})\n"
        "d.run_batch(config, [{'id': 1, 'question': 'q'}], sys.argv[1], ray=True)\n"
    )
    result = subprocess.run(
        [sys.executable, '-c', code, str(tmp_path / 'out.jsonl')], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert 'MissingExtraError: ray is not installed; install it with: pip install "lagent[ray]"' in result.stderr


# ---------------------------------------------------------------------- lagent batch


def lagent(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    return subprocess.run(
        [sys.executable, '-m', 'lagent', *args], capture_output=True, text=True, timeout=240, cwd=cwd, env=environment
    )


def test_lagent_batch_runs_resumes_and_reports_failures(tmp_path: Path) -> None:
    replies = {'type': 'ScriptedLLM', 'replies': ['Final answer.'] * 20, 'stop_words': ['never']}
    (tmp_path / 'engine.json').write_text(json.dumps(replies))
    lines = [json.dumps(task) for task in tasks(6)]
    (tmp_path / 'tasks.jsonl').write_text('\n'.join(lines[:4]) + '\n')
    common = ['--config', 'engine.json', '--tools', 'calculator', '--max-turn', '2', '--no-progress']
    first = lagent('batch', 'tasks.jsonl', '--out', 'out.jsonl', '--workers', '2', *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert 'lagent batch: 4 tasks: 4 done, 0 already in out.jsonl, 0 failed' in first.stdout
    (tmp_path / 'tasks.jsonl').write_text('\n'.join(lines) + '\n')
    second = lagent('batch', 'tasks.jsonl', '--out', 'out.jsonl', '--workers', '3', *common, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert 'lagent batch: 6 tasks: 2 done, 4 already in out.jsonl, 0 failed' in second.stdout
    records = assert_each_id_once(tmp_path / 'out.jsonl', set(range(6)))
    assert {record['answer'] for record in records} == {'Final answer.'}
    # each worker has its own ScriptedLLM: 2 replies left in a one-reply script fail the third task of a worker
    (tmp_path / 'engine.json').write_text(json.dumps({**replies, 'replies': ['ok']}))
    (tmp_path / 'more.jsonl').write_text('\n'.join(json.dumps(task) for task in tasks(3)) + '\n')
    third = lagent('batch', 'more.jsonl', '--out', 'more_out.jsonl', *common, cwd=tmp_path)
    assert third.returncode == 1
    assert 'lagent batch: 3 tasks: 1 done, 0 already in more_out.jsonl, 2 failed' in third.stdout
    assert 'lagent: task 1 failed: LLMError: ScriptedLLM ran out of replies' in third.stderr
    assert len(results(tmp_path / 'more_out.jsonl')) == 1


def test_lagent_batch_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / 'tasks.jsonl').write_text('{"id": 1}\n')
    result = lagent('batch', 'tasks.jsonl', '--out', 'out.jsonl', cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ['lagent: error: tasks.jsonl:1: "question" must be a string, got null']
    help_text = lagent('batch', '--help', cwd=tmp_path)
    assert help_text.returncode == 0 and '--ray [ADDRESS]' in help_text.stdout and '--max-turn' in help_text.stdout
