"""Streaming text: stop words, UTF-8 decoding, chunk accumulation and stream objects."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lagent.llms.streaming import AsyncStream, ChunkAccumulator, StopFilter, Stream, Utf8StreamDecoder
from lagent.schema import Chunk, ToolCallDelta, Usage

# A small alphabet makes stop words, overlaps and near misses frequent; the
# non-ASCII letters check that nothing depends on one byte per character.
ALPHABET = 'abé你😀\n'
texts = st.text(alphabet=ALPHABET, max_size=60)
stop_word_lists = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), max_size=4)


def reference_cut(text: str, stop_words: list[str]) -> str:
    """The documented semantics, by brute force: the reply ends where a stop
    string is first completed; when several complete at the same character,
    the one that started earlier wins."""
    for end in range(1, len(text) + 1):
        starts = [end - len(word) for word in stop_words if end >= len(word) and text[end - len(word) : end] == word]
        if starts:
            return text[: min(starts)]
    return text


def longest_held_suffix(text: str, stop_words: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop word."""
    best = 0
    for word in stop_words:
        for size in range(1, len(word)):
            if size <= len(text) and text.endswith(word[:size]):
                best = max(best, size)
    return best


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(cut, len(text)) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(text[start:point])
        start = point
    pieces.append(text[start:])
    return pieces


def run_filter(pieces: list[str], stop_words: list[str]) -> str:
    stop = StopFilter(stop_words)
    return ''.join(stop.feed(piece) for piece in pieces) + stop.flush()


@given(text=texts, stop_words=stop_word_lists, cuts=st.lists(st.integers(0, 60), max_size=20))
@example(text='abcd', stop_words=['abcd', 'bc'], cuts=[1, 2, 3])
@example(text='xaab', stop_words=['aab', 'ab'], cuts=[2])
@example(text='aaab', stop_words=['aaab'], cuts=[1, 2, 3])
@example(text='a😀b', stop_words=['😀'], cuts=[1, 2])
def test_any_chunking_gives_the_one_shot_result(text, stop_words, cuts):
    expected = reference_cut(text, stop_words)
    assert run_filter([text], stop_words) == expected
    assert run_filter(split(text, cuts), stop_words) == expected
    assert run_filter(list(text), stop_words) == expected


@settings(max_examples=300)
@given(text=texts, stop_words=stop_word_lists, cuts=st.lists(st.integers(0, 60), max_size=20))
def test_nothing_emitted_is_retracted_and_only_the_longest_partial_match_is_held(text, stop_words, cuts):
    stop = StopFilter(stop_words)
    final = reference_cut(text, stop_words)
    seen, emitted = '', ''
    for piece in split(text, cuts):
        seen += piece
        out = stop.feed(piece)
        emitted += out
        # what is emitted is always the start of the final reply: never taken back
        assert final.startswith(emitted)
        for word in stop_words:
            assert word not in emitted
        if stop.stopped:
            assert emitted == final
        else:
            # everything is emitted except the longest suffix that could still become a stop word
            held = longest_held_suffix(seen, stop_words)
            assert emitted == seen[: len(seen) - held]
            assert held < max(len(word) for word in stop_words) if stop_words else held == 0
    emitted += stop.flush()
    assert emitted == final


@given(text=texts, cuts=st.lists(st.integers(0, 60), max_size=10))
def test_no_stop_words_pass_everything_through_at_once(text, cuts):
    stop = StopFilter()
    for piece in split(text, cuts):
        assert stop.feed(piece) == piece
    assert stop.flush() == ''


def test_text_after_a_stop_word_is_ignored():
    stop = StopFilter(['<end>'])
    assert stop.feed('Hello<en') == 'Hello'
    assert stop.feed('d> world') == ''
    assert stop.stopped
    assert stop.feed('more') == ''
    assert stop.flush() == ''


def test_a_held_prefix_that_never_completes_is_released_at_flush():
    stop = StopFilter(['<|im_end|>'])
    assert stop.feed('answer <|im') == 'answer '
    assert stop.flush() == '<|im'


def test_duplicate_stop_words_are_merged_and_empty_ones_rejected():
    assert StopFilter(['x', 'x', 'y']).stop_words == ('x', 'y')
    with pytest.raises(ValueError, match='empty'):
        StopFilter(['ok', ''])


def test_long_adversarial_text_in_many_chunks():
    # near misses everywhere: every 'a' run could start the stop word; the filter
    # keeps at most len(stop) - 1 characters held, so the work per chunk stays bounded
    stop_word = 'a' * 20 + 'b'
    text = ('a' * 19 + 'c') * 50_000 + 'a' * 20 + 'b' + 'tail'
    stop = StopFilter([stop_word, 'zz'])
    out, fed, emitted = [], 0, 0
    for start in range(0, len(text), 7):
        piece = text[start : start + 7]
        out.append(stop.feed(piece))
        fed, emitted = fed + len(piece), emitted + len(out[-1])
        assert fed - emitted < len(stop_word) or stop.stopped
    assert ''.join(out) + stop.flush() == ('a' * 19 + 'c') * 50_000


class _CountingStopFilter(StopFilter):
    """Counts the characters the filter searches: a proxy for its work."""

    __slots__ = ('searched',)

    def __init__(self, stop_words):
        super().__init__(stop_words)
        self.searched = 0

    def _first_completed_stop(self, window):
        self.searched += len(window)
        return super()._first_completed_stop(window)


@pytest.mark.parametrize('chunk', [1, 5, 64])
def test_work_grows_linearly_with_the_text(chunk):
    def work(repeats: int) -> int:
        text = ('<|im_en' + 'x' * 9) * repeats  # near misses of the stop word everywhere
        stop = _CountingStopFilter(['<|im_end|>', '</s>'])
        for start in range(0, len(text), chunk):
            stop.feed(text[start : start + chunk])
        return stop.searched

    small, large = work(2_000), work(8_000)
    assert small > 0
    assert large <= 4.1 * small  # four times the text, four times the work: not quadratic


