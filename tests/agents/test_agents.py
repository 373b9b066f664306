"""Every agent path, exactly, with scripted replies: the same scenarios run on
ReAct, FunctionCallAgent (native and text-parsed tool calls) and Internlm2Agent."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from lagent.actions import ActionExecutor, tool
from lagent.agents import AgentMemory, BaseAgent, FunctionCallAgent, Internlm2Agent, ReAct
from lagent.errors import LLMError
from lagent.llms.scripted import ScriptedLLM
from lagent.schema import ActionStatusCode, AgentStatusCode, FunctionCall, ToolCall
from tests.agents.checks import assert_well_formed


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


@tool
def boom() -> str:
    """Always fails."""
    raise RuntimeError('kaput')


@tool
def slow(seconds: float) -> str:
    """Sleep, then say so.

    Args:
        seconds: How long to sleep.
    """
    time.sleep(seconds)
    return 'done'


def request_text(request: Any) -> str:
    """A request as text: the prompt itself, or the messages as JSON."""
    return request if isinstance(request, str) else json.dumps(request)


class Dialect:
    """How one agent protocol writes a tool call, an answer and a malformed call."""

    name = ''
    llm_kwargs: dict[str, Any] = {}  # noqa: RUF012 (read only)

    def __init__(self) -> None:
        self.ids = itertools.count(1)

    def agent(self, replies: list[Any], tools: Any = (add, boom, slow), **kwargs: Any) -> BaseAgent:
        raise NotImplementedError

    def call(self, name: str, arguments: str) -> Any:
        raise NotImplementedError

    def answer(self, text: str) -> Any:
        return text

    def malformed(self) -> Any:
        raise NotImplementedError

    def shows(self, request: Any, observation: str) -> bool:
        """Whether the request shows the model ``observation`` as a tool result."""
        raise NotImplementedError


class ReActDialect(Dialect):
    name = 'react'

    def agent(self, replies, tools=(add, boom, slow), **kwargs):
        return ReAct(ScriptedLLM(replies, chunk_size=3), tools, **kwargs)

    def call(self, name, arguments):
        return f'Thought: I should use {name}.\nAction: {name}\nAction Input: {arguments}\n'

    def answer(self, text):
        return f'Thought: I know it now.\nFinal Answer: {text}'

    def malformed(self):
        return 'Thought: add them.\nAction: add\nAction Input: {"a": 2, "b":'

    def shows(self, request, observation):
        return {'role': 'user', 'content': f'Observation: {observation}'} in request


class NativeDialect(Dialect):
    name = 'native'

    def agent(self, replies, tools=(add, boom, slow), **kwargs):
        agent = FunctionCallAgent(ScriptedLLM(replies, chunk_size=3), tools, **kwargs)
        assert agent.native
        return agent

    def call(self, name, arguments):
        return ToolCall(id=f'call-{next(self.ids)}', function=FunctionCall(name=name, arguments=arguments))

    def malformed(self):
        return self.call('add', '{"a": 2, "b":')

    def shows(self, request, observation):
        return any(message['role'] == 'tool' and message['content'] == observation for message in request)


class TextDialect(Dialect):
    name = 'text'

    def agent(self, replies, tools=(add, boom, slow), **kwargs):
        agent = FunctionCallAgent(ScriptedLLM(replies, chunk_size=3, meta_template='chatml'), tools, **kwargs)
        assert not agent.native
        return agent

    def call(self, name, arguments):
        return f'Let me call {name}.\n<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'

    def malformed(self):
        return '<tool_call>\n{"name": "add", "arguments": {"a": 2,\n</tool_call>'

    def shows(self, request, observation):
        return f'<|im_start|>user\n<tool_response>\n{observation}\n</tool_response><|im_end|>' in request


class Internlm2Dialect(Dialect):
    name = 'internlm2'

    def agent(self, replies, tools=(add, boom, slow), **kwargs):
        return Internlm2Agent(ScriptedLLM(replies, chunk_size=3), tools, **kwargs)

    def call(self, name, arguments):
        return f'I will use {name}.<|action_start|><|plugin|>\n{{"name": "{name}", "parameters": {arguments}}}<|action_end|>\n'

    def malformed(self):
        return '<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 2,<|action_end|>'

    def shows(self, request, observation):
        return f'<|im_start|>environment name=<|plugin|>\n{observation}<|im_end|>\n' in request


DIALECTS = [ReActDialect, NativeDialect, TextDialect, Internlm2Dialect]


@pytest.fixture(params=DIALECTS, ids=lambda cls: cls.name)
def dialect(request: pytest.FixtureRequest) -> Dialect:
    return request.param()


def run(agent: BaseAgent, message: str = 'What is 2 + 3?') -> tuple[list[Any], Any]:
    events = list(agent.stream_chat(message))
    assert_well_formed(events, agent.max_turn)
    return events, events[-1]


# ---------------------------------------------------------------------- the loop


def test_tool_call_then_result_then_answer(dialect: Dialect) -> None:
    agent = dialect.agent([dialect.call('add', '{"a": 2, "b": 3}'), dialect.answer('It is 5.')])
    result = agent.chat('What is 2 + 3?')
    assert result.status == AgentStatusCode.END
    assert result.answer == 'It is 5.'
    assert [call.function.name for call in result.tool_calls] == ['add']
    assert json.loads(result.tool_calls[0].function.arguments) == {'a': 2, 'b': 3}
    [returned] = result.tool_results
    assert returned.state == ActionStatusCode.SUCCESS and returned.format_result() == '5'
    assert result.turns == 2
    assert dialect.shows(agent.llm.requests[1], '5')
    assert 'What is 2 + 3?' in request_text(agent.llm.requests[0])


def test_bad_json_is_shown_to_the_model(dialect: Dialect) -> None:
    agent = dialect.agent([dialect.malformed(), dialect.answer('Sorry.')])
    result = agent.chat('Add 2 and 3.')
    [returned] = result.tool_results
    assert returned.state == ActionStatusCode.ARGS_ERROR
    assert returned.errmsg and 'JSON' in returned.errmsg
    assert dialect.shows(agent.llm.requests[1], returned.errmsg)
    assert result.status == AgentStatusCode.END and result.answer == 'Sorry.'


def test_unknown_tool_is_shown_with_the_tool_names(dialect: Dialect) -> None:
    agent = dialect.agent([dialect.call('nope', '{}'), dialect.answer('ok')])
    result = agent.chat('Use nope.')
    [returned] = result.tool_results
    assert returned.state == ActionStatusCode.INVALID_ACTION
    assert 'add' in returned.errmsg and 'boom' in returned.errmsg
    assert dialect.shows(agent.llm.requests[1], returned.errmsg)
    assert result.answer == 'ok'


def test_raising_tool_is_shown_to_the_model(dialect: Dialect) -> None:
    agent = dialect.agent([dialect.call('boom', '{}'), dialect.answer('It failed.')])
    result = agent.chat('Explode.')
    [returned] = result.tool_results
    assert returned.state == ActionStatusCode.API_ERROR and 'kaput' in returned.errmsg
    assert dialect.shows(agent.llm.requests[1], returned.errmsg)
    assert result.answer == 'It failed.'


def test_tool_timeout_is_shown_to_the_model(dialect: Dialect) -> None:
    executor = ActionExecutor([add, boom, slow], timeout=0.2)
    agent = dialect.agent([dialect.call('slow', '{"seconds": 1.5}'), dialect.answer('Too slow.')], tools=executor)
    started = time.monotonic()
    result = agent.chat('Wait.')
    assert time.monotonic() - started < 1.4  # the agent did not wait for the tool
    [returned] = result.tool_results
    assert returned.state == ActionStatusCode.API_ERROR and 'timed out' in returned.errmsg
    assert dialect.shows(agent.llm.requests[1], returned.errmsg)


def test_max_turn_ends_the_run_with_a_status_and_a_reason(dialect: Dialect) -> None:
    replies = [dialect.call('add', '{"a": 1, "b": 1}') for _ in range(3)]
    agent = dialect.agent(replies, max_turn=2)
    _events, final = run(agent)
    assert final.status == AgentStatusCode.SESSION_OUT_OF_LIMIT
    assert 'still called a tool in its last allowed reply' in final.errmsg
    assert len(agent.llm.requests) == 2 and len(agent.llm.remaining) == 1
    result = dialect.agent(replies, max_turn=2).chat('again')  # the same through chat
    assert result.status == AgentStatusCode.SESSION_OUT_OF_LIMIT and result.turns == 2
    assert len(result.tool_results) == 1  # the call in the last reply is not run
    assert result.errmsg == final.errmsg


def asked_to_answer(agent: BaseAgent, index: int) -> bool:
    """Whether request ``index`` asked for the answer: natively by ``tool_choice='none'``,
    else by the final prompt (after the question and the tool results)."""
    if isinstance(agent, FunctionCallAgent) and agent.native:
        return agent.llm.tool_choices_seen[index] == 'none'
    return agent.final_prompt in request_text(agent.llm.requests[index])


def test_the_last_allowed_reply_is_asked_to_answer(dialect: Dialect) -> None:
    agent = dialect.agent([dialect.call('add', '{"a": 2, "b": 3}'), dialect.answer('5')], max_turn=2)
    result = agent.chat('What is 2 + 3?')
    assert result.status == AgentStatusCode.END and result.answer == '5' and result.errmsg is None
    assert asked_to_answer(agent, 1) and not asked_to_answer(agent, 0)
    assert agent.final_prompt not in request_text([m.to_openai() for m in agent.memory.messages])  # not kept
    if not (isinstance(agent, FunctionCallAgent) and agent.native):  # the question and results come again
        assert (
            'The question: What is 2 + 3?\nResults of the tools you called:\n- add({"a": 2, "b": 3}): 5'
            in request_text(agent.llm.requests[1]).replace('\\n', '\n').replace('\\"', '"')
        )


def test_a_repeated_call_is_the_cue_to_answer(dialect: Dialect) -> None:
    call = dialect.call('add', '{"a": 2, "b": 3}')
    again = dialect.call('add', '{"b": 3, "a": 2}')  # the same arguments in another order
    agent = dialect.agent([call, again, dialect.answer('5')], max_turn=5)
    result = agent.chat('What is 2 + 3?')
    assert result.answer == '5' and result.turns == 3 and len(result.tool_results) == 2
    assert asked_to_answer(agent, 2) and not asked_to_answer(agent, 1)


def test_an_empty_reply_is_not_an_answer(dialect: Dialect) -> None:
    agent = dialect.agent(['', dialect.answer('5')], max_turn=4)
    result = agent.chat('What is 2 + 3?')
    assert result.status == AgentStatusCode.END and result.answer == '5' and result.turns == 2
    assert asked_to_answer(agent, 1)  # the next reply is the last one
    failed = dialect.agent(['', ''], max_turn=4).chat('What is 2 + 3?')
    assert failed.status == AgentStatusCode.SESSION_OUT_OF_LIMIT and failed.turns == 2
    assert 'empty reply' in failed.errmsg


def test_llm_errors_are_raised(dialect: Dialect) -> None:
    agent = dialect.agent([dialect.call('add', '{"a": 1, "b": 1}')])
    with pytest.raises(LLMError, match='ran out of replies'):
        agent.chat('hi')


# ---------------------------------------------------------------------- streaming, async, memory


def test_stream_events_are_well_formed(dialect: Dialect) -> None:
    agent = dialect.agent([dialect.call('add', '{"a": 2, "b": 3}'), dialect.answer('Five, as the tool said.')])
    events, _final = run(agent)
    kinds = [event.kind for event in events if event.kind != 'text_delta']
    assert kinds == ['model_reply', 'tool_call', 'tool_result', 'model_reply', 'final_answer']
    statuses = [event.status for event in events if event.kind != 'text_delta']
    assert statuses == [
        AgentStatusCode.PLUGIN_END,
        AgentStatusCode.PLUGIN_START,
        AgentStatusCode.PLUGIN_RETURN,
        AgentStatusCode.STREAM_ING,
        AgentStatusCode.END,
    ]
    deltas = sum(event.kind == 'text_delta' for event in events)
    if dialect.name == 'native':  # replies that may call a tool are requested whole by default
        assert deltas == 1
    else:
        assert deltas > 2  # the answer arrived in pieces


def test_native_replies_stream_when_allowed() -> None:
    llm = ScriptedLLM(
        [ToolCall(id='c', function=FunctionCall(name='add', arguments='{"a": 1, "b": 2}')), 'Three!'], chunk_size=2
    )
    events = list(FunctionCallAgent(llm, [add], stream_auto_tools=True).stream_chat('1 + 2?'))
    assert_well_formed(events, 5)
    assert [event.text for event in events if event.kind == 'text_delta'] == ['Th', 're', 'e!']


def test_stopping_the_stream_early_is_clean(dialect: Dialect) -> None:
    agent = dialect.agent([dialect.call('add', '{"a": 2, "b": 3}'), dialect.answer('5')])
    stream = agent.stream_chat('What is 2 + 3?')
    first = next(iter(stream))
    assert first.turn == 1
    stream.close()
    assert len(agent.llm.requests) == 1


async def test_sync_and_async_give_the_same_events(dialect: Dialect) -> None:
    dialect.ids = itertools.count(1)

    def script() -> list[Any]:
        return [
            dialect.malformed(),
            dialect.call('add', '{"a": 2, "b": 3}'),
            dialect.call('boom', '{}'),
            dialect.answer('5'),
        ]

    sync_events = list(dialect.agent(script()).stream_chat('What is 2 + 3?'))
    dialect.ids = itertools.count(1)  # the same call ids again
    async_agent = dialect.agent(script())
    async_events = [event async for event in async_agent.astream_chat('What is 2 + 3?')]
    assert [event.model_dump() for event in async_events] == [event.model_dump() for event in sync_events]
    result = await dialect.agent(script()).achat('What is 2 + 3?')
    assert result.answer == '5' and result.turns == 4


def test_memory_save_and_load_round_trip(dialect: Dialect, tmp_path) -> None:
    agent = dialect.agent([dialect.call('add', '{"a": 2, "b": 3}'), dialect.answer('It is 5.')])
    agent.chat('What is 2 + 3?')
    path = tmp_path / 'memory.json'
    agent.memory.save(path)
    loaded = AgentMemory.load(path)
    assert loaded.messages == agent.memory.messages
    assert AgentMemory.from_json(agent.memory.to_json()).messages == agent.memory.messages

    follow_up = dialect.agent([dialect.answer('Still 5.')], memory=loaded)
    assert follow_up.chat('And again?').answer == 'Still 5.'
    request = follow_up.llm.requests[0]
    assert 'What is 2 + 3?' in request_text(request) and 'It is 5.' in request_text(request)
    assert dialect.shows(request, '5')
    assert len(follow_up.memory) == len(agent.memory) + 2


def test_agents_share_no_state(dialect: Dialect) -> None:
    first = dialect.agent([dialect.answer('one')])
    second = dialect.agent([dialect.answer('two')])
    assert first.memory is not second.memory
    first.chat('hello')
    assert len(first.memory) == 2 and len(second.memory) == 0
    assert second.chat('hi').answer == 'two'
    assert 'hello' not in request_text(second.llm.requests[0])
    first.reset()
    assert len(first.memory) == 0


def test_memory_rejects_garbage() -> None:
    with pytest.raises(ValueError, match='not a saved agent memory'):
        AgentMemory.from_json('[1, 2]')
    with pytest.raises(ValueError, match='version'):
        AgentMemory.from_json('{"version": 99, "messages": []}')
    with pytest.raises(ValueError, match='malformed'):
        AgentMemory.from_json('{"version": 1, "messages": [{"content": "no role"}]}')


def test_constructor_validates() -> None:
    with pytest.raises(TypeError, match='BaseLLM'):
        ReAct(object(), [add])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='max_turn'):
        ReAct(ScriptedLLM([]), [add], max_turn=0)
    with pytest.raises(ValueError, match='temperatur'):
        ReAct(ScriptedLLM([]), [add], temperatur=0)


# ---------------------------------------------------------------------- ReAct parsing


@pytest.mark.parametrize(
    ('reply', 'arguments'),
    [
        ('Thought: add\nAction: add\nAction Input: {"a": 2, "b": 3}', {'a': 2, 'b': 3}),
        ('  thought :  add \n  ACTION :   add  \n action input :\n```json\n{"a": 2, "b": 3}\n```\n', {'a': 2, 'b': 3}),
        ('Action: add\nAction Input: {"a": 2, "b": 3} and then more text', {'a': 2, 'b': 3}),
        ('Action: `add`\nAction Input: {"a": 2, "b": 3}\nObservation: made up', {'a': 2, 'b': 3}),
    ],
)
def test_react_parser_is_lenient(reply: str, arguments: dict[str, Any]) -> None:
    agent = ReAct(ScriptedLLM([reply, 'Final Answer: 5']), [add])
    result = agent.chat('2 + 3?')
    assert json.loads(result.tool_calls[0].function.arguments) == arguments
    assert result.tool_results[0].format_result() == '5'


def test_react_plain_action_input_goes_to_the_first_parameter() -> None:
    @tool
    def shout(text: str) -> str:
        """Shout.

        Args:
            text: What to shout.
        """
        return text.upper()

    agent = ReAct(ScriptedLLM(['Action: shout\nAction Input: hello there', 'Final Answer: done']), [shout])
    result = agent.chat('shout')
    assert result.tool_results[0].format_result() == 'HELLO THERE'


def test_react_reply_without_final_answer_is_the_answer() -> None:
    agent = ReAct(ScriptedLLM(['Thought: The answer is 5.']), [add])
    result = agent.chat('2 + 3?')
    assert result.answer == 'The answer is 5.' and result.status == AgentStatusCode.END


def test_react_sends_its_stop_word_and_tools() -> None:
    llm = ScriptedLLM(['Final Answer: 5'])
    ReAct(llm, [add]).chat('2 + 3?')
    system = llm.requests[0][0]
    assert system['role'] == 'system' and 'add' in system['content'] and 'Action Input:' in system['content']
    agent = ReAct(llm, [add], stop_words=['END'])
    assert agent._settings({})['stop_words'] == ('END', 'Observation:')


def test_react_action_without_a_name_is_shown_to_the_model() -> None:
    llm = ScriptedLLM(['Action:\nAction Input: {}', 'Final Answer: ok'])
    result = ReAct(llm, [add]).chat('hm')
    assert result.tool_results[0].state == ActionStatusCode.ARGS_ERROR
    assert 'names no tool' in llm.requests[1][-1]['content']


# ---------------------------------------------------------------------- FunctionCallAgent specifics


def test_native_path_sends_tool_schemas() -> None:
    llm = ScriptedLLM(['hi'])
    FunctionCallAgent(llm, [add]).chat('hello')
    assert llm.tools_seen[0] == ActionExecutor([add]).tool_schemas()


def test_text_path_renders_tools_into_the_prompt() -> None:
    llm = ScriptedLLM(['hi'], meta_template='chatml')
    agent = FunctionCallAgent(llm, [add])
    agent.chat('hello')
    prompt = llm.requests[0]
    assert llm.tools_seen[0] is None
    assert '<tools>' in prompt and json.dumps(agent.executor.tool_schemas()[0]['function']) in prompt
    assert agent._settings({})['stop_words'] == ('<|im_end|>', '<tool_response>')


def test_native_needs_an_engine_that_sends_tools() -> None:
    with pytest.raises(ValueError, match='natively'):
        FunctionCallAgent(ScriptedLLM([], meta_template='chatml'), [add], native=True)
    assert not FunctionCallAgent(ScriptedLLM([]), [add], native=False).native


def test_tool_choice_applies_to_the_first_reply_and_streams_only_when_safe() -> None:
    agent = FunctionCallAgent(ScriptedLLM([]), [add, boom], tool_choice='add', next_tool_choice='none')
    first, later = agent._model_request(1, False), agent._model_request(2, False)
    assert first.tool_choice == {'type': 'function', 'function': {'name': 'add'}} and first.stream
    assert later.tool_choice == 'none' and later.stream
    auto = FunctionCallAgent(ScriptedLLM([]), [add, boom])._model_request(1, False)
    assert auto.tool_choice == 'auto' and not auto.stream
    assert FunctionCallAgent(ScriptedLLM([]), [add, boom], stream_auto_tools=True)._model_request(1, False).stream
    last = FunctionCallAgent(ScriptedLLM([]), [add, boom], tool_choice='required')._model_request(1, True)
    assert last.tool_choice == 'none' and last.stream  # the last allowed reply never calls a tool


def test_with_one_tool_the_default_is_call_it_then_answer() -> None:
    agent = FunctionCallAgent(ScriptedLLM([]), [add])
    assert agent._model_request(1, False).tool_choice == {'type': 'function', 'function': {'name': 'add'}}
    assert agent._model_request(2, False).tool_choice == 'none'
    assert FunctionCallAgent(ScriptedLLM([]), [add], tool_choice='auto')._model_request(1, False).tool_choice == 'auto'
    with pytest.raises(ValueError, match='not a tool'):
        FunctionCallAgent(ScriptedLLM([]), [add], tool_choice={'type': 'function', 'function': {'name': 'x'}})
    with pytest.raises(ValueError, match='tool name'):
        FunctionCallAgent(ScriptedLLM([]), [add], tool_choice='sometimes')


def test_text_path_parses_several_calls() -> None:
    reply = (
        '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>\n'
        '<tool_call>\n{"name": "add", "arguments": "{\\"a\\": 3, \\"b\\": 4}"}\n</tool_call>'
    )
    llm = ScriptedLLM([reply, 'done'], meta_template='chatml')
    result = FunctionCallAgent(llm, [add]).chat('sums')
    assert [r.format_result() for r in result.tool_results] == ['3', '7']
    assert [step.call_id for step in result.steps if step.kind == 'tool_result'] == ['call_1_0', 'call_1_1']


# ---------------------------------------------------------------------- Internlm2Agent specifics


def test_internlm2_prompt_follows_the_protocol() -> None:
    llm = ScriptedLLM(
        ['<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 2, "b": 3}}<|action_end|>', '5']
    )
    agent = Internlm2Agent(llm, [add])
    agent.chat('2 + 3?')
    first, second = llm.requests
    assert '<|im_start|>system name=<|plugin|>\n' in first and '"name": "add"' in first
    assert first.endswith('<|im_start|>user\n2 + 3?<|im_end|>\n<|im_start|>assistant\n')
    expected_call = (
        '<|im_start|>assistant\n<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 2, "b": 3}}'
        '<|action_end|>\n<|im_end|>\n<|im_start|>environment name=<|plugin|>\n5<|im_end|>\n<|im_start|>assistant\n'
    )
    assert second.endswith(expected_call)
    assert agent._settings({})['stop_words'] == ('<|action_end|>', '<|im_end|>')


def test_internlm2_uses_the_llm_template_when_it_has_one() -> None:
    llm = ScriptedLLM(['5'], meta_template='internlm2')
    Internlm2Agent(llm, [add]).chat('2 + 3?')
    assert '<|im_start|>system name=<|plugin|>\n' in llm.requests[0]
    with pytest.raises(ValueError, match='environment'):
        Internlm2Agent(ScriptedLLM([], meta_template='chatml'), [add])


def test_internlm2_interpreter_runs_code() -> None:
    from lagent.actions import PythonInterpreter

    reply = 'Let me compute.<|action_start|><|interpreter|>\n```python\nprint(6 * 7)\n```<|action_end|>'
    llm = ScriptedLLM([reply, 'It is 42.'])
    with PythonInterpreter() as interpreter:
        agent = Internlm2Agent(llm, [add], interpreter=interpreter)
        events, final = run(agent, 'What is 6 * 7?')
    statuses = [event.status for event in events if event.kind in ('model_reply', 'tool_call', 'tool_result')]
    assert statuses[:3] == [AgentStatusCode.CODE_END, AgentStatusCode.CODING, AgentStatusCode.CODE_RETURN]
    result = next(event for event in events if event.kind == 'tool_result')
    assert result.result.state == ActionStatusCode.SUCCESS and '42' in result.observation
    assert '<|im_start|>system name=<|interpreter|>\n' in llm.requests[0]
    assert '<|im_start|>environment name=<|interpreter|>\n' in llm.requests[1]
    assert '```python\nprint(6 * 7)\n```<|action_end|>' in llm.requests[1]
    assert final.text == 'It is 42.'


def test_internlm2_code_without_an_interpreter_is_shown_to_the_model() -> None:
    reply = '<|action_start|><|interpreter|>\n```python\nprint(1)\n```<|action_end|>'
    llm = ScriptedLLM([reply, 'ok'])
    result = Internlm2Agent(llm, [add]).chat('run it')
    assert result.tool_results[0].state == ActionStatusCode.ARGS_ERROR
    assert 'No code interpreter' in llm.requests[1]
