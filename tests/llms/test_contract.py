"""The LLM contract, checked the same way on every engine that runs here.

Each engine is a fixture returning ``make(**kwargs) -> BaseLLM`` (kwargs are
constructor keywords such as ``meta_template`` or ``stop_words``). Real engines
run real models, so the checks are about plumbing and consistency: greedy
streaming equals greedy one-shot, stop words cut exactly, token limits hold,
sync equals async, overrides leave the defaults alone.

To add an engine: write its ``engine_<name>`` fixture in ``tests/llms/engines.py``
and add its name to ``ENGINES`` there.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from lagent.llms.base import BaseLLM
from lagent.schema import ModelStatusCode
from tests.llms.engines import ENGINES, MESSAGES_ENGINES, NATIVE_TOOL_ENGINES, TOKEN_COUNTING_ENGINES

CHATML = [
    dict(role='system', begin='<|im_start|>system\n', end='<|im_end|>\n'),
    dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
    dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
]
CONVERSATION = [{'role': 'user', 'content': 'Name three colours.'}]
PROMPT = '<|im_start|>user\nWrite a sentence about the sea.<|im_end|>\n<|im_start|>assistant\n'
GREEDY = dict(temperature=0, max_new_tokens=24)
WEATHER = {
    'type': 'function',
    'function': {
        'name': 'get_weather',
        'description': 'Get the weather of a city.',
        'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']},
    },
}
FORCE_WEATHER = {'type': 'function', 'function': {'name': 'get_weather'}}


@pytest.fixture(params=ENGINES)
def make(request: pytest.FixtureRequest):
    return request.getfixturevalue(f'engine_{request.param}')


@pytest.fixture(params=TOKEN_COUNTING_ENGINES)
def make_counting(request: pytest.FixtureRequest):
    return request.getfixturevalue(f'engine_{request.param}')


@pytest.fixture(params=MESSAGES_ENGINES)
def make_chat(request: pytest.FixtureRequest):
    return request.getfixturevalue(f'engine_{request.param}')


@pytest.fixture(params=NATIVE_TOOL_ENGINES)
def make_tools(request: pytest.FixtureRequest):
    return request.getfixturevalue(f'engine_{request.param}')


def test_generate_str_in_str_out_list_in_list_out(make) -> None:
    llm: BaseLLM = make()
    one = llm.generate(PROMPT, **GREEDY)
    assert isinstance(one, str) and one.strip()
    many = llm.generate([PROMPT, PROMPT], **GREEDY)
    assert isinstance(many, list) and len(many) == 2
    assert many[0] == many[1] == one  # greedy: the same prompt gives the same text


def test_greedy_stream_equals_one_shot(make) -> None:
    llm = make()
    one_shot = llm.generate(PROMPT, **GREEDY)
    steps = list(llm.stream_generate(PROMPT, **GREEDY))
    assert steps, 'no streamed text'
    for before, after in itertools.pairwise(steps):
        assert after.startswith(before) and len(after) > len(before)
    assert steps[-1] == one_shot


def test_stream_chat_statuses_and_cumulative_text(make) -> None:
    llm = make(meta_template=CHATML)
    steps = list(llm.stream_chat(CONVERSATION, **GREEDY))
    statuses = [status for status, _, _ in steps]
    assert statuses[-1] == ModelStatusCode.END
    assert set(statuses[:-1]) <= {ModelStatusCode.STREAM_ING}
    texts = [text for _, text, _ in steps]
    for before, after in itertools.pairwise(texts):
        assert after.startswith(before)
    final = steps[-1][2]
    assert final is not None and final.text == texts[-1] and final.finish_reason in {'stop', 'length'}
    assert texts[-1] == llm.chat(CONVERSATION, **GREEDY)


def test_chat_batch_keeps_order(make) -> None:
    llm = make(meta_template=CHATML)
    first = [{'role': 'user', 'content': 'Say one word.'}]
    replies = llm.chat([first, CONVERSATION], **GREEDY)
    assert replies == [llm.chat(first, **GREEDY), llm.chat(CONVERSATION, **GREEDY)]


def test_stop_word_cuts_exactly(make) -> None:
    llm = make()
    full = llm.generate(PROMPT, **GREEDY)
    words = full.split()
    assert len(words) >= 3, f'reply too short to pick a stop word: {full!r}'
    stop = words[len(words) // 2]
    expected = full[: full.index(stop)]
    assert llm.generate(PROMPT, stop_words=[stop], **GREEDY) == expected
    streamed = list(llm.stream_generate(PROMPT, stop_words=[stop], **GREEDY))
    assert (streamed[-1] if streamed else '') == expected
    assert all(stop not in text for text in streamed)


def test_max_new_tokens_is_respected(make_counting) -> None:
    llm = make_counting()
    response = llm.complete(PROMPT, temperature=0, max_new_tokens=5)
    assert response.finish_reason == 'length'
    assert response.usage is not None and 0 < response.usage.completion_tokens <= 5


async def test_async_twins_match_sync(make) -> None:
    llm = make(meta_template=CHATML)
    sync_text = llm.chat(CONVERSATION, **GREEDY)
    assert await llm.achat(CONVERSATION, **GREEDY) == sync_text
    assert await llm.agenerate(PROMPT, **GREEDY) == llm.generate(PROMPT, **GREEDY)
    steps = [step async for step in llm.astream_chat(CONVERSATION, **GREEDY)]
    assert steps[-1][0] == ModelStatusCode.END and steps[-1][1] == sync_text
    texts = [text async for text in llm.astream_generate(PROMPT, **GREEDY)]
    assert texts[-1] == llm.generate(PROMPT, **GREEDY)
    batch = await asyncio.wait_for(llm.agenerate([PROMPT, PROMPT], **GREEDY), 300)
    assert batch == [texts[-1], texts[-1]]


def test_closing_a_stream_early_leaves_the_engine_usable(make) -> None:
    llm = make()
    with llm.stream(PROMPT, **GREEDY) as stream:
        first = next(stream)
    assert stream.closed and isinstance(first.text, str)
    assert llm.generate(PROMPT, **GREEDY)


async def test_closing_an_async_stream_early_leaves_the_engine_usable(make) -> None:
    llm = make()
    async with llm.astream(PROMPT, **GREEDY) as stream:
        await stream.__anext__()
    assert stream.closed
    assert await llm.agenerate(PROMPT, **GREEDY)


def test_overrides_leave_defaults_alone_and_bad_values_name_the_field(make) -> None:
    llm = make(max_new_tokens=7)
    defaults = llm.gen_params
    llm.generate(PROMPT, max_new_tokens=3, temperature=0)
    assert llm.gen_params == defaults and llm.gen_params.max_new_tokens == 7
    with pytest.raises(ValueError, match='max_new_tokens'):
        llm.generate(PROMPT, max_new_tokens=0)
    with pytest.raises(ValueError, match='top_p'):
        llm.generate(PROMPT, top_p=1.5)
    with pytest.raises(ValueError, match='not_a_param'):
        llm.generate(PROMPT, not_a_param=1)


def test_complete_is_the_typed_generate(make) -> None:
    llm = make()
    response = llm.complete(PROMPT, **GREEDY)
    assert response.text == llm.generate(PROMPT, **GREEDY)
    assert response.finish_reason in {'stop', 'length'} and response.tool_calls == []


async def test_acomplete_matches_complete(make) -> None:
    llm = make()
    assert (await llm.acomplete(PROMPT, **GREEDY)).text == llm.complete(PROMPT, **GREEDY).text


def test_conversations_without_a_template_take_the_messages_path(make_chat) -> None:
    llm = make_chat()
    request = llm.prepare(CONVERSATION)
    assert request.prompt is None and request.messages == CONVERSATION
    whole = llm.complete(CONVERSATION, **GREEDY)
    assert whole.text.strip() and whole.finish_reason in {'stop', 'length'}
    assert ''.join(chunk.text for chunk in llm.stream(CONVERSATION, **GREEDY)) == whole.text
    assert llm.chat(CONVERSATION, **GREEDY) == whole.text


def test_a_forced_native_tool_call_comes_back_structured(make_tools) -> None:
    llm = make_tools()
    assert llm.tool_calling == 'native'
    question = [{'role': 'user', 'content': 'What is the weather in Paris?'}]
    response = llm.complete(question, tools=[WEATHER], tool_choice=FORCE_WEATHER, temperature=0, max_new_tokens=64)
    assert [call.function.name for call in response.tool_calls] == ['get_weather']
    assert isinstance(response.tool_calls[0].function.parsed_arguments(), dict)
    steps = list(
        llm.stream_chat(question, tools=[WEATHER], tool_choice=FORCE_WEATHER, temperature=0, max_new_tokens=64)
    )
    streamed = steps[-1][2]
    assert streamed is not None and streamed.tool_calls[0].function == response.tool_calls[0].function
