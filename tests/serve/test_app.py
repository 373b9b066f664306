"""The server's HTTP behaviour, on in-process engines served from a background thread:
the OpenAI wire format, errors and their statuses, agents and sessions, saturation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests

from lagent.actions import Calculator
from lagent.errors import EngineUnavailableError
from lagent.llms import ScriptedLLM
from lagent.schema import Chunk, ToolCallDelta, Usage
from lagent.serve import ServedAgent, Server
from lagent.serve.protocol import merge_chunks
from tests.fixtures.waiting import wait_until
from tests.serve.engines import TICK, TickingLLM, calculator_script
from tests.serve.wire import AUTH, KEY, chat, content_of, events_of, post, user

REPLY = 'The sea is wide, and the sea is deep.'


def unavailable(request: Any) -> str:
    raise EngineUnavailableError('the model is not loaded')


@pytest.fixture(scope='module')
def engines() -> dict[str, Any]:
    return {
        'echo': ScriptedLLM([REPLY] * 10_000, chunk_size=2),
        'stopping': ScriptedLLM(['abc STOP def END ghi'] * 100, chunk_size=1, stop_words=['END']),
        'agent-llm': ScriptedLLM([calculator_script] * 10_000),
        'broken': ScriptedLLM([unavailable] * 100),
        'ticking': TickingLLM(ticks=1000, interval=0.01),
    }


@pytest.fixture(scope='module')
def url(engines: dict[str, Any]) -> Iterator[str]:
    models = {
        'echo': engines['echo'],
        'stopping': engines['stopping'],
        'broken': engines['broken'],
        'ticking': engines['ticking'],
        'calc': ServedAgent(engines['agent-llm'], [Calculator()]),
        'slow-agent': ServedAgent(engines['ticking'], []),
        'short-agent': ServedAgent(engines['agent-llm'], [Calculator()], max_turn=1),
    }
    with Server(models, api_keys=[KEY]).run_in_thread() as address:
        yield address


def assert_up(url: str) -> None:
    assert requests.get(f'{url}/health', timeout=10).json()['status'] == 'ok'


def assert_error(response: requests.Response, status: int, *words: str, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers['Content-Type'].startswith('application/json')
    error = response.json()['error']
    assert set(error) == {'message', 'type', 'param', 'code'}
    for word in words:
        assert word in error['message'], error['message']
    if param is not None:
        assert error['param'] == param
    return error


# ---------------------------------------------------------------------- models, auth


def test_models_lists_engines_and_agents_with_what_they_are(url: str) -> None:
    listing = requests.get(f'{url}/v1/models', headers=AUTH, timeout=10).json()
    entries = {entry['id']: entry for entry in listing['data']}
    assert listing['object'] == 'list'
    assert entries['echo']['lagent'] == {'kind': 'engine', 'engine': 'ScriptedLLM', 'tool_calling': 'native'}
    assert entries['calc']['lagent']['kind'] == 'agent'
    assert entries['calc']['lagent']['tools'] == ['Calculator']
    assert all(entry['object'] == 'model' and entry['owned_by'] == 'lagent' for entry in entries.values())


@pytest.mark.parametrize('header', [None, 'Bearer wrong', f'Basic {KEY}', 'Bearer'])
def test_v1_routes_need_a_key_health_and_page_do_not(url: str, header: str | None) -> None:
    headers = {'Authorization': header} if header else {}
    for response in (
        requests.get(f'{url}/v1/models', headers=headers, timeout=10),
        requests.post(f'{url}/v1/chat/completions', json={}, headers=headers, timeout=10),
        requests.get(f'{url}/v1/sessions/anything', headers=headers, timeout=10),
    ):
        error = assert_error(response, 401)
        assert error['code'] == 'invalid_api_key'
    assert_up(url)
    page = requests.get(url, timeout=10)
    assert page.status_code == 200 and '<select id="model"' in page.text
    assert requests.get(f'{url}/static/chat.js', timeout=10).status_code == 200


# ---------------------------------------------------------------------- engines


def test_chat_whole_and_streamed_carry_the_same_answer(url: str, engines: dict[str, Any]) -> None:
    whole = chat(url, model='echo', messages=user('Hi')).json()
    assert whole['object'] == 'chat.completion' and whole['model'] == 'echo'
    choice = whole['choices'][0]
    assert choice['message'] == {'role': 'assistant', 'content': REPLY} and choice['finish_reason'] == 'stop'
    assert whole['usage']['completion_tokens'] == len(REPLY) // 2 + 1
    streamed = chat(url, model='echo', messages=user('Hi'), stream=True, stream_options={'include_usage': True})
    assert streamed.headers['Content-Type'].startswith('text/event-stream')
    events = events_of(streamed.text)
    assert events[-1] == '[DONE]'
    chunks = events[:-1]
    assert chunks[0]['choices'][0]['delta']['role'] == 'assistant'
    assert {chunk['object'] for chunk in chunks} == {'chat.completion.chunk'}
    assert len({chunk['id'] for chunk in chunks}) == 1
    assert content_of(chunks) == REPLY
    finishes = [chunk['choices'][0]['finish_reason'] for chunk in chunks if chunk['choices']]
    assert finishes[-1] == 'stop' and set(finishes[:-1]) <= {None}
    assert chunks[-1]['choices'] == [] and chunks[-1]['usage'] == whole['usage']


def test_completions_send_the_raw_prompt(url: str, engines: dict[str, Any]) -> None:
    prompt = '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
    whole = post(url, '/v1/completions', {'model': 'echo', 'prompt': prompt}).json()
    assert engines['echo'].requests[-1] == prompt  # no template applied
    assert whole['object'] == 'text_completion' and whole['choices'][0]['text'] == REPLY
    events = events_of(post(url, '/v1/completions', {'model': 'echo', 'prompt': prompt, 'stream': True}).text)
    assert events[-1] == '[DONE]' and content_of(events) == REPLY
    assert {event['object'] for event in events[:-1]} == {'text_completion'}


def test_stop_adds_to_the_engines_own_stop_words(url: str) -> None:
    assert chat(url, model='stopping', messages=user('x')).json()['choices'][0]['message']['content'] == 'abc STOP def '
    stopped = chat(url, model='stopping', messages=user('x'), stop='STOP').json()
    assert stopped['choices'][0]['message']['content'] == 'abc '
    later = chat(url, model='stopping', messages=user('x'), stop=['ghi'], stream=True)
    assert content_of(events_of(later.text)) == 'abc STOP def '  # the engine's END still applies


def test_a_slow_reader_gets_fewer_larger_events_and_every_character(url: str) -> None:
    long_reply = ScriptedLLM(['x' * 3000 + 'END'], chunk_size=1)
    with (
        Server({'long': long_reply}).run_in_thread() as address,
        requests.post(
            f'{address}/v1/chat/completions', json={'model': 'long', 'messages': user('x'), 'stream': True}, stream=True
        ) as response,
    ):
        time.sleep(0.5)  # let the engine run ahead of this reader
        events = events_of(response.content.decode())
    assert content_of(events) == 'x' * 3000 + 'END'
    assert len(events) < 3000 / 2  # chunks that arrived together were sent as one event


def test_engine_errors_before_the_first_token_get_their_status(url: str) -> None:
    for stream in (False, True):
        error = assert_error(chat(url, model='broken', messages=user('x'), stream=stream), 503, 'not loaded')
        assert error['code'] == 'engine_unavailable' and error['type'] == 'server_error'
    assert_up(url)


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ('data', 'content_type', 'status', 'words', 'param'),
    [
        (b'{"model": "echo", "messages": [', 'application/json', 400, ['not valid JSON'], None),
        (b'[1, 2]', 'application/json', 400, ['JSON object'], None),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "temprature": 1}', 'application/json',
         400, ["unknown field 'temprature'"], 'temprature'),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}', 'application/json',
         400, ['max_tokens', 'greater than or equal to 1', '-5'], 'max_tokens'),
        (b'{"model": "echo"}', 'application/json', 400, ['messages', 'required'], 'messages'),
        (b'{"model": "echo", "messages": []}', 'application/json', 400, ['messages'], 'messages'),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x", "colour": 1}]}', 'application/json', 400,
         ["unknown field 'messages.0.colour'"], 'messages.0.colour'),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 2}', 'application/json', 400,
         ['n:', 'only 1'], 'n'),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 0.5}',
         'application/json', 400, ['presence_penalty', 'not supported'], 'presence_penalty'),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "stream_options": {}}',
         'application/json', 400, ['stream_options', 'stream: true'], 'stream_options'),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}',
         'application/json', 400, ['tool_choice', 'needs tools'], 'tool_choice'),
        (b'{"model": "echo", "messages": [{"role": "user", "content": "x"}]}', 'text/plain', 415,
         ['Content-Type: application/json', 'text/plain'], None),
        (b'model=echo', 'application/x-www-form-urlencoded', 415, ['application/json'], None),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 'application/json', 404,
         ["'nope' does not exist", 'echo'], 'model'),
    ],
)  # fmt: skip
def test_bad_requests_get_a_clear_4xx_and_the_server_stays_up(
    url: str, data: bytes, content_type: str, status: int, words: list[str], param: str | None
) -> None:
    response = requests.post(
        f'{url}/v1/chat/completions', data=data, headers={**AUTH, 'Content-Type': content_type}, timeout=10
    )
    assert_error(response, status, *words, param=param)
    assert_up(url)


def test_a_10_mb_body_is_refused_and_the_server_stays_up(url: str) -> None:
    body = b'{"model": "echo", "messages": [{"role": "user", "content": "' + b'x' * (10 << 20) + b'"}]}'
    response = requests.post(
        f'{url}/v1/chat/completions', data=body, headers={**AUTH, 'Content-Type': 'application/json'}, timeout=30
    )
    assert_error(response, 413, 'too large')
    assert_up(url)
    assert chat(url, model='echo', messages=user('still there?')).status_code == 200


def test_accepted_neutral_values_and_unknown_routes(url: str) -> None:
    neutral = chat(url, model='echo', messages=user('x'), presence_penalty=0, frequency_penalty=0, logprobs=False, n=1)
    assert neutral.status_code == 200
    assert_error(requests.get(f'{url}/v1/nothing', headers=AUTH, timeout=10), 404, 'no such endpoint')
    assert_error(requests.get(f'{url}/v1/chat/completions', headers=AUTH, timeout=10), 405, 'GET')
    batch = post(url, '/v1/completions', {'model': 'echo', 'prompt': ['a', 'b']})
    assert_error(batch, 400, 'one prompt string', param='prompt')


def test_requests_that_do_not_fit_the_model_are_refused(url: str) -> None:
    tool = {'type': 'function', 'function': {'name': 'f', 'parameters': {'type': 'object', 'properties': {}}}}
    assert_error(chat(url, model='calc', messages=user('x'), tools=[tool]), 400, 'own tools', 'Calculator')
    assert_error(chat(url, model='calc', messages=user('x'), temperature=0), 400, 'agent', param='temperature')
    assert_error(chat(url, model='echo', messages=user('x'), session_id='s'), 400, 'engine', param='session_id')
    assert_error(chat(url, model='ticking', messages=user('x'), tools=[tool]), 400, 'native tool calling')
    assert_error(post(url, '/v1/completions', {'model': 'calc', 'prompt': 'x'}), 400, 'agent')
    last = [{'role': 'user', 'content': 'x'}, {'role': 'assistant', 'content': 'y'}]
    assert_error(chat(url, model='calc', messages=last), 400, "the user's", param='messages')
    assert_error(chat(url, model='calc', messages=user('x'), session_id='bad id!'), 400, param='session_id')


# ---------------------------------------------------------------------- agents and sessions


def steps_of(answer: dict[str, Any]) -> list[str]:
    return [step['kind'] for step in answer['lagent']['steps']]


def test_agent_answer_carries_its_steps(url: str) -> None:
    answer = chat(url, model='calc', messages=user('What is 37 * 12?')).json()
    assert answer['choices'][0]['message']['content'] == '37 * 12 is 444.'
    assert answer['choices'][0]['finish_reason'] == 'stop'
    assert steps_of(answer) == ['model_reply', 'tool_call', 'tool_result', 'model_reply', 'final_answer']
    steps = answer['lagent']['steps']
    assert steps[1]['call']['function']['name'] == 'Calculator' and steps[2]['observation'] == '444'
    assert answer['lagent']['status'] == 0 and answer['lagent']['session_id'] is None
    assert answer['usage']['completion_tokens'] == 2  # one per reply, summed over the run


def test_agent_stream_sends_events_then_the_answer_as_content(url: str) -> None:
    events = events_of(chat(url, model='calc', messages=user('What is 37 * 12?'), stream=True).text)
    assert events[-1] == '[DONE]'
    kinds = [event['lagent']['event']['kind'] for event in events[:-1] if 'event' in event.get('lagent', {})]
    assert kinds == ['model_reply', 'tool_call', 'tool_result', 'text_delta', 'model_reply', 'final_answer']
    assert content_of(events[:-1]) == '37 * 12 is 444.'  # the answer only, as in the whole answer
    assert events[-2]['choices'][0]['finish_reason'] == 'stop'


def test_an_agent_out_of_turns_finishes_with_length(url: str) -> None:
    answer = chat(url, model='short-agent', messages=user('What is 37 * 12?')).json()
    assert answer['choices'][0]['finish_reason'] == 'length' and answer['lagent']['status'] == -3


def test_without_a_session_the_request_holds_the_conversation(url: str, engines: dict[str, Any]) -> None:
    history = [
        {'role': 'user', 'content': 'My name is Ada.'},
        {'role': 'assistant', 'content': 'Hello Ada.'},
        {'role': 'user', 'content': 'What is 37 * 12?'},
    ]
    chat(url, model='calc', messages=history)
    seen = engines['agent-llm'].requests[-2]  # the agent's first request of that run
    assert [message['content'] for message in seen if message['role'] != 'system'] == [m['content'] for m in history]


def test_a_session_keeps_the_conversation_until_deleted(url: str, engines: dict[str, Any]) -> None:
    first = chat(url, model='calc', messages=user('What is 37 * 12?'), session_id='ada-1').json()
    assert first['lagent']['session_id'] == 'ada-1'
    session = requests.get(f'{url}/v1/sessions/ada-1', headers=AUTH, timeout=10).json()
    assert session['model'] == 'calc' and session['busy'] is False
    assert [message['role'] for message in session['messages']] == ['user', 'assistant', 'tool', 'assistant']
    chat(url, model='calc', messages=user('And 38 * 12?'), session_id='ada-1')
    seen = engines['agent-llm'].requests[-2]
    assert 'What is 37 * 12?' in [message.get('content') for message in seen]  # the first exchange came along
    assert len(requests.get(f'{url}/v1/sessions/ada-1', headers=AUTH, timeout=10).json()['messages']) == 8
    other = chat(url, model='short-agent', messages=user('x'), session_id='ada-1')
    assert_error(other, 400, "belongs to model 'calc'", param='session_id')
    deleted = requests.delete(f'{url}/v1/sessions/ada-1', headers=AUTH, timeout=10)
    assert deleted.json() == {'id': 'ada-1', 'object': 'session.deleted', 'deleted': True}
    assert_error(requests.get(f'{url}/v1/sessions/ada-1', headers=AUTH, timeout=10), 404, "no session 'ada-1'")
    assert_error(requests.delete(f'{url}/v1/sessions/ada-1', headers=AUTH, timeout=10), 404)


def test_a_busy_session_refuses_a_second_request(url: str, engines: dict[str, Any]) -> None:
    ticking: TickingLLM = engines['ticking']
    ticking.reset()
    body = {'model': 'slow-agent', 'messages': user('tick'), 'session_id': 'busy-1', 'stream': True}
    with requests.post(f'{url}/v1/chat/completions', json=body, headers=AUTH, stream=True, timeout=30):
        assert ticking.started.wait(10)
        assert_error(chat(url, model='slow-agent', messages=user('again'), session_id='busy-1'), 409, 'busy-1')
        assert requests.get(f'{url}/v1/sessions/busy-1', headers=AUTH, timeout=10).json()['busy'] is True
        assert_error(requests.delete(f'{url}/v1/sessions/busy-1', headers=AUTH, timeout=10), 409)
    assert ticking.closed.wait(5)  # leaving the stream cancelled the run
    idle = wait_until(
        lambda: not requests.get(f'{url}/v1/sessions/busy-1', headers=AUTH, timeout=10).json()['busy'], 5, interval=0.05
    )
    assert idle, 'the session stayed busy after its client left'


# ---------------------------------------------------------------------- saturation and stopping


def test_past_max_concurrency_requests_get_429_with_retry_after() -> None:
    ticking = TickingLLM(ticks=1000, interval=0.01)
    server = Server({'ticking': ticking}, max_concurrency=2)
    body = {'model': 'ticking', 'messages': user('x'), 'stream': True}
    with server.run_in_thread() as address:
        streams = [
            requests.post(f'{address}/v1/chat/completions', json=body, stream=True, timeout=30) for _ in range(2)
        ]
        try:
            busy = requests.post(f'{address}/v1/chat/completions', json=body, timeout=10)
            error = assert_error(busy, 429, 'limit of 2')
            assert busy.headers['Retry-After'] == '1' and error['type'] == 'rate_limit_error'
        finally:
            for stream in streams:
                stream.close()
        assert wait_until(lambda: not server.state.active, 5), 'closed streams still hold their slots'
        short = {'model': 'ticking', 'messages': user('x'), 'max_tokens': 3}
        assert requests.post(f'{address}/v1/chat/completions', json=short, timeout=10).status_code == 200


def test_stop_lets_a_running_stream_finish_and_refuses_new_connections() -> None:
    ticking = TickingLLM(ticks=40, interval=0.02)
    server = Server({'ticking': ticking})
    received: dict[str, Any] = {}
    with server.run_in_thread() as address:
        body = {'model': 'ticking', 'messages': user('x'), 'stream': True}
        response = requests.post(f'{address}/v1/chat/completions', json=body, stream=True, timeout=30)
        reader = threading.Thread(target=lambda: received.update(text=response.content.decode()))
        reader.start()
        assert ticking.started.wait(10)
    # the with block has ended: the server stopped after the stream finished
    reader.join(10)
    events = events_of(received['text'])
    assert events[-1] == '[DONE]' and content_of(events) == TICK * 40
    with pytest.raises(requests.ConnectionError):
        requests.get(f'{address}/health', timeout=5)


async def test_stop_cancels_what_outlives_the_drain_timeout() -> None:
    ticking = TickingLLM(ticks=100_000, interval=0.01)
    server = Server({'ticking': ticking}, drain_timeout=0.3)
    address = await server.start(port=0)
    async with aiohttp.ClientSession() as session:
        body = {'model': 'ticking', 'messages': user('x'), 'stream': True}
        async with session.post(f'{address}/v1/chat/completions', json=body) as response:
            await response.content.readline()
            started = time.monotonic()
            await server.stop()
            assert time.monotonic() - started < 5
            rest = events_of((await response.content.read()).decode())
    assert rest[-1]['error']['message'] == 'the server shut down before the answer was complete'
    assert rest[-1]['error']['type'] == 'server_error' and '[DONE]' not in rest
    assert ticking.closed.wait(5) and ticking.produced < 10_000


# ---------------------------------------------------------------------- merging chunks


def test_merge_chunks_joins_text_and_fragments_of_one_call_keeping_the_end() -> None:
    merged = merge_chunks(
        [
            Chunk('Let me '),
            Chunk('check.', tool_calls=[ToolCallDelta(0, 'call_1', 'Calc', '{"expr')]),
            Chunk(tool_calls=[ToolCallDelta(0, None, 'ulator', 'ession": "1"}')]),
            Chunk(tool_calls=[ToolCallDelta(1, 'call_2', 'Calculator', '{}')]),
            Chunk(finish_reason='tool_calls', usage=Usage(completion_tokens=9)),
        ]
    )
    assert merged.text == 'Let me check.' and merged.finish_reason == 'tool_calls'
    assert merged.usage == Usage(completion_tokens=9)
    assert merged.tool_calls == [
        ToolCallDelta(0, 'call_1', 'Calculator', '{"expression": "1"}'),
        ToolCallDelta(1, 'call_2', 'Calculator', '{}'),
    ]
