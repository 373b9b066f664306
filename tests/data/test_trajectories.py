"""Reading agent runs and conversations from files, and choosing which to learn from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lagent.actions.calculator import Calculator
from lagent.agents import AgentMemory, FunctionCallAgent
from lagent.data import Trajectory, TrajectoryFilter, load_trajectories, read_trajectories
from lagent.llms import ScriptedLLM
from lagent.schema import FunctionCall, ToolCall

HELLO = [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'}]
TOOLS = [{'type': 'function', 'function': {'name': 'clock', 'parameters': {'type': 'object', 'properties': {}}}}]


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding='utf-8')
    return path


def test_a_memory_saved_by_a_real_agent_run(tmp_path):
    call = ToolCall(id='c1', function=FunctionCall(name='Calculator', arguments='{"expression": "6*7"}'))
    agent = FunctionCallAgent(ScriptedLLM([call, 'It is 42.']), [Calculator()])
    agent.chat('What is 6*7?')
    agent.memory.save(tmp_path / 'run.json')
    (trajectory,) = read_trajectories(tmp_path / 'run.json')
    assert [message.role for message in trajectory.messages] == ['user', 'assistant', 'tool', 'assistant']
    assert trajectory.messages[1].tool_calls[0].function.name == 'Calculator'
    assert trajectory.messages[2].content == '42'
    assert trajectory.status is None and trajectory.tools is None and not trajectory.failed
    assert trajectory.source == str(tmp_path / 'run.json')


def test_every_file_form(tmp_path):
    record = {'messages': HELLO, 'tools': TOOLS, 'status': 'END'}
    memory = json.loads(AgentMemory(HELLO).to_json())
    files = [
        write(tmp_path / 'record.json', record),
        write(tmp_path / 'messages.json', HELLO),
        write(tmp_path / 'records.json', [record, {'messages': HELLO}]),
        write(tmp_path / 'memory.json', memory),
    ]
    lines = tmp_path / 'runs.jsonl'
    lines.write_text(f'{json.dumps(record)}\n\n{json.dumps(HELLO)}\n{json.dumps(memory)}\n', encoding='utf-8')
    trajectories = list(load_trajectories([*files, lines]))
    assert len(trajectories) == 8
    assert all(trajectory.to_openai() == HELLO for trajectory in trajectories)
    assert [t.source.rsplit('/', 1)[-1] for t in trajectories] == [
        'record.json', 'messages.json', 'records.json[0]', 'records.json[1]', 'memory.json',
        'runs.jsonl:1', 'runs.jsonl:3', 'runs.jsonl:4',
    ]  # fmt: skip
    assert trajectories[0].tools == TOOLS and trajectories[0].status == 'END'


@pytest.mark.parametrize(
    ('status', 'name', 'failed'),
    [
        ('END', 'END', False),
        ('end', 'END', False),
        (0, 'END', False),
        ('success', 'SUCCESS', False),
        (-3, 'SESSION_OUT_OF_LIMIT', True),
        ('SESSION_OUT_OF_LIMIT', 'SESSION_OUT_OF_LIMIT', True),
        ('failed', 'FAILED', True),
        (None, None, False),
    ],
)
def test_statuses_are_read_as_names(tmp_path, status, name, failed):
    (trajectory,) = read_trajectories(write(tmp_path / 'r.json', {'messages': HELLO, 'status': status}))
    assert trajectory.status == name
    assert trajectory.failed is failed


@pytest.mark.parametrize(
    'ending',
    [
        [{'role': 'user', 'content': 'Hi'}],  # no answer
        [*HELLO[:1], {'role': 'assistant', 'content': '   '}],  # an empty answer
        [*HELLO[:1], {'role': 'assistant', 'tool_calls': [{'id': 'c', 'function': {'name': 'clock'}}]}],  # cut off
        [*HELLO, {'role': 'tool', 'tool_call_id': 'c', 'content': 'noon'}],
    ],
)
def test_a_run_without_a_final_answer_failed_whatever_its_status(ending):
    trajectory = Trajectory(messages=AgentMemory(ending).messages)
    assert trajectory.failed


@pytest.mark.parametrize(
    ('data', 'message'),
    [
        ({'messages': []}, r'r\.json: a conversation record needs a non-empty "messages" list'),
        ({'messages': [{'role': 'user', 'content': 5}]}, r'r\.json: message 0 is malformed: content'),
        ({'messages': HELLO, 'tools': {'a': 1}}, r'"tools" must be a list of tool schemas'),
        ({'messages': HELLO, 'status': 42}, r'42 is not an agent status code'),
        ({'messages': HELLO, 'status': True}, r'"status" must be a name or a number'),
        ({'version': 7, 'messages': HELLO}, r'unsupported agent memory version 7'),
        ([{'messages': HELLO}, 3], r'r\.json\[1\]: expected a conversation record, got int'),
        ('text', r'r\.json: expected a conversation'),
    ],
)
def test_malformed_files_name_the_problem_and_the_place(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        list(read_trajectories(write(tmp_path / 'r.json', data)))


def test_a_bad_jsonl_line_is_named_by_its_number(tmp_path):
    path = tmp_path / 'runs.jsonl'
    path.write_text(json.dumps(HELLO) + '\n{"messages": [\n', encoding='utf-8')
    with pytest.raises(ValueError, match=r'runs\.jsonl:2: not valid JSON'):
        list(read_trajectories(path))


def test_the_filter_keeps_by_status_drops_failed_runs_and_duplicates():
    def run(status: str | None, answer: str = 'Hello!', *, finished: bool = True) -> Trajectory:
        messages = [HELLO[0], {'role': 'assistant', 'content': answer}] if finished else HELLO[:1]
        return Trajectory(messages=AgentMemory(messages).messages, status=status)

    runs = [
        run('END'),
        run('END'),
        run('END', 'Hey!'),
        run('SESSION_OUT_OF_LIMIT'),
        run(None),
        run('END', finished=False),
    ]
    keep_end = TrajectoryFilter(statuses=['end'])
    assert [t.status for t in keep_end(runs)] == ['END'] * 4
    assert keep_end.counts == {'status': 2}
    everything = TrajectoryFilter(drop_failed=True, deduplicate=True)
    kept = list(everything(runs))
    assert [t.messages[-1].content for t in kept] == ['Hello!', 'Hey!']
    assert everything.counts == {'duplicate': 2, 'failed': 2}  # the status is not part of the conversation


def test_duplicates_differ_by_tools_too():
    plain = Trajectory(messages=AgentMemory(HELLO).messages)
    with_tools = Trajectory(messages=AgentMemory(HELLO).messages, tools=TOOLS)
    assert plain.fingerprint() != with_tools.fingerprint()
    assert plain.fingerprint() == Trajectory(messages=AgentMemory(HELLO).messages, status='END').fingerprint()
