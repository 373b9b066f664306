"""ScriptedLLM: replays replies through the whole contract; its sync and async
methods give the same results."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lagent.errors import LLMError
from lagent.llms.scripted import ScriptedLLM
from lagent.schema import FunctionCall, ModelStatusCode, Response, ToolCall, Usage

MESSAGES = [{'role': 'user', 'content': 'Hi'}]
CALL = ToolCall(id='call_1', function=FunctionCall(name='weather', arguments='{"city": "Oslo"}'))


def echo(request) -> str:
    """A reply that depends on the request only (so sync and async runs can be compared)."""
    text = request if isinstance(request, str) else ' | '.join(m.get('content') or '' for m in request)
    return f'You said: {text}. The end<|im_end|>ignored'


def make(**kwargs) -> ScriptedLLM:
    return ScriptedLLM([echo] * 50, chunk_size=kwargs.pop('chunk_size', 4), **kwargs)


async def collect(stream) -> list:
    return [item async for item in stream]


@pytest.mark.parametrize('kwargs', [{}, {'meta_template': 'chatml'}, {'stop_words': ['end']}, {'chunk_size': 1}])
async def test_sync_and_async_methods_agree(kwargs):
    sync, async_ = make(**kwargs), make(**kwargs)
    assert sync.generate('p1') == await async_.agenerate('p1')
    assert sync.generate(['p2', 'p3']) == await async_.agenerate(['p2', 'p3'])
    assert sync.chat(MESSAGES) == await async_.achat(MESSAGES)
    assert sync.chat([MESSAGES, MESSAGES * 2]) == await async_.achat([MESSAGES, MESSAGES * 2])
    assert list(sync.stream_chat(MESSAGES)) == await collect(async_.astream_chat(MESSAGES))
    assert list(sync.stream(MESSAGES)) == await collect(async_.astream(MESSAGES))
    assert list(sync.stream('p4')) == await collect(async_.astream('p4'))
    assert list(sync.stream_generate('p5')) == await collect(async_.astream_generate('p5'))
    assert sync.complete(MESSAGES) == await async_.acomplete(MESSAGES)
    if 'meta_template' not in kwargs:  # a meta_template cannot carry native tools
        assert sync.complete(MESSAGES, tools=[_tool()]) == await async_.acomplete(MESSAGES, tools=[_tool()])
    assert sync.requests == async_.requests
    assert sync.tools_seen == async_.tools_seen


@settings(max_examples=25, deadline=None)
@given(
    reply=st.text(alphabet='ab<|>é😀 ', max_size=30),
    chunk_size=st.integers(1, 8),
    stop_words=st.lists(st.text(alphabet='ab<|>é', min_size=1, max_size=3), max_size=2),
)
def test_sync_and_async_streams_agree_for_any_reply(reply, chunk_size, stop_words):
    sync = ScriptedLLM([reply], chunk_size=chunk_size, stop_words=stop_words)
    async_ = ScriptedLLM([reply], chunk_size=chunk_size, stop_words=stop_words)
    steps = list(sync.stream_chat(MESSAGES))
    assert steps == asyncio.run(collect(async_.astream_chat(MESSAGES)))
    # and the streamed text is exactly the whole reply cut at its first stop word
    one_shot = ScriptedLLM([reply], stop_words=stop_words).generate('x')
    assert steps[-1][1] == one_shot


def _tool() -> dict:
    return {'type': 'function', 'function': {'name': 'weather', 'parameters': {'type': 'object', 'properties': {}}}}


def test_replies_are_replayed_in_order_and_recorded():
    llm = ScriptedLLM(['one', 'two', 'three'])
    assert llm.chat(MESSAGES) == 'one'
    assert llm.generate('raw') == 'two'
    assert llm.requests == [MESSAGES, 'raw']
    assert list(llm.remaining) == ['three']


def test_running_out_of_replies_raises_llm_error():
    llm = ScriptedLLM(['only'])
    llm.generate('x')
    with pytest.raises(LLMError, match='ran out of replies: request 2 but only 1 scripted'):
        llm.generate('y')


def test_callable_replies_see_the_request():
    llm = ScriptedLLM([lambda request: f'{len(request)} characters'], meta_template='chatml')
    assert llm.chat(MESSAGES) == f'{len(llm.requests[0])} characters'
    assert llm.requests == ['<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n']


def test_tool_call_replies_and_tools_seen():
    llm = ScriptedLLM([CALL])
    response = llm.complete(MESSAGES, tools=[_tool()], tool_choice='auto')
    assert response.tool_calls == [CALL] and response.finish_reason == 'tool_calls' and response.text == ''
    assert llm.tools_seen == [[_tool()]]


def test_response_replies_keep_their_usage_and_finish_reason():
    reply = Response(text='cut short', finish_reason='length', usage=Usage(completion_tokens=2, total_tokens=5))
    assert ScriptedLLM([reply]).complete('x') == reply


def test_chunk_size_splits_the_stream():
    chunks = list(ScriptedLLM(['abcdefg'], chunk_size=3).stream('x'))
    assert [chunk.text for chunk in chunks] == ['abc', 'def', 'g']
    assert [chunk.finish_reason for chunk in chunks] == [None, None, 'stop']
    assert chunks[-1].usage == Usage(completion_tokens=3, total_tokens=3)


def test_stream_chat_last_step_is_end_with_the_response():
    steps = list(ScriptedLLM(['Hello world'], chunk_size=5).stream_chat(MESSAGES))
    assert [step[0] for step in steps] == [ModelStatusCode.STREAM_ING] * 3 + [ModelStatusCode.END]
    assert [step[1] for step in steps] == ['Hello', 'Hello worl', 'Hello world', 'Hello world']
    assert steps[-1][2].text == 'Hello world' and steps[-1][2].finish_reason == 'stop'


def test_empty_reply_still_ends_properly():
    steps = list(ScriptedLLM(['']).stream_chat(MESSAGES))
    assert steps == [(ModelStatusCode.END, '', Response(text='', finish_reason='stop', usage=steps[0][2].usage))]


def test_bad_scripts_are_rejected():
    with pytest.raises(ValueError, match='chunk_size must be at least 1'):
        ScriptedLLM(['x'], chunk_size=0)
    with pytest.raises(TypeError, match='scripted reply 0 must be a str, Response or ToolCall'):
        ScriptedLLM([lambda request: 42]).generate('x')


def test_batches_consume_replies_in_order():
    llm = ScriptedLLM(['a', 'b', 'c'])
    assert llm.generate(['1', '2', '3']) == ['a', 'b', 'c']


async def test_async_batches_consume_every_reply():
    llm = ScriptedLLM(['a', 'b', 'c'])
    assert sorted(await llm.agenerate(['1', '2', '3'])) == ['a', 'b', 'c']
