"""LMDeployClient against lmdeploy's own api_server (its routes, validation,
chat template, detokenizer, stop words, session manager and ``qwen`` tool
parser), on the CPU engine with scripted replies (``PROTOCOL_RULES``). What
lmdeploy made of each request is read from the engine's event log: the
generation settings it handed the engine, and how each request ended."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import itertools
import json
from typing import Any

import pytest
import requests

from lagent.errors import LLMTimeoutError
from lagent.llms.lmdeploy_client import LMDeployClient
from lagent.schema import ModelStatusCode
from tests.fixtures.lmdeploy_cpu_server import CPUServer
from tests.fixtures.waiting import wait_until
from tests.llms.engines_lmdeploy import SCRIPTED_NAME

LMDEPLOY_VERSION = tuple(int(part) for part in importlib.metadata.version('lmdeploy').split('.')[:2])

CHATML = [
    dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
    dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
]
IM_END_ID = 2
WEATHER_TOOL = {
    'type': 'function',
    'function': {
        'name': 'get_weather',
        'description': 'The weather in a city.',
        'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']},
    },
}


def user(text: str) -> list[dict[str, str]]:
    return [{'role': 'user', 'content': text}]


def new_events(server: CPUServer, since: int) -> list[dict[str, Any]]:
    return server.events()[since:]


@pytest.fixture
def scripted(lmdeploy_scripted: CPUServer) -> CPUServer:
    return lmdeploy_scripted


def test_settings_reach_lmdeploy_engine_as_given(scripted: CPUServer) -> None:
    before = len(scripted.events())
    settings = dict(temperature=0.5, top_p=0.9, top_k=5, repetition_penalty=1.1, max_new_tokens=33, seed=11)
    with LMDeployClient(scripted.url, meta_template=CHATML, **settings) as llm:
        assert llm.model_name == SCRIPTED_NAME  # the first of /v1/models
        text = llm.chat(user('Say hello.'), stop_words=['<|im_end|>'], skip_special_tokens=False, session_id=7)
        assert text.startswith('The answer is')  # the prompt path: /v1/completions
        llm.chat(user('Say hello.'), ignore_eos=True, temperature=0, max_new_tokens=4)
    first, second = [event for event in new_events(scripted, before) if event['event'] == 'start']
    config = first['gen_config']
    assert (config['temperature'], config['top_p'], config['top_k'], config['max_new_tokens']) == (0.5, 0.9, 5, 33)
    assert (config['repetition_penalty'], config['random_seed'], config['do_sample']) == (1.1, 11, True)
    assert config['skip_special_tokens'] is False and config['ignore_eos'] is False
    assert IM_END_ID in config['stop_token_ids']
    config = second['gen_config']
    assert (config['temperature'], config['max_new_tokens'], config['ignore_eos']) == (0, 4, True)


def test_chat_path_sends_lmdeploy_fields(scripted: CPUServer) -> None:
    before = len(scripted.events())
    with LMDeployClient(scripted.url, top_k=7, min_new_tokens=3) as llm:
        response = llm.complete(user('Name a colour.'), max_new_tokens=12, temperature=0)
    assert response.finish_reason == 'length' and response.usage.completion_tokens == 12
    (start,) = [event for event in new_events(scripted, before) if event['event'] == 'start']
    config = start['gen_config']
    assert (config['max_new_tokens'], config['min_new_tokens'], config['top_k']) == (12, 3, 7)


def test_native_tool_call_through_lmdeploy_parser(scripted: CPUServer) -> None:
    with LMDeployClient(scripted.url) as llm:
        assert llm.tool_calling == 'native'
        response = llm.complete(user('[[weather]] in Paris?'), tools=[WEATHER_TOOL])
        chunks = list(llm.stream(user('[[weather]] in Paris?'), tools=[WEATHER_TOOL]))
        both = llm.complete(user('[[two cities]]'), tools=[WEATHER_TOOL])
        steps = list(llm.stream_chat(user('[[two cities]]'), tools=[WEATHER_TOOL]))
    assert response.finish_reason == 'tool_calls' and response.text == ''
    [call] = response.tool_calls
    assert call.function.name == 'get_weather' and json.loads(call.function.arguments) == {'city': 'Paris'}
    assert call.id
    streamed = [delta for chunk in chunks for delta in chunk.tool_calls or ()]
    assert streamed and streamed[0].name == 'get_weather' and streamed[0].id
    if LMDEPLOY_VERSION >= (0, 18):  # 0.16's streaming parser sends the name, never the arguments
        assert json.loads(''.join(delta.arguments for delta in streamed)) == {'city': 'Paris'}
    assert [chunk.finish_reason for chunk in chunks if chunk.finish_reason] == ['tool_calls']
    assert both.text.strip() == 'Checking both.' and both.finish_reason == 'tool_calls'
    assert [json.loads(call.function.arguments)['city'] for call in both.tool_calls] == ['Paris', 'Rome']
    # lmdeploy (0.16 to 0.18) streams only the first call of a reply: its streaming parser stops there
    status, text, final = steps[-1]
    assert status == ModelStatusCode.END and text.strip() == 'Checking both.'
    assert [call.function.name for call in final.tool_calls][:1] == ['get_weather']


def test_stop_word_never_leaks_while_streaming(scripted: CPUServer) -> None:
    """``STOP_HERE`` is several tokens: lmdeploy cannot stop on it, lagent does."""
    with LMDeployClient(scripted.url, stop_words=['STOP_HERE']) as llm:
        texts = list(llm.stream_generate('[[stop]]'))
        steps = list(llm.stream_chat(user('[[stop]]')))
        whole = llm.chat(user('[[stop]]'))
    assert texts[-1] == 'Alpha beta ' and whole == 'Alpha beta '
    for before, after in itertools.pairwise(texts):
        assert after.startswith(before)  # nothing shown is ever taken back
    assert not any(text.endswith(('S', 'ST', 'STOP', 'STOP_')) for text in texts)
    assert steps[-1][1] == 'Alpha beta ' and steps[-1][2].finish_reason == 'stop'


def test_single_token_stop_word_stops_lmdeploy_engine(scripted: CPUServer) -> None:
    before = len(scripted.events())
    with LMDeployClient(scripted.url) as llm:
        response = llm.complete(user('[[stop]]'), stop_words=[' gamma'])
    assert response.text == 'Alpha beta STOP_HERE' and response.finish_reason == 'stop'
    end = [event for event in new_events(scripted, before) if event['event'] == 'end'][-1]
    assert end['status'] == 'FINISH' and end['generated'] < 12  # stopped at the token, not at the end of the reply


@pytest.mark.parametrize(('skip', 'expected'), [(False, 'Hi <|im_start|> there'), (True, 'Hi  there')])
def test_skip_special_tokens(scripted: CPUServer, skip: bool, expected: str) -> None:
    with LMDeployClient(scripted.url) as llm:
        assert llm.chat(user('[[special]]'), skip_special_tokens=skip) == expected
        assert list(llm.stream_generate('[[special]]', skip_special_tokens=skip))[-1] == expected


def test_long_output(scripted: CPUServer) -> None:
    with LMDeployClient(scripted.url, max_new_tokens=4000) as llm:
        texts = list(llm.stream_generate('[[long]]'))
        response = llm.complete('[[long]]')
    assert texts[-1] == ' word' * 3000 == response.text
    assert response.finish_reason == 'stop' and response.usage.completion_tokens == 3000


def _cancelled_session(server: CPUServer, before: int) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        return next((event for event in new_events(server, before) if event['event'] == 'end'), None)

    session = wait_until(ended, 30, interval=0.05)
    assert session, 'lmdeploy did not end the session within 30s'
    return session


def test_closing_a_stream_cancels_the_request_inside_lmdeploy(scripted: CPUServer) -> None:
    before = len(scripted.events())
    with LMDeployClient(scripted.url, max_new_tokens=2000) as llm:
        with llm.stream(user('[[slow]]')) as stream:
            assert next(stream).text and next(stream).text
        end = _cancelled_session(scripted, before)
    assert end['status'] == 'CANCEL' and end['generated'] < 100  # stopped, not run to max_new_tokens


async def test_closing_an_async_stream_cancels_the_request_inside_lmdeploy(scripted: CPUServer) -> None:
    before = len(scripted.events())
    llm = LMDeployClient(scripted.url, max_new_tokens=2000)
    async with llm.astream('[[slow]]') as stream:
        await stream.__anext__()
    end = await asyncio.to_thread(_cancelled_session, scripted, before)
    await llm.aclose()
    assert end['status'] == 'CANCEL' and end['generated'] < 100


def test_equal_session_ids_break_lmdeploy_but_never_leave_the_client(scripted: CPUServer) -> None:
    """lmdeploy maps a client's ``session_id`` to one session of its own and
    fails (HTTP 500) a concurrent request with the same id; lagent never sends one."""
    body = {'model': SCRIPTED_NAME, 'messages': user('[[slow]] clash'), 'max_tokens': 20, 'session_id': 4242}

    def raw(_: int) -> int:
        return requests.post(f'{scripted.url}/v1/chat/completions', json=body, timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(raw, range(4)))
    assert 500 in statuses and 200 in statuses

    before = len(scripted.events())

    async def eight() -> list[str]:
        llm = LMDeployClient(scripted.url, max_new_tokens=20, max_retries=0)
        try:
            return await asyncio.gather(*(llm.achat(user('[[slow]] clash'), session_id=4242) for _ in range(8)))
        finally:
            await llm.aclose()

    replies = asyncio.run(eight())
    assert replies == [' tick' * 20] * 8
    sessions = {event['session'] for event in new_events(scripted, before) if event['event'] == 'start'}
    assert len(sessions) == 8


@pytest.mark.parametrize('use_async', [False, True])
async def test_timeout_keyword_bounds_the_request(scripted: CPUServer, use_async: bool) -> None:
    llm = LMDeployClient(scripted.url, max_new_tokens=2000)
    with pytest.raises(LLMTimeoutError):
        if use_async:
            [step async for step in llm.astream_chat(user('[[slow]]'), timeout=0.5)]
        else:
            list(llm.stream_chat(user('[[slow]]'), timeout=0.5))
    await llm.aclose()


def test_greedy_replies_of_the_real_model_are_deterministic(lmdeploy_url: str) -> None:
    """SmolLM2 through llama.cpp: temperature 0 gives the same text every time, streamed or not."""
    with LMDeployClient(lmdeploy_url, meta_template=CHATML, temperature=0, max_new_tokens=16) as llm:
        replies = {llm.chat(user('Name a fruit.')) for _ in range(3)}
        steps = list(llm.stream_chat(user('Name a fruit.')))
    assert len(replies) == 1 and steps[-1][1] in replies and replies.pop().strip()
