"""The stream protocols on their own, bytes in, events out: the SSE framing (with
its edge cases: BOM, CR-only lines, a line split anywhere, a line-length cap,
linear work), the OpenAI SSE stream, NDJSON, and the OpenAI result shapes."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lagent.errors import StreamError
from lagent.llms.protocols import STREAM_END, NDJSONStream, SSEDecoder, SSEStream
from lagent.llms.protocols.openai_format import (
    answer_chunk,
    chat_answer,
    chat_chunks,
    completion_answer,
    completion_chunks,
)
from lagent.llms.results import finish_reason, openai_tool_deltas, openai_usage
from lagent.llms.streaming import ChunkAccumulator
from lagent.schema import Usage

# ---------------------------------------------------------------------- SSE framing


def decode_all(data: bytes, split_every: int | None = None, decoder: SSEDecoder | None = None) -> list[str]:
    decoder = decoder or SSEDecoder()
    if split_every is None:
        return decoder.feed(data)
    payloads = []
    for start in range(0, len(data), split_every):
        payloads += decoder.feed(data[start : start + split_every])
    return payloads


def test_sse_data_lines_and_done() -> None:
    stream = b'data: {"a": 1}\n\ndata: {"a": 2}\n\ndata: [DONE]\n\n'
    assert decode_all(stream) == ['{"a": 1}', '{"a": 2}', '[DONE]']


MIXED = (
    '\ufeffdata: {"t": "é"}\r\n\r\n: a comment\n\nevent: message\ndata: line one\ndata: line two\n\n'
    'data:no-space\r\rdata: 中文\n\ndata: x\r\n\ndata: y\n\r\ndata: [DONE]\n\n'
).encode()
MIXED_EVENTS = ['{"t": "é"}', 'line one\nline two', 'no-space', '中文', 'x', 'y', '[DONE]']


@pytest.mark.parametrize('split_every', [None, 1, 2, 3, 5, 7, 13])
def test_sse_events_split_anywhere_decode_the_same(split_every: int | None) -> None:
    assert decode_all(MIXED, split_every) == MIXED_EVENTS


@given(cuts=st.lists(st.integers(0, len(MIXED)), max_size=12))
def test_sse_any_split_of_any_line_ending_decodes_the_same(cuts: list[int]) -> None:
    decoder, payloads, start = SSEDecoder(), [], 0
    for cut in [*sorted(cuts), len(MIXED)]:
        payloads += decoder.feed(MIXED[start:cut])
        start = cut
    assert payloads == MIXED_EVENTS


def test_sse_cr_only_line_endings_are_valid() -> None:
    stream = b'data: {"a": 1}\r\rdata: {"a": 2}\r\rdata: [DONE]\r\r'
    assert decode_all(stream) == ['{"a": 1}', '{"a": 2}', '[DONE]']
    assert decode_all(stream, 1) == ['{"a": 1}', '{"a": 2}', '[DONE]']


@pytest.mark.parametrize('split_every', [None, 1, 2])
def test_sse_a_byte_order_mark_opens_the_stream_only(split_every: int | None) -> None:
    stream = b'\xef\xbb\xbfdata: first\n\ndata: \xef\xbb\xbfsecond\n\n'
    assert decode_all(stream, split_every) == ['first', '\ufeffsecond']


def test_sse_comments_and_unknown_fields_are_skipped() -> None:
    stream = b': ping - 2024-01-01\n\nid: 7\nretry: 1000\n\ndata: x\nid: 8\n\n'
    assert decode_all(stream) == ['x']


def test_sse_incomplete_event_waits_for_its_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a"') == []
    assert decoder.feed(b': 1}\n') == []
    assert decoder.feed(b'\n') == ['{"a": 1}']


def test_sse_error_event_is_raised() -> None:
    with pytest.raises(StreamError, match='overloaded'):
        SSEDecoder().feed(b'event: error\ndata: {"message": "overloaded"}\n\n')


def test_sse_invalid_utf8_is_raised_not_replaced() -> None:
    with pytest.raises(StreamError, match='UTF-8'):
        SSEDecoder().feed(b'data: \xff\xfe\n\n')


def test_sse_a_line_past_the_cap_is_a_clear_error() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    decoder.feed(b'data: ' + b'x' * 900)
    with pytest.raises(StreamError, match='more than 1000 bytes without ending an event'):
        decoder.feed(b'x' * 200)


def test_sse_an_event_just_under_the_cap_is_fine() -> None:
    decoder = SSEDecoder(max_event_bytes=1000)
    payload = b'y' * 990
    assert decode_all(b'data: ' + payload + b'\n\n', 7, decoder) == [payload.decode()]


def _time_long_line(size: int) -> float:
    decoder = SSEDecoder(max_event_bytes=1 << 30)
    piece = b'z' * 64
    start = time.perf_counter()
    decoder.feed(b'data: ')
    for _ in range(size // len(piece)):
        decoder.feed(piece)
    assert decoder.feed(b'\n\n') == ['z' * (size // len(piece) * len(piece))]
    return time.perf_counter() - start


def test_sse_decoding_a_line_fed_in_small_pieces_is_linear() -> None:
    small = min(_time_long_line(1 << 20) for _ in range(3))
    large = min(_time_long_line(1 << 22) for _ in range(3))
    # four times the bytes: about four times the work (quadratic would be sixteen)
    assert large < 8 * small, (small, large)


# ---------------------------------------------------------------------- the OpenAI SSE stream


def read(stream, data: bytes, split_every: int | None = None) -> tuple[list, object]:
    """Feed ``data`` and decode; return the events and how the stream ended (``None``: not yet)."""
    pieces = [data] if split_every is None else [data[i : i + split_every] for i in range(0, len(data), split_every)]
    events: list = []
    for piece in pieces:
        decoded, end = stream.decode(stream.feed(piece))
        events += decoded
        if end is not None:
            return events, end
    return events, None


def test_sse_stream_decodes_json_until_done_and_ignores_what_follows() -> None:
    events, end = read(SSEStream(), b'data: {"a": 1}\n\ndata:\n\ndata: [DONE]\n\ndata: {"late": 1}\n\n')
    assert events == [{'a': 1}] and end is STREAM_END


def test_sse_stream_raises_in_band_errors_after_the_events_before_them() -> None:
    events, end = read(SSEStream(), b'data: {"a": 1}\n\ndata: {"error": {"message": "KV cache full"}}\n\n')
    assert events == [{'a': 1}]
    assert isinstance(end, StreamError) and 'KV cache full' in str(end)


@pytest.mark.parametrize(
    ('payload', 'match'),
    [
        (b'{"a": ', 'not JSON'),
        (b'{"a": 1} trailing', 'not JSON'),
        (b'[' * 100_000 + b']' * 100_000, 'not JSON'),  # too deep for the decoder: an error, not a crash
    ],
)
def test_sse_stream_malformed_events_are_stream_errors(payload: bytes, match: str) -> None:
    _, end = read(SSEStream(), b'data: ' + payload + b'\n\n')
    assert isinstance(end, StreamError) and match in str(end)


def test_sse_stream_without_done_is_an_error_at_the_end() -> None:
    stream = SSEStream()
    assert read(stream, b'data: {"a": 1}\n\n') == ([{'a': 1}], None)
    events, end = stream.finish()
    assert events == [] and isinstance(end, StreamError) and '[DONE]' in str(end)


def test_sse_stream_that_is_one_json_document_says_so() -> None:
    stream = SSEStream()
    read(stream, b'{"error": {"message": "model not loaded"}}')
    assert 'model not loaded' in str(stream.finish()[1])
    stream = SSEStream()
    read(stream, b'{"choices": [{"text": "hi"}]}\n')
    assert 'one JSON document instead of an event stream' in str(stream.finish()[1])


# ---------------------------------------------------------------------- NDJSON


def test_ndjson_lines_split_anywhere() -> None:
    data = b'\xef\xbb\xbf{"t": "a"}\n\n{"t": "\xc3\xa9"}\r\n{"t": "c"}'
    for split_every in (None, 1, 3):
        stream = NDJSONStream()
        events, end = read(stream, data, split_every)
        assert end is None
        more, end = stream.finish()
        assert events + more == [{'t': 'a'}, {'t': 'é'}, {'t': 'c'}] and end is STREAM_END


def test_ndjson_with_a_final_event_stops_there_and_needs_it() -> None:
    final = NDJSONStream(final=lambda event: event.get('done') is True)
    events, end = read(final, b'{"t": "a", "done": false}\n{"t": "", "done": true}\n{"late": 1}\n')
    assert events == [{'t': 'a', 'done': False}, {'t': '', 'done': True}] and end is STREAM_END
    cut = NDJSONStream(final=lambda event: event.get('done') is True)
    assert read(cut, b'{"t": "a", "done": false}\n')[1] is None
    assert isinstance(cut.finish()[1], StreamError)


def test_ndjson_errors() -> None:
    events, end = read(NDJSONStream(), b'{"t": "a"}\n{"error": "model \'x\' not found"}\n')
    assert events == [{'t': 'a'}] and "model 'x' not found" in str(end)
    assert 'not JSON' in str(read(NDJSONStream(), b'{"t": \n')[1])
    with pytest.raises(StreamError, match='more than 64 bytes without ending a line'):
        NDJSONStream(max_line_bytes=64).feed(b'{' * 65)


# ---------------------------------------------------------------------- OpenAI result shapes


def test_events_read_together_merge_into_one_chunk() -> None:
    def call(arguments: str, **fields) -> dict:
        return {'choices': [{'index': 0, 'delta': {'tool_calls': [{'index': 0, 'function': {'arguments': arguments},
                                                                   **fields}]}}]}  # fmt: skip

    events = [
        {'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': 'Let me check. '}}]},
        call('{"ci', id='call_1', type='function'),
        call('ty": "Paris"}'),
        {'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'tool_calls'}]},
        {'choices': [], 'usage': {'prompt_tokens': 3, 'completion_tokens': 9, 'total_tokens': 12}},
    ]
    events[1]['choices'][0]['delta']['tool_calls'][0]['function']['name'] = 'get_weather'
    (merged,) = chat_chunks(events)
    accumulator = ChunkAccumulator()
    accumulator.add(merged)
    response = accumulator.response()
    assert response.text == 'Let me check. ' and response.finish_reason == 'tool_calls'
    assert response.tool_calls[0].id == 'call_1' and response.tool_calls[0].function.name == 'get_weather'
    assert response.tool_calls[0].function.parsed_arguments() == {'city': 'Paris'}
    assert response.usage is not None and response.usage.total_tokens == 12
    texts = [{'choices': [{'index': 0, 'text': t, 'finish_reason': None}]} for t in ('a', '', 'b')]
    assert [chunk.text for chunk in completion_chunks(texts)] == ['ab']
    assert completion_chunks(texts[1:2]) == []


def test_finish_reasons_in_openai_words() -> None:
    assert [finish_reason(r) for r in (None, 'stop', 'eos_token', 'max_tokens', 'function_call')] == [
        None,
        'stop',
        'stop',
        'length',
        'tool_calls',
    ]
    with pytest.raises(StreamError, match='"error"'):
        finish_reason('error')


def test_usage_counts_must_be_token_counts() -> None:
    assert openai_usage({'prompt_tokens': 3, 'completion_tokens': None}) == Usage(prompt_tokens=3)
    assert openai_usage(None) is None and openai_usage({}) is None


def content_event(value: object) -> dict:
    return {'choices': [{'index': 0, 'delta': {'content': value}}]}


def completion_event(value: object) -> dict:
    return {'choices': [{'index': 0, 'text': value}]}


MALFORMED = {
    'chat content is a number': (chat_chunks, [content_event(5)]),
    'chat content is a list': (chat_chunks, [content_event(['a'])]),
    'chat content is an object, merged': (chat_chunks, [content_event('a'), content_event({'b': 1})]),
    'completion text is a number': (completion_chunks, [completion_event(7)]),
    'completion text is a bool, merged': (completion_chunks, [completion_event('a'), completion_event(True)]),
    'finish_reason is an int': (completion_chunks, [{'choices': [{'text': 'a', 'finish_reason': 1}]}]),
    'usage count is a string': (completion_chunks, [{'choices': [], 'usage': {'completion_tokens': '7'}}]),
    'usage count is a float': (chat_chunks, [{'choices': [], 'usage': {'prompt_tokens': 7.5}}]),
    'usage count is negative': (chat_chunks, [{'choices': [], 'usage': {'total_tokens': -1}}]),
    'usage count is a bool': (chat_chunks, [{'choices': [], 'usage': {'total_tokens': True}}]),
    'usage is a list': (chat_chunks, [{'choices': [], 'usage': [1, 2]}]),
    'tool_calls is a string': (chat_chunks, [{'choices': [{'delta': {'tool_calls': 'get_weather'}}]}]),
    'tool call index is a string': (chat_chunks, [{'choices': [{'delta': {'tool_calls': [{'index': '0'}]}}]}]),
    'tool call arguments are an object': (
        chat_chunks,
        [{'choices': [{'delta': {'tool_calls': [{'function': {'arguments': {'a': 1}}}]}}]}],
    ),
}


@pytest.mark.parametrize('case', list(MALFORMED))
def test_malformed_fields_raise_stream_errors_never_chunks(case: str) -> None:
    parse, events = MALFORMED[case]
    with pytest.raises(StreamError, match=r'not a|malformed|token count'):
        parse(events)


def test_whole_answers() -> None:
    call = {'id': 'c', 'type': 'function', 'function': {'name': 'f', 'arguments': '{}'}}
    answer = {
        'choices': [{'message': {'content': None, 'tool_calls': [call]}, 'finish_reason': 'tool_calls'}],
        'usage': {'prompt_tokens': 1, 'completion_tokens': 2, 'total_tokens': 3},
    }
    chunk = answer_chunk(answer, chat_answer)
    assert chunk.text == '' and chunk.tool_calls == openai_tool_deltas([{'index': 0, **call}])
    assert chunk.finish_reason == 'tool_calls' and chunk.usage == Usage(
        prompt_tokens=1, completion_tokens=2, total_tokens=3
    )
    assert answer_chunk({'choices': [{'text': 'hi', 'finish_reason': 'length'}]}, completion_answer).text == 'hi'
    with pytest.raises(StreamError, match='quota'):
        answer_chunk({'error': {'message': 'quota'}}, chat_answer)
    with pytest.raises(StreamError, match='unexpected answer'):
        answer_chunk({'choices': []}, chat_answer)
    with pytest.raises(StreamError, match='not a string'):
        answer_chunk({'choices': [{'message': {'content': 42}}]}, chat_answer)
