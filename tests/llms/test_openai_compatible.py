"""OpenAICompatible against the real llama.cpp server (completion and chat mode,
native tools), and against the lmdeploy-protocol fault server for what a real
server only does by accident."""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterator

import pytest

from lagent.errors import LLMTimeoutError, RequestError, StreamError
from lagent.llms.openai_compatible import GPTAPI, OpenAICompatible
from lagent.schema import ModelStatusCode
from tests.fixtures.fault_server import MODEL, Behaviour, FaultServer, fault_server

CHATML = [
    dict(role='system', begin='<|im_start|>system\n', end='<|im_end|>\n'),
    dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
    dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
]
HELLO = [{'role': 'user', 'content': 'Say hello.'}]
WEATHER = [{'role': 'user', 'content': 'What is the weather in Paris?'}]
WEATHER_TOOL = {
    'type': 'function',
    'function': {
        'name': 'get_weather',
        'description': 'Get the current weather of a city.',
        'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}, 'required': ['city']},
    },
}
FORCE_WEATHER = {'type': 'function', 'function': {'name': 'get_weather'}}
GREEDY = dict(temperature=0, max_new_tokens=16)


@pytest.fixture
def llm(llamacpp_url: str) -> Iterator[OpenAICompatible]:
    engine = OpenAICompatible(llamacpp_url)
    yield engine
    engine.close()


@pytest.fixture
def templated(llamacpp_url: str) -> Iterator[OpenAICompatible]:
    engine = OpenAICompatible(llamacpp_url + '/v1/', meta_template=CHATML)
    yield engine
    engine.close()


# ---------------------------------------------------------------------- the real llama.cpp server


def test_model_name_defaults_to_the_first_served_model(llm: OpenAICompatible) -> None:
    assert llm.model_name == 'smollm2'


def test_gptapi_takes_the_keywords_of_the_original_lagent(llamacpp_url: str, monkeypatch) -> None:
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-from-env-5678')
    meta = [dict(role='system', api_role='system'), dict(role='user', api_role='user'),
            dict(role='assistant', api_role='assistant'), dict(role='environment', api_role='system')]  # fmt: skip
    llm = GPTAPI(
        model_type='smollm2', retry=1, api_base=f'{llamacpp_url}/v1/chat/completions', meta_template=meta,
        max_new_tokens=4, temperature=0,
    )  # fmt: skip
    assert isinstance(llm, OpenAICompatible) and llm.model_name == 'smollm2' and llm.transport.max_retries == 1
    assert 'sk-from-env-5678' not in repr(llm)
    request = llm.prepare([{'role': 'user', 'content': 'Hi'}, {'role': 'environment', 'content': 'obs'}])
    assert request.messages == [{'role': 'user', 'content': 'Hi'}, {'role': 'system', 'content': 'obs'}]
    assert llm.chat([{'role': 'user', 'content': 'Hi'}])
    assert GPTAPI(api_base='http://127.0.0.1:1', json_mode=True).extra_body == {
        'response_format': {'type': 'json_object'}
    }


def test_completion_mode_renders_the_prompt_and_uses_completions(templated: OpenAICompatible) -> None:
    request = templated.prepare(HELLO)
    assert request.prompt == '<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n'
    response = templated.complete(HELLO, **GREEDY)
    assert response.text.strip() and response.finish_reason in {'stop', 'length'}
    assert response.usage is not None and 0 < response.usage.completion_tokens <= 16
    steps = list(templated.stream_chat(HELLO, **GREEDY))
    assert steps[-1][0] == ModelStatusCode.END and steps[-1][1] == response.text


async def test_completion_mode_async(templated: OpenAICompatible) -> None:
    text = await templated.achat(HELLO, **GREEDY)
    assert text == templated.chat(HELLO, **GREEDY)
    steps = [step async for step in templated.astream_chat(HELLO, **GREEDY)]
    assert steps[-1][1] == text
    chunks = [chunk async for chunk in templated.astream(HELLO, **GREEDY)]
    assert ''.join(chunk.text for chunk in chunks) == text
    assert chunks[-1].finish_reason in {'stop', 'length'}
    await templated.aclose()


