"""lagent 0.2 agent code, run unchanged with scripted replies: ReAct, ReWOO,
AutoGPT and Internlm2Agent built with the original keywords and protocols,
``chat`` results read as ``AgentReturn``, and ``stream_chat(history)`` snapshots."""

from __future__ import annotations

import itertools
import json
import warnings

import pytest

from lagent.actions import ActionExecutor, PythonInterpreter
from lagent.actions.calculator import Calculator
from lagent.agents import AutoGPT, AutoGPTProtocol, FunctionCallAgent, ReAct, ReActProtocol, ReWOO, ReWOOProtocol
from lagent.agents.internlm2_agent import INTERPRETER_CN, META_CN, PLUGIN_CN, Internlm2Agent, Internlm2Protocol
from lagent.agents.react import CALL_PROTOCOL_CN, FORCE_STOP_PROMPT_CN
from lagent.agents.rewoo import PLANNER_PROMPT_CN
from lagent.llms import ScriptedLLM
from lagent.schema import ActionStatusCode, AgentReturn, AgentStatusCode

INTERNLM2_TOOL = dict(
    begin='{start_token}{name}\n',
    start_token='<|action_start|>',
    name_map=dict(plugin='<|plugin|>', interpreter='<|interpreter|>'),
    belong='assistant',
    end='<|action_end|>\n',
)


def executor() -> ActionExecutor:
    return ActionExecutor(actions=[Calculator()])


# ---------------------------------------------------------------------- ReAct


def test_react_with_the_original_keywords_and_result() -> None:
    llm = ScriptedLLM(
        ['Thought: I add.\nAction: Calculator\nAction Input: {"expression": "2 + 3"}', 'Thought: done\nFinal Answer: 5']
    )
    with pytest.warns(DeprecationWarning, match=r'ReAct\(action_executor=...\) is the lagent 0.2 API: pass tools'):
        agent = ReAct(llm=llm, action_executor=executor(), protocol=ReActProtocol(), max_turn=3)
    result = agent.chat('What is 2 + 3?')
    assert result.response == '5' and result.state == AgentStatusCode.END
    [action] = result.actions
    assert action.type == 'Calculator' and action.thought == 'I add.' and action.format_result() == '5'
    assert [step['role'] for step in result.inner_steps] == ['assistant', 'user', 'assistant']
    assert result.inner_steps[1] == {'role': 'user', 'content': 'Observation: 5'}


def test_a_lagent_02_agent_starts_each_chat_afresh() -> None:
    llm = ScriptedLLM(['Final Answer: one', 'Final Answer: two'])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        agent = ReAct(llm=llm, action_executor=executor())
    agent.chat('first question')
    agent.chat('second question')
    assert 'first question' not in json.dumps(llm.requests[1])  # as the original: no memory across chats
    new = ReAct(ScriptedLLM(['Final Answer: one', 'Final Answer: two']), [Calculator()])
    new.chat('first question')
    new.chat('second question')
    assert 'first question' in json.dumps(new.llm.requests[1])  # the new API keeps the conversation


def test_react_protocol_keywords_and_prompts_can_be_changed() -> None:
    protocol = ReActProtocol(
        response=dict(role='RESPONSE', begin='Response:', end='\n'),
        call_protocol=CALL_PROTOCOL_CN,
        force_stop=FORCE_STOP_PROMPT_CN,
    )
    llm = ScriptedLLM(['Thought: 算一下\nAction: Calculator\nAction Input: 2 + 3\nResponse: 9', 'Final Answer: 5'])
    agent = ReAct(llm, [Calculator()], protocol, max_turn=2)
    result = agent.chat('2 加 3 等于几？')
    assert result.answer == '5' and result.tool_results[0].format_result() == '5'
    system = llm.requests[0][0]['content']
    assert '你可以使用以下工具' in system and 'Response: 工具返回的结果' in system and '[Calculator]' in system
    assert agent._settings({})['stop_words'] == ('Response:',)
    assert {'role': 'user', 'content': 'Response: 5'} in llm.requests[1]
    assert FORCE_STOP_PROMPT_CN in llm.requests[1][-1]['content']  # the last allowed reply


