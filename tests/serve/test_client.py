"""``AgentClient`` / ``AsyncAgentClient`` against a served agent: the same
results and events as the agent run in process, and the session's memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lagent.actions import Calculator
from lagent.agents import AgentResult, FunctionCallAgent
from lagent.errors import RequestError
from lagent.llms import ScriptedLLM
from lagent.schema import AgentStatusCode
from lagent.serve import AgentClient, AsyncAgentClient, ServedAgent, Server
from tests.serve.engines import calculator_script
from tests.serve.wire import KEY

QUESTION = 'What is 37 * 12?'


@pytest.fixture(scope='module')
def url() -> Iterator[str]:
    llm = ScriptedLLM([calculator_script] * 10_000, chunk_size=4)
    models = {'echo': ScriptedLLM(['hi'] * 100), 'calc': ServedAgent(llm, [Calculator()], stream_auto_tools=True)}
    with Server(models, api_keys=[KEY]).run_in_thread() as address:
        yield address


def in_process() -> FunctionCallAgent:
    return FunctionCallAgent(
        ScriptedLLM([calculator_script] * 10, chunk_size=4), [Calculator()], stream_auto_tools=True
    )


def test_chat_returns_what_the_agent_returns_in_process(url: str) -> None:
    expected = in_process().chat(QUESTION)
    with AgentClient(url, 'calc', api_key=KEY) as agent:
        result = agent.chat(QUESTION)
    assert isinstance(result, AgentResult)
    assert result.answer == expected.answer == '37 * 12 is 444.' and result.status == AgentStatusCode.END
    assert result.steps == expected.steps
    assert [call.function.name for call in result.tool_calls] == ['Calculator']


def test_stream_chat_yields_the_agents_events(url: str) -> None:
    expected = list(in_process().stream_chat(QUESTION))
    with AgentClient(url, api_key=KEY) as agent:  # no name: the first agent served
        assert agent.model == 'calc'
        with agent.stream_chat(QUESTION) as stream:
            events = list(stream)
    steps = [event for event in events if event.kind != 'text_delta']
    assert steps == [event for event in expected if event.kind != 'text_delta']
    text = ''.join(event.text for event in events if event.kind == 'text_delta')
    assert text == ''.join(event.text for event in expected if event.kind == 'text_delta')


def test_the_conversation_lives_on_the_server_until_reset(url: str) -> None:
    with AgentClient(url, 'calc', api_key=KEY) as agent:
        assert len(agent.memory()) == 0
        agent.chat(QUESTION)
        memory = agent.memory()
        assert [message.role for message in memory] == ['user', 'assistant', 'tool', 'assistant']
        assert memory.messages[0].content == QUESTION
        again = AgentClient(url, 'calc', api_key=KEY, session_id=agent.session_id)  # another client, same session
        again.chat('And once more?')
        assert len(agent.memory()) == 8
        again.close()
        agent.reset()
        assert len(agent.memory()) == 0
        agent.reset()  # nothing left to forget: fine


async def test_async_client_matches_the_sync_one(url: str) -> None:
    expected = in_process().chat(QUESTION)
    async with AsyncAgentClient(url, 'calc', api_key=KEY) as agent:
        result = await agent.chat(QUESTION)
        assert result.steps == expected.steps
        async with agent.stream_chat('And again?') as stream:
            events = [event async for event in stream]
        assert events[-1].kind == 'final_answer'
        assert len(await agent.memory()) == 8
        await agent.reset()
        assert len(await agent.memory()) == 0


def test_errors_are_lagent_errors(url: str) -> None:
    with pytest.raises(RequestError) as unknown:
        AgentClient(url, 'nope', api_key=KEY).chat('x')
    assert unknown.value.status_code == 404 and "'nope' does not exist" in unknown.value.message
    with pytest.raises(RequestError) as refused:
        AgentClient(url, 'calc', api_key='wrong').chat('x')
    assert refused.value.status_code == 401
    with pytest.raises(RequestError, match='is an engine'):
        AgentClient(url, 'echo', api_key=KEY).chat('x')