def test_chat_mode_every_method(llm: OpenAICompatible) -> None:
    assert llm.prepare(HELLO).messages == HELLO
    text = llm.chat(HELLO, **GREEDY)
    assert isinstance(text, str) and text.strip()
    assert llm.chat([HELLO, WEATHER], **GREEDY)[0] == text
    steps = list(llm.stream_chat(HELLO, **GREEDY))
    statuses = [status for status, _, _ in steps]
    assert statuses[-1] == ModelStatusCode.END and set(statuses[:-1]) == {ModelStatusCode.STREAM_ING}
    for (_, before, _), (_, after, _) in itertools.pairwise(steps):
        assert after.startswith(before)
    chunks = list(llm.stream(HELLO, **GREEDY))
    assert ''.join(chunk.text for chunk in chunks).strip()
    assert chunks[-1].finish_reason in {'stop', 'length'}


async def test_chat_mode_every_method_async(llm: OpenAICompatible) -> None:
    text = await llm.achat(HELLO, **GREEDY)
    assert text.strip()
    assert (await llm.achat([HELLO, HELLO], **GREEDY)) == [text, text]
    steps = [step async for step in llm.astream_chat(HELLO, **GREEDY)]
    assert steps[-1][0] == ModelStatusCode.END and steps[-1][1].strip()
    response = await llm.acomplete(HELLO, **GREEDY)
    assert response.text == text and response.usage is not None
    await llm.aclose()


def test_tools_with_auto_choice_return_real_tool_calls(llm: OpenAICompatible) -> None:
    response = llm.complete(WEATHER, tools=[WEATHER_TOOL], tool_choice='auto', **GREEDY)
    assert response.finish_reason == 'tool_calls'
    assert [call.function.name for call in response.tool_calls] == ['get_weather']
    assert isinstance(response.tool_calls[0].function.parsed_arguments(), dict)
    assert response.tool_calls[0].id


async def test_tools_with_auto_choice_async(llm: OpenAICompatible) -> None:
    response = await llm.acomplete(WEATHER, tools=[WEATHER_TOOL], tool_choice='auto', **GREEDY)
    assert [call.function.name for call in response.tool_calls] == ['get_weather']
    await llm.aclose()


def test_streamed_tool_call_deltas_are_assembled(llm: OpenAICompatible) -> None:
    steps = list(llm.stream_chat(WEATHER, tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER, max_new_tokens=32))
    status, _, response = steps[-1]
    assert status == ModelStatusCode.END and response is not None
    assert [call.function.name for call in response.tool_calls] == ['get_weather']
    assert 'city' in response.tool_calls[0].function.parsed_arguments()
    deltas = [chunk.tool_calls for chunk in llm.stream(WEATHER, tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER)]
    assert sum(1 for delta in deltas if delta) > 1, 'the arguments should arrive in several fragments'


async def test_streamed_tool_call_async(llm: OpenAICompatible) -> None:
    steps = [s async for s in llm.astream_chat(WEATHER, tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER)]
    assert [call.function.name for call in steps[-1][2].tool_calls] == ['get_weather']
    await llm.aclose()


def test_streaming_with_auto_tool_choice_fails_loudly(llm: OpenAICompatible) -> None:
    # llama.cpp's chatml-function-calling refuses this ("Automatic streaming tool choice is not
    # supported"); its server has already answered 200 and just ends the stream, without [DONE].
    with pytest.raises(StreamError, match=r'without \[DONE\]'):
        list(llm.stream_chat(WEATHER, tools=[WEATHER_TOOL], tool_choice='auto'))


def test_stop_words_and_request_id_reach_the_server(llm: OpenAICompatible) -> None:
    full = llm.generate('The days of the week are Monday,', **GREEDY)
    words = full.split()
    assert len(words) >= 3, full
    stop = words[1]
    cut = llm.generate('The days of the week are Monday,', stop_words=[stop], request_id=uuid.uuid4().hex, **GREEDY)
    assert cut == full[: full.index(stop)]