# ---------------------------------------------------------------------- chat(history), per-call settings


def test_chat_with_a_history_replaces_the_memory() -> None:
    llm = ScriptedLLM(['Final Answer: 7'])
    agent = ReAct(llm, [Calculator()])
    agent.memory.add({'role': 'user', 'content': 'forgotten'})
    history = [
        {'role': 'user', 'content': 'What is 3 + 4?'},
        {'role': 'assistant', 'content': 'Final Answer: 7'},
        {'role': 'user', 'content': 'Say it again.'},
    ]
    result = agent.chat(history, max_new_tokens=7)
    assert result.answer == '7' and len(agent.memory) == 4
    assert 'forgotten' not in json.dumps(llm.requests[0]) and 'What is 3 + 4?' in json.dumps(llm.requests[0])
    with pytest.raises(ValueError, match='non-empty'):
        agent.chat([])
    with pytest.raises(ValueError, match='max_new_tokens'):
        agent.chat('hi', max_new_tokens=0)


# ---------------------------------------------------------------------- Internlm2Agent


def legacy_internlm2(replies: list[str], interpreter: bool = True, chunk_size: int = 4) -> Internlm2Agent:
    llm = ScriptedLLM(replies, chunk_size=chunk_size)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return Internlm2Agent(
            llm=llm,
            plugin_executor=executor(),
            interpreter_executor=ActionExecutor(actions=[PythonInterpreter()]) if interpreter else None,
            protocol=Internlm2Protocol(
                meta_prompt=META_CN, interpreter_prompt=INTERPRETER_CN, plugin_prompt=PLUGIN_CN, tool=INTERNLM2_TOOL
            ),
            max_turn=3,
        )


def test_internlm2_stream_chat_of_a_history_yields_agent_return_snapshots() -> None:
    code = 'Let me compute.<|action_start|><|interpreter|>\n```python\nprint(6 * 7)\n```<|action_end|>\n'
    agent = legacy_internlm2([code, 'It is 42.', 'Still 42.'])
    history = [dict(role='user', content='What is 6 * 7?')]
    snapshots = list(agent.stream_chat(history))
    assert all(isinstance(snapshot, AgentReturn) for snapshot in snapshots)
    states = [snapshot.state for snapshot in snapshots]
    order = list(dict.fromkeys(states))
    assert order == [
        AgentStatusCode.STREAM_ING,
        AgentStatusCode.CODING,
        AgentStatusCode.CODE_END,
        AgentStatusCode.CODE_RETURN,
        AgentStatusCode.END,
    ]
    first_reply = snapshots[: states.index(AgentStatusCode.CODING)]
    prose = [s.response for s in first_reply]
    assert prose[0] and all(later.startswith(earlier) for earlier, later in itertools.pairwise(prose))  # cumulative
    assert 'Let me compute.' in prose and not any('<|action' in text for text in prose)
    coding = [s.response for s in snapshots if s.state == AgentStatusCode.CODING]
    assert coding[-1] == {'name': 'PythonInterpreter', 'parameters': {'command': 'print(6 * 7)'}}
    [returned] = [s for s in snapshots if s.state == AgentStatusCode.CODE_RETURN]
    assert returned.response == '42' and returned.actions[0].thought == 'Let me compute.'
    assert [step['role'] for step in returned.inner_steps] == ['assistant', 'environment']
    last = snapshots[-1]
    assert last.response == 'It is 42.' and len(last.actions) == 1
    assert last.inner_steps[1] == {'role': 'environment', 'name': 'interpreter', 'content': '42'}

    # the demo's loop: extend the history with the inner steps and continue
    history.extend(last.inner_steps)
    history.append(dict(role='user', content='And again?'))
    again = list(agent.stream_chat(history))
    assert again[-1].response == 'Still 42.'
    prompt = agent.llm.requests[-1]
    assert '<|im_start|>environment name=<|interpreter|>\n42<|im_end|>' in prompt
    assert prompt.count('What is 6 * 7?') == 1 and META_CN in prompt


