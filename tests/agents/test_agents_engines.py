"""Every agent on every engine of the contract suite (``AGENT_ENGINES`` in
``tests/llms/engines.py``): real engines run the real 135M model, so these
check plumbing, not cleverness — the loop ends within ``max_turn``, the events
are well formed, stop words never leak into replies, nothing escapes.

A new engine fixture in ``ENGINES`` is picked up here without changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lagent.actions import Calculator
from lagent.agents import AgentMemory, BaseAgent, FunctionCallAgent, Internlm2Agent, ReAct
from lagent.llms.base import BaseLLM
from lagent.llms.scripted import ScriptedLLM
from lagent.schema import AgentStatusCode
from tests.agents.checks import assert_well_formed
from tests.llms.engines import AGENT_ENGINES

MAX_TURN = 2
SETTINGS = dict(temperature=0, max_new_tokens=32)
QUESTION = 'What is 37 * 12?'


def react(llm: BaseLLM) -> BaseAgent:
    return ReAct(llm, [Calculator()], max_turn=MAX_TURN, **SETTINGS)


def function_call(llm: BaseLLM) -> BaseAgent:
    # A forced first call exercises native tool calls where the engine has them;
    # engines without them take the text path, where tool_choice does not apply.
    return FunctionCallAgent(
        llm, [Calculator()], tool_choice='Calculator', next_tool_choice='none', max_turn=MAX_TURN, **SETTINGS
    )


def text_function_call(llm: BaseLLM) -> BaseAgent:
    return FunctionCallAgent(llm, [Calculator()], native=False, max_turn=MAX_TURN, **SETTINGS)


def internlm2(llm: BaseLLM) -> BaseAgent:
    return Internlm2Agent(llm, [Calculator()], max_turn=MAX_TURN, **SETTINGS)


AGENTS: dict[str, Callable[[BaseLLM], BaseAgent]] = {
    'react': react,
    'function_call': function_call,
    'text_function_call': text_function_call,
    'internlm2': internlm2,
}


@pytest.fixture(params=AGENT_ENGINES)
def make(request: pytest.FixtureRequest) -> Callable[..., BaseLLM]:
    return request.getfixturevalue(f'engine_{request.param}')


def check_run(agent: BaseAgent, events: list[Any]) -> None:
    assert_well_formed(events, MAX_TURN)
    for event in events:
        if event.kind == 'model_reply':
            for word in agent.stop_words:
                assert word not in event.text, f'stop word {word!r} leaked into a reply'
            usage = event.response.usage
            if usage is not None and usage.completion_tokens:
                assert usage.completion_tokens <= SETTINGS['max_new_tokens']
    assert len(agent.memory) >= 2
    assert AgentMemory.from_json(agent.memory.to_json()).messages == agent.memory.messages


@pytest.mark.slow
@pytest.mark.parametrize('kind', list(AGENTS))
def test_agent_loop_completes_on_every_engine(make: Callable[..., BaseLLM], kind: str) -> None:
    llm = make()
    agent = AGENTS[kind](llm)
    events = list(agent.stream_chat(QUESTION))
    check_run(agent, events)
    honours_tool_choice = not isinstance(llm, ScriptedLLM)  # scripted replies ignore it
    if kind == 'function_call' and isinstance(agent, FunctionCallAgent) and agent.native and honours_tool_choice:
        calls = [event for event in events if event.kind == 'tool_call']
        assert [call.call.function.name for call in calls] == ['Calculator']
        assert events[-1].status == AgentStatusCode.END  # next_tool_choice='none' makes it answer


@pytest.mark.slow
async def test_async_agent_loop_completes_on_every_engine(make: Callable[..., BaseLLM]) -> None:
    agent = function_call(make())
    events = [event async for event in agent.astream_chat(QUESTION)]
    check_run(agent, events)
    result = await react(make()).achat(QUESTION)
    assert result.status in {AgentStatusCode.END, AgentStatusCode.SESSION_OUT_OF_LIMIT}
    assert 1 <= result.turns <= MAX_TURN