# ---------------------------------------------------------------------- UTF-8


@given(data=st.binary(max_size=80), cuts=st.lists(st.integers(0, 80), max_size=20))
@example(data='héllo 你好 😀'.encode(), cuts=[2, 8, 9, 14, 15])
@example(data=b'\xf0\x9f\x98', cuts=[1])  # a character cut off at the end
@example(data=b'\xff\xfe abc \xc3', cuts=[1, 5])
def test_decoding_any_byte_split_equals_decoding_at_once(data, cuts):
    points = sorted({min(cut, len(data)) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    decoder = Utf8StreamDecoder()
    decoded = ''.join(decoder.feed(piece) for piece in pieces) + decoder.flush()
    assert decoded == data.decode('utf-8', errors='replace')


@given(text=st.text(max_size=40))
def test_valid_text_fed_byte_by_byte_is_never_split(text):
    decoder = Utf8StreamDecoder()
    pieces = [decoder.feed(bytes([byte])) for byte in text.encode('utf-8')]
    assert ''.join(pieces) + decoder.flush() == text
    assert all(piece == '' or piece in text for piece in pieces)


# ---------------------------------------------------------------------- accumulation


def test_accumulator_joins_text_and_tool_call_fragments():
    accumulator = ChunkAccumulator()
    chunks = [
        Chunk(text='Let me '),
        Chunk(tool_calls=[ToolCallDelta(index=1, id='call_b', name='clock')]),
        Chunk(text='check.', tool_calls=[ToolCallDelta(index=0, id='call_a', name='weather', arguments='{"ci')]),
        Chunk(tool_calls=[ToolCallDelta(index=0, arguments='ty": "Par'), ToolCallDelta(index=1, arguments='{}')]),
        Chunk(tool_calls=[ToolCallDelta(index=0, arguments='is"}')]),
        Chunk(finish_reason='tool_calls', usage=Usage(prompt_tokens=3, completion_tokens=9, total_tokens=12)),
    ]
    for chunk in chunks:
        accumulator.add(chunk)
    response = accumulator.response()
    assert response.text == 'Let me check.'
    assert [call.id for call in response.tool_calls] == ['call_a', 'call_b']
    assert response.tool_calls[0].function.name == 'weather'
    assert response.tool_calls[0].function.parsed_arguments() == {'city': 'Paris'}
    assert response.tool_calls[1].function.parsed_arguments() == {}
    assert response.finish_reason == 'tool_calls'
    assert response.usage == Usage(prompt_tokens=3, completion_tokens=9, total_tokens=12)


def test_accumulator_fills_in_missing_ids_and_arguments():
    accumulator = ChunkAccumulator()
    accumulator.add(Chunk(tool_calls=[ToolCallDelta(index=2, name='ping')]))
    (call,) = accumulator.tool_calls
    assert call.id == 'call_2'
    assert call.function.arguments == '{}'


def test_accumulator_text_is_readable_while_streaming():
    accumulator = ChunkAccumulator()
    accumulator.add(Chunk(text='ab'))
    assert accumulator.text == 'ab'
    accumulator.add(Chunk(text='c'))
    accumulator.add(Chunk(text=''))
    assert accumulator.text == 'abc'
    assert accumulator.response().text == 'abc'
    assert accumulator.finish_reason is None and accumulator.usage is None


# ---------------------------------------------------------------------- stream objects


def _tracked_source(log: list[str], items=('a', 'b', 'c')):
    try:
        yield from items
    finally:
        log.append('closed')


def test_stream_close_runs_the_sources_finally():
    log: list[str] = []
    stream = Stream(_tracked_source(log))
    assert next(stream) == 'a'
    stream.close()
    assert log == ['closed']
    stream.close()  # twice is fine
    assert log == ['closed'] and stream.closed


def test_stream_as_context_manager_closes_on_exit():
    log: list[str] = []
    with Stream(_tracked_source(log)) as stream:
        assert next(stream) == 'a'
    assert log == ['closed']


def test_exhausted_stream_is_closed():
    log: list[str] = []
    stream = Stream(_tracked_source(log))
    assert list(stream) == ['a', 'b', 'c']
    assert stream.closed and log == ['closed']


def test_stream_closes_when_the_source_raises():
    def failing():
        yield 'a'
        raise RuntimeError('engine broke')

    stream = Stream(failing())
    next(stream)
    with pytest.raises(RuntimeError, match='engine broke'):
        next(stream)
    assert stream.closed


def test_stream_over_a_plain_iterator_closes_without_error():
    stream = Stream(iter([1, 2]))
    assert next(stream) == 1
    stream.close()


async def _atracked_source(log: list[str]):
    try:
        for item in ('a', 'b', 'c'):
            await asyncio.sleep(0)
            yield item
    finally:
        log.append('closed')


async def test_async_stream_aclose_runs_the_sources_finally():
    log: list[str] = []
    stream = AsyncStream(_atracked_source(log))
    assert await stream.__anext__() == 'a'
    await stream.aclose()
    assert log == ['closed']
    await stream.aclose()
    assert stream.closed


async def test_async_stream_context_manager_and_exhaustion():
    log: list[str] = []
    async with AsyncStream(_atracked_source(log)) as stream:
        assert await stream.__anext__() == 'a'
    assert log == ['closed']
    log.clear()
    stream = AsyncStream(_atracked_source(log))
    assert [item async for item in stream] == ['a', 'b', 'c']
    assert stream.closed and log == ['closed']