def test_internlm2_plugin_call_snapshots_and_chat() -> None:
    call = (
        'I add.<|action_start|><|plugin|>\n{"name": "Calculator", "parameters": {"expression": "2+3"}}<|action_end|>\n'
    )
    agent = legacy_internlm2([call, '5.'], interpreter=False)
    snapshots = list(agent.stream_chat([dict(role='user', content='2+3?')]))
    starts = [s.response for s in snapshots if s.state == AgentStatusCode.PLUGIN_START]
    assert starts and starts[-1].startswith('{"name": "Calculator"')
    [end] = [s for s in snapshots if s.state == AgentStatusCode.PLUGIN_END]
    assert end.response == {'name': 'Calculator', 'parameters': {'expression': '2+3'}}
    assert snapshots[-1].state == AgentStatusCode.END and snapshots[-1].response == '5.'
    plugin_prompt = agent.llm.requests[0]
    assert '<|im_start|>system name=<|plugin|>\n你可以使用以下工具' in plugin_prompt

    result = legacy_internlm2([call, '5.'], interpreter=False).chat([dict(role='user', content='2+3?')])
    assert result.response == '5.' and result.actions[0].format_result() == '5'


async def test_async_snapshots_match_the_sync_ones() -> None:
    call = '<|action_start|><|plugin|>\n{"name": "Calculator", "parameters": {"expression": "2+3"}}<|action_end|>\n'
    sync = list(legacy_internlm2([call, '5.'], interpreter=False).stream_chat('2+3?'))
    agent = legacy_internlm2([call, '5.'], interpreter=False)
    asynchronous = [snapshot async for snapshot in agent.astream_chat('2+3?')]
    assert [(s.state, s.response) for s in asynchronous] == [(s.state, s.response) for s in sync]


def test_internlm2_protocol_tokens_can_be_changed() -> None:
    protocol = Internlm2Protocol(
        tool=dict(start_token='[ACT]', name_map=dict(plugin='[PLUGIN]', interpreter='[CODE]'), end='[/ACT]\n'),
        execute=dict(role='execute', fallback_role='environment'),
    )
    llm = ScriptedLLM(['[ACT][PLUGIN]\n{"name": "Calculator", "parameters": {"expression": "1+1"}}[/ACT]', 'two'])
    agent = Internlm2Agent(llm, [Calculator()], protocol=protocol)
    result = agent.chat('1+1?')
    assert result.answer == 'two' and result.tool_results[0].format_result() == '2'
    assert agent._settings({})['stop_words'] == ('[/ACT]', '<|im_end|>')
    assert '[ACT][PLUGIN]\n{"name": "Calculator"' in llm.requests[1]


def test_internlm2_reads_the_declared_template_roles() -> None:
    assert ScriptedLLM([], meta_template='internlm2').template_roles >= {'environment', 'system', 'user'}
    assert ScriptedLLM([]).template_roles is None
    with pytest.raises(ValueError, match=r"no 'environment' role .*roles: assistant, system, tool, user"):
        Internlm2Agent(ScriptedLLM([], meta_template='chatml'), [Calculator()])


# ---------------------------------------------------------------------- ReWOO