def test_call_timeout_is_honoured(llm: OpenAICompatible) -> None:
    story = [{'role': 'user', 'content': 'Write a long story about the sea.'}]
    started = time.monotonic()
    long_reply = llm.complete(story, temperature=0, max_new_tokens=200)
    took = time.monotonic() - started
    assert long_reply.usage is not None and long_reply.usage.completion_tokens > 50  # a reply that takes a while
    with pytest.raises(LLMTimeoutError):
        llm.chat(story, temperature=0, max_new_tokens=200, timeout=took / 10)


# ---------------------------------------------------------------------- the fault server


@pytest.fixture(scope='module')
def faults() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture
def remote(faults: FaultServer) -> Iterator[OpenAICompatible]:
    faults.script(Behaviour())
    engine = OpenAICompatible(faults.url, api_key='sk-secret-0042', retry_backoff=0.01)
    yield engine
    engine.close()


def test_stream_asks_for_usage_and_reports_it(remote: OpenAICompatible, faults: FaultServer) -> None:
    steps = list(remote.stream_chat(HELLO, max_new_tokens=9, stop_words=['<|im_end|>'], seed=3))
    response = steps[-1][2]
    assert response.text == 'Hello, world!' and response.finish_reason == 'stop'
    assert response.usage is not None and response.usage.completion_tokens == 4
    models, chat = faults.requests
    assert models.path == '/v1/models' and chat.path == '/v1/chat/completions'
    assert chat.body['model'] == MODEL and chat.body['stream'] is True
    assert chat.body['stream_options'] == {'include_usage': True}
    assert chat.body['max_tokens'] == 9 and chat.body['stop'] == ['<|im_end|>'] and chat.body['seed'] == 3
    assert 'top_k' not in chat.body and 'session_id' not in chat.body  # not OpenAI fields


def test_extra_body_and_prompt_path(faults: FaultServer) -> None:
    faults.script(Behaviour())
    with OpenAICompatible(faults.url, model_name='mine', meta_template=CHATML, extra_body={'min_p': 0.1}) as engine:
        assert engine.chat(HELLO) == 'Hello, world!'
    (request,) = faults.requests
    assert request.path == '/v1/completions' and request.body['model'] == 'mine'
    assert request.body['prompt'].endswith('<|im_start|>assistant\n') and request.body['min_p'] == 0.1
    assert request.body['stream'] is False


def test_http_errors_surface_with_the_server_message(remote: OpenAICompatible, faults: FaultServer) -> None:
    faults.script(Behaviour(status=400, message='messages: Field required'))
    with pytest.raises(RequestError, match='messages: Field required'):
        remote.chat(HELLO)


async def test_in_band_error_is_raised_not_returned_as_text(remote: OpenAICompatible, faults: FaultServer) -> None:
    faults.script(Behaviour(error_after=1, message='engine crashed'))
    with pytest.raises(StreamError, match='engine crashed'):
        list(remote.stream_chat(HELLO))
    with pytest.raises(StreamError, match='engine crashed'):
        [step async for step in remote.astream_chat(HELLO)]
    await remote.aclose()


def test_finish_reason_error_is_raised(remote: OpenAICompatible, faults: FaultServer) -> None:
    faults.script(Behaviour(finish_reason='error'))
    with pytest.raises(StreamError, match='finish_reason "error"'):
        remote.chat(HELLO)


def test_api_key_stays_secret(remote: OpenAICompatible, faults: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    faults.script(Behaviour(status=502, message='bad gateway'))
    with pytest.raises(Exception) as info:
        remote.chat(HELLO)
    assert faults.requests[-1].headers['Authorization'] == 'Bearer sk-secret-0042'
    assert 'sk-secret' not in repr(remote) + repr(remote.transport) + str(info.value)
    assert not [record for record in caplog.records if 'sk-secret' in record.getMessage()]
