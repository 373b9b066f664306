"""The official ``openai`` client against ``lagent serve --backend llamacpp --port P --api-key K``
(the real SmolLM2, run by the real command in a child process)."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.serve.served import AGENT, API_KEY, ENGINE, Served

pytestmark = pytest.mark.slow

QUESTION = [{'role': 'user', 'content': 'Name three colours.'}]
GREEDY = dict(temperature=0, max_tokens=16)
CALCULATOR = {
    'type': 'function',
    'function': {
        'name': 'Calculator',
        'description': 'Evaluate an arithmetic expression.',
        'parameters': {'type': 'object', 'properties': {'expression': {'type': 'string'}}, 'required': ['expression']},
    },
}


@pytest.fixture(scope='module')
def client(served_smollm2: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served_smollm2.v1, api_key=API_KEY, max_retries=0)


@pytest.fixture
def async_client(served_smollm2: Served) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=served_smollm2.v1, api_key=API_KEY, max_retries=0)


def test_models_lists_the_engine_and_the_agent(client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [ENGINE, AGENT]


def test_sync_whole_and_streamed_answers_agree(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=ENGINE, messages=QUESTION, **GREEDY)
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in {'stop', 'length'}
    assert 0 < whole.usage.completion_tokens <= 16 and whole.usage.prompt_tokens > 0
    stream = client.chat.completions.create(
        model=ENGINE, messages=QUESTION, stream=True, stream_options={'include_usage': True}, **GREEDY
    )
    chunks = list(stream)
    assert ''.join(chunk.choices[0].delta.content or '' for chunk in chunks if chunk.choices) == text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


async def test_async_whole_and_streamed_answers_agree_with_sync(
    client: openai.OpenAI, async_client: openai.AsyncOpenAI
) -> None:
    expected = client.chat.completions.create(model=ENGINE, messages=QUESTION, **GREEDY).choices[0].message.content
    whole = await async_client.chat.completions.create(model=ENGINE, messages=QUESTION, **GREEDY)
    assert whole.choices[0].message.content == expected
    stream = await async_client.chat.completions.create(model=ENGINE, messages=QUESTION, stream=True, **GREEDY)
    assert ''.join([chunk.choices[0].delta.content or '' async for chunk in stream]) == expected
    await async_client.close()


def test_completions_of_a_raw_prompt(client: openai.OpenAI) -> None:
    prompt = '<|im_start|>user\nWrite a sentence about the sea.<|im_end|>\n<|im_start|>assistant\n'
    whole = client.completions.create(model=ENGINE, prompt=prompt, **GREEDY)
    streamed = client.completions.create(model=ENGINE, prompt=prompt, stream=True, **GREEDY)
    assert ''.join(chunk.choices[0].text for chunk in streamed) == whole.choices[0].text != ''


def test_tools_reach_an_engine_with_native_tool_calling(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=ENGINE,
        messages=[{'role': 'user', 'content': 'What is 37 * 12?'}],
        tools=[CALCULATOR],
        tool_choice={'type': 'function', 'function': {'name': 'Calculator'}},
        temperature=0,
        max_tokens=64,
    )
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == 'Calculator' and 'expression' in json.loads(call.function.arguments)


def test_tool_calls_through_the_served_agent(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=AGENT, messages=[{'role': 'user', 'content': 'What is 37 * 12?'}], stream=True
    )
    chunks = list(stream)
    events = [
        chunk.model_extra['lagent']['event'] for chunk in chunks if 'event' in chunk.model_extra.get('lagent', {})
    ]
    kinds = [event['kind'] for event in events]
    assert kinds.index('tool_call') < kinds.index('tool_result') < kinds.index('final_answer') == len(kinds) - 1
    call, result = events[kinds.index('tool_call')], events[kinds.index('tool_result')]
    assert call['call']['function']['name'] == 'Calculator'
    assert result['result']['state'] == 0 and result['observation']  # the calculator ran on the server
    answer = ''.join(chunk.choices[0].delta.content or '' for chunk in chunks if chunk.choices)
    assert answer == events[-1]['text'] != ''  # the content is the final answer
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == 'stop'


async def test_a_wrong_key_raises_authentication_error(served_smollm2: Served) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served_smollm2.v1, api_key='sk-wrong', max_retries=0).models.list()
    wrong = openai.AsyncOpenAI(base_url=served_smollm2.v1, api_key='sk-wrong', max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await wrong.chat.completions.create(model=ENGINE, messages=QUESTION, stream=True)
    await wrong.close()


async def test_256_concurrent_streams_all_succeed(async_client: openai.AsyncOpenAI) -> None:
    async def one(index: int) -> str:
        stream = await async_client.chat.completions.create(
            model=ENGINE, messages=[{'role': 'user', 'content': 'Say hi.'}], stream=True, temperature=0, max_tokens=1
        )
        text, finish = '', None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ''
                finish = chunk.choices[0].finish_reason or finish
        assert finish in {'stop', 'length'}
        return text

    outcomes = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(256)), return_exceptions=True), 600)
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert errors == []
    assert len(set(outcomes)) == 1 and outcomes[0]  # greedy: one answer, 256 times
    await async_client.close()


def test_bad_input_is_a_bad_request_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match='max_tokens'):
        client.chat.completions.create(model=ENGINE, messages=QUESTION, max_tokens=-1)
    with pytest.raises(openai.NotFoundError, match='does not exist'):
        client.chat.completions.create(model='gpt-4o', messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match='unknown field'):
        client.chat.completions.create(model=ENGINE, messages=QUESTION, extra_body={'temprature': 0})