def test_rewoo_plans_runs_the_steps_with_evidence_then_solves() -> None:
    plan = (
        'Plan: add the numbers\n#E1 = Calculator[2 + 3]\n'
        'Plan: double the sum\n#E2 = Calculator[{"expression": "#E1 * 2"}]'
    )
    llm = ScriptedLLM([plan, 'The answer is 10.'])
    with pytest.warns(DeprecationWarning):
        agent = ReWOO(llm=llm, action_executor=executor())
    result = agent.chat('What is (2 + 3) doubled?')
    assert result.response == 'The answer is 10.' and result.state == AgentStatusCode.END
    assert [action.format_result() for action in result.actions] == ['5', '10']
    first, second = (json.loads(call.function.arguments) for call in result.tool_calls)
    assert first == {'expression': '2 + 3'} and second == {'expression': '5 * 2'}  # #E1 replaced
    solver = llm.requests[1][-1]['content']
    assert 'Question: What is (2 + 3) doubled?' in solver and 'Evidence: 10' in solver
    assert 'Calculator:' in llm.requests[0][0]['content']  # the tools in the planner prompt


def test_rewoo_asks_again_for_a_plan_it_cannot_read_then_solves_without_evidence() -> None:
    llm = ScriptedLLM(['I will just think.', 'Plan: x\n#E1 = Nope[1]', 'No idea.'])
    result = ReWOO(llm, [Calculator()], max_turn=3).chat('What?')
    assert result.answer == 'No idea.' and result.actions == [] and result.turns == 3
    assert 'The plan could not be read: no step found' in llm.requests[1][-1]['content']
    solver = llm.requests[2][-1]['content']
    assert solver.startswith('Answer the question below.') and 'Evidence' not in solver
    with pytest.raises(ValueError, match='max_turn of at least 2'):
        ReWOO(llm, [Calculator()], max_turn=1)
    chinese = ReWOO(
        ScriptedLLM(['Plan: 算\n#E1 = Calculator[1+1]', '2']), [Calculator()], ReWOOProtocol(PLANNER_PROMPT_CN)
    )
    assert chinese.chat('1+1?').answer == '2'


# ---------------------------------------------------------------------- AutoGPT


def test_autogpt_runs_commands_until_finish() -> None:
    step = {'thoughts': {'text': 'compute'}, 'command': {'name': 'Calculator', 'args': {'expression': '6*7'}}}
    finish = {'thoughts': {'text': 'done'}, 'command': {'name': 'finish', 'args': {'response': '42'}}}
    llm = ScriptedLLM(['not json', json.dumps(step), f'```json\n{json.dumps(finish)}\n```'])
    with pytest.warns(DeprecationWarning):
        agent = AutoGPT(llm=llm, action_executor=executor(), protocol=AutoGPTProtocol(ai_name='Calc'))
    result = agent.chat('What is 6 * 7?')
    assert result.response == '42' and result.state == AgentStatusCode.END
    assert [a.state for a in result.actions] == [ActionStatusCode.ARGS_ERROR, ActionStatusCode.SUCCESS]
    assert 'the reply holds no JSON object' in result.actions[0].errmsg
    assert result.actions[1].thought == 'compute'
    system = llm.requests[0][0]['content']
    assert system.startswith('You are Calc.') and 'What is 6 * 7?' in system and 'Calculator:' in system
    assert llm.requests[2][-2] == {'role': 'user', 'content': 'Command Calculator returned: 42'}


def test_autogpt_last_reply_is_asked_to_finish() -> None:
    step = json.dumps({'command': {'name': 'Calculator', 'args': {'expression': '1+1'}}})
    llm = ScriptedLLM([step, step])
    result = AutoGPT(llm, [Calculator()], max_turn=2).chat('1+1?')
    assert result.status == AgentStatusCode.SESSION_OUT_OF_LIMIT and 'still called a tool' in result.errmsg
    assert '"finish" command' in llm.requests[1][-1]['content']


def test_function_call_agent_takes_action_executor() -> None:
    with pytest.warns(DeprecationWarning):
        agent = FunctionCallAgent(ScriptedLLM(['hi']), action_executor=executor())
    assert agent.executor.names == ['Calculator'] and agent.agent_returns
    with pytest.raises(TypeError, match='not both'):
        FunctionCallAgent(ScriptedLLM([]), [Calculator()], action_executor=executor())
