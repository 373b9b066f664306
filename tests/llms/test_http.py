"""The HTTP transport: the SSE decoder on its own, then retries, timeouts, errors
and secrets against a server that speaks lmdeploy's protocol and fails on demand."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import time
from collections.abc import Iterator

import pytest
import requests
import urllib3.exceptions

from lagent.errors import (
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    RequestError,
    ServerError,
    StreamError,
)
from lagent.llms._http_errors import parse_retry_after
from lagent.llms.http import HTTPTransport, translate_errors
from lagent.llms.lmdeploy_client import LMDeployClient
from lagent.llms.openai_compatible import GPTAPI, OpenAICompatible
from lagent.llms.protocols import NDJSONStream, SSEStream, per_event_items
from lagent.schema import Chunk, Usage
from tests.faults.campaign import ChaosProcess, chaos_server, shows_secret
from tests.fixtures.fault_server import Behaviour, FaultServer, fault_server
from tests.fixtures.servers import closed_port_url

SECRET = 'sk-test-7f3a9c-do-not-leak'
BODY = {'model': 'm', 'prompt': 'Hi', 'stream': True}


def text_of(events: list[dict]) -> list[str]:
    """The parser the tests stream with: the text of each event."""
    return [event['choices'][0]['text'] for event in events if event['choices']]


# ---------------------------------------------------------------------- transport against the fault server


@pytest.fixture(scope='module')
def server_module() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture
def server(server_module: FaultServer) -> FaultServer:
    server_module.script(Behaviour())
    return server_module


def transport(server: FaultServer, **kwargs) -> HTTPTransport:
    kwargs.setdefault('retry_backoff', 0.01)
    return HTTPTransport(server.url + '/v1', **kwargs)


def collect(client: HTTPTransport, **kwargs) -> list[str]:
    return list(client.stream('/completions', BODY, text_of, protocol=SSEStream, **kwargs))


async def acollect(client: HTTPTransport, **kwargs) -> list[str]:
    return [text async for text in client.astream('/completions', BODY, text_of, protocol=SSEStream, **kwargs)]


def test_stream_yields_each_event_until_done(server: FaultServer) -> None:
    assert collect(transport(server)) == ['Hello', ',', ' world', '!']


async def test_astream_yields_each_event_until_done(server: FaultServer) -> None:
    client = transport(server)
    try:
        assert await acollect(client) == ['Hello', ',', ' world', '!']
    finally:
        await client.aclose()


def test_500_then_success_is_retried(server: FaultServer) -> None:
    server.script(Behaviour(status=500, message='engine hiccup'), Behaviour())
    assert collect(transport(server)) == ['Hello', ',', ' world', '!']
    assert len(server.requests) == 2


async def test_500_then_success_is_retried_async(server: FaultServer) -> None:
    server.script(Behaviour(status=503, message='warming up'), Behaviour(status=500), Behaviour())
    client = transport(server)
    try:
        assert await acollect(client) == ['Hello', ',', ' world', '!']
    finally:
        await client.aclose()
    assert len(server.requests) == 3


def test_persistent_500_gives_up_after_counted_attempts(server: FaultServer) -> None:
    server.script(Behaviour(status=500, message='CUDA out of memory'))
    with pytest.raises(ServerError, match='CUDA out of memory') as info:
        collect(transport(server, max_retries=2))
    assert info.value.status_code == 500 and info.value.body['object'] == 'error'
    assert len(server.requests) == 3
    assert 'gave up after 3 attempts' in ''.join(info.value.__notes__)


def test_400_is_not_retried_and_its_message_surfaces(server: FaultServer) -> None:
    server.script(Behaviour(status=400, message='top_p must be in (0, 1]'), Behaviour())
    with pytest.raises(RequestError, match=r'HTTP 400: top_p must be in \(0, 1\]') as info:
        collect(transport(server))
    assert info.value.message == 'top_p must be in (0, 1]'
    assert len(server.requests) == 1


async def test_400_is_not_retried_async(server: FaultServer) -> None:
    server.script(Behaviour(status=404, message="The model 'x' does not exist."), Behaviour())
    client = transport(server)
    with pytest.raises(RequestError, match='does not exist'):
        await client.apost_json('/completions', {'model': 'x', 'prompt': 'Hi'})
    await client.aclose()
    assert len(server.requests) == 1


@pytest.mark.parametrize('use_async', [False, True])
async def test_429_waits_for_retry_after(server: FaultServer, use_async: bool) -> None:
    server.script(Behaviour(status=429, message='slow down', retry_after='1'), Behaviour())
    client = transport(server)
    texts = await acollect(client) if use_async else collect(client)
    await client.aclose()
    assert texts == ['Hello', ',', ' world', '!']
    first, second = server.requests
    assert second.at - first.at >= 0.95  # the backoff alone would be ~0.01 s


def test_429_without_retries_left_raises_rate_limit_error(server: FaultServer) -> None:
    server.script(Behaviour(status=429, message='quota exceeded', retry_after='0'))
    with pytest.raises(RateLimitError, match='quota exceeded'):
        collect(transport(server, max_retries=1))
    assert len(server.requests) == 2


@pytest.mark.parametrize('use_async', [False, True])
async def test_connection_dropped_mid_stream_raises_and_is_not_retried(server: FaultServer, use_async: bool) -> None:
    server.script(Behaviour(tokens=['a', 'b', 'c', 'd'], drop_after=2))
    client = transport(server)
    received: list[str] = []
    with pytest.raises(LLMConnectionError):
        if use_async:
            async for text in client.astream('/completions', BODY, text_of, protocol=SSEStream):
                received.append(text)
        else:
            for text in client.stream('/completions', BODY, text_of, protocol=SSEStream):
                received.append(text)
    await client.aclose()
    assert received == ['a', 'b']
    assert len(server.requests) == 1


@pytest.mark.parametrize('use_async', [False, True])
async def test_malformed_event_json_is_raised(server: FaultServer, use_async: bool) -> None:
    server.script(Behaviour(malformed_after=1))
    client = transport(server)
    with pytest.raises(StreamError, match='not JSON'):
        await acollect(client) if use_async else collect(client)
    await client.aclose()


@pytest.mark.parametrize('use_async', [False, True])
async def test_in_band_error_event_is_raised_with_its_message(server: FaultServer, use_async: bool) -> None:
    server.script(Behaviour(error_after=2, message='request 12 was aborted: out of KV cache'))
    client = transport(server)
    with pytest.raises(StreamError, match='out of KV cache') as info:
        await acollect(client) if use_async else collect(client)
    await client.aclose()
    assert info.value.body['error']['code'] == 500


@pytest.mark.parametrize('use_async', [False, True])
async def test_stalled_stream_hits_the_idle_timeout(server: FaultServer, use_async: bool) -> None:
    server.script(Behaviour(stall_after=1))
    client = transport(server, idle_timeout=0.5, max_retries=0)
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        await acollect(client) if use_async else collect(client)
    await client.aclose()
    assert 0.4 < time.monotonic() - start < 5


@pytest.mark.parametrize('use_async', [False, True])
async def test_slow_stream_hits_the_total_timeout(server: FaultServer, use_async: bool) -> None:
    server.script(Behaviour(tokens=['x'] * 100, delay=0.05))  # each event in time, the whole too slow
    client = transport(server, idle_timeout=5, timeout=0.6)
    start = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        await acollect(client) if use_async else collect(client)
    await client.aclose()
    assert 0.5 < time.monotonic() - start < 3


def test_per_call_timeout_overrides_the_default(server: FaultServer) -> None:
    server.script(Behaviour(tokens=['x'] * 100, delay=0.05))
    with pytest.raises(LLMTimeoutError):
        collect(transport(server, timeout=600), timeout=0.3)


@pytest.mark.parametrize('use_async', [False, True])
async def test_unreachable_server_raises_connection_error_after_retries(use_async: bool) -> None:
    client = HTTPTransport(f'{closed_port_url()}/v1', max_retries=2, retry_backoff=0.01)
    with pytest.raises(LLMConnectionError) as info:
        if use_async:
            await client.aget_json('/models')
        else:
            client.get_json('/models')
    await client.aclose()
    assert 'gave up after 3 attempts' in ''.join(info.value.__notes__)
    assert not isinstance(info.value, LLMTimeoutError)  # refused is not slow (urllib3 files it under timeouts)


@pytest.mark.parametrize('use_async', [False, True])
async def test_closing_a_stream_early_closes_the_connection(server: FaultServer, use_async: bool) -> None:
    server.script(Behaviour(tokens=['x'] * 200, delay=0.02))
    client = transport(server)
    if use_async:
        stream = client.astream('/completions', BODY, text_of, protocol=SSEStream)
        assert await stream.__anext__() == 'x'
        await stream.aclose()
    else:
        stream = client.stream('/completions', BODY, text_of, protocol=SSEStream)
        assert next(stream) == 'x'
        stream.close()
    deadline = time.monotonic() + 3
    while server.disconnects == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await client.aclose()
    assert server.disconnects == 1


@pytest.mark.parametrize('use_async', [False, True])
async def test_api_key_is_sent_as_bearer_and_never_shown(
    server: FaultServer, use_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script(Behaviour(status=500, message='boom'))
    client = transport(server, api_key=SECRET, max_retries=1)
    with pytest.raises(ServerError) as info:
        await acollect(client, request_id='req-1') if use_async else collect(client, request_id='req-1')
    await client.aclose()
    assert all(r.headers['Authorization'] == f'Bearer {SECRET}' for r in server.requests)
    assert all(r.headers['X-Request-Id'] == 'req-1' for r in server.requests)
    assert SECRET not in repr(client)
    shown = [str(info.value), repr(info.value), *info.value.__notes__, json.dumps(info.value.body)]
    assert not [text for text in shown if SECRET in text]
    assert caplog.records, 'the retry should have been logged'
    assert not [record for record in caplog.records if SECRET in record.getMessage()]


def test_non_json_answer_is_raised(server: FaultServer) -> None:
    client = transport(server)
    with pytest.raises(StreamError, match='not JSON'):
        client.get_json('/../health')


async def test_256_concurrent_async_streams(server: FaultServer) -> None:
    server.script(Behaviour(tokens=[f'{i} ' for i in range(50)]))
    client = transport(server)
    try:
        results = await asyncio.gather(*(acollect(client) for _ in range(256)))
    finally:
        await client.aclose()
    assert len(results) == 256
    assert all(''.join(texts) == ''.join(f'{i} ' for i in range(50)) for texts in results)


# ---------------------------------------------------------------------- the chaos server: faults a real server only makes by accident


@pytest.fixture(scope='module')
def chaos_module() -> Iterator[ChaosProcess]:
    with chaos_server() as running:
        yield running


@pytest.fixture
def chaos(chaos_module: ChaosProcess) -> ChaosProcess:
    chaos_module.plan()
    return chaos_module


def chaos_client(server: ChaosProcess, **kwargs) -> HTTPTransport:
    kwargs.setdefault('retry_backoff', 0.01)
    return HTTPTransport(server.url + '/v1', **kwargs)


async def call(client: HTTPTransport, use_async: bool, *, whole: bool = False, **kwargs) -> object:
    """A streamed (or whole) completion through the sync or async path; closes the async session."""
    try:
        if whole:
            body = {**BODY, 'stream': False}
            if use_async:
                return await client.apost_json('/completions', body, **kwargs)
            return client.post_json('/completions', body, **kwargs)
        return await acollect(client, **kwargs) if use_async else collect(client, **kwargs)
    finally:
        await client.aclose()


def assert_on_time(started: float, limit: float) -> None:
    elapsed = time.monotonic() - started
    assert elapsed < limit + 1.0, f'took {elapsed:.2f}s; the total timeout was {limit}s'


@pytest.mark.parametrize('use_async', [False, True])
@pytest.mark.parametrize(
    ('plan', 'whole'),
    [
        ({'headers_mode': 'slow'}, False),  # the status line and headers, a byte every 50 ms
        ({'dribble': 0.02}, False),  # every byte of the body on its own
        ({'one_huge_chunk': True, 'delay': 0.01}, False),  # one HTTP chunk announced, dribbling in
        ({'dribble': 0.05}, True),  # a whole answer, slow-loris
        ({'cut_at': 0, 'end': 'stall'}, True),  # a whole answer: headers, then nothing
    ],
    ids=['slow-headers', 'slow-body', 'dribbling-chunk', 'slow-answer', 'stalled-answer'],
)
async def test_the_total_timeout_holds_against_servers_that_trickle(
    chaos: ChaosProcess, use_async: bool, plan: dict, whole: bool
) -> None:
    chaos.plan(**plan)
    client = chaos_client(chaos, idle_timeout=5, timeout=0.8, max_retries=0)
    started = time.monotonic()
    with pytest.raises(LLMTimeoutError, match=r'timed out|total timeout'):
        await call(client, use_async, whole=whole)
    assert_on_time(started, 0.8)


def test_a_read_timeout_inside_a_whole_answer_is_a_timeout() -> None:
    inner = urllib3.exceptions.ReadTimeoutError(None, '/v1/completions', 'Read timed out.')  # type: ignore[arg-type]
    with pytest.raises(LLMTimeoutError), translate_errors('POST /v1/completions'):
        raise requests.ConnectionError(inner)  # what requests raises when the body read times out


@pytest.mark.parametrize(
    ('value', 'seconds'),
    [
        ('2', 2.0),
        ('0.25', 0.25),
        ('-30', 0.0),
        ('nan', None),
        ('inf', None),
        ('-inf', None),
        ('1e12', 60.0),
        ('soon', None),
        ('', None),
        ('Wed, 21 Oct 2015 07:28:00 GMT', 0.0),  # in the past
        ('Wed, 21 Oct 2015 07:28:00 -0000', 0.0),  # no time zone: UTC
        ('Mon, 99 Foo 99999 99:99:99 GMT', None),
    ],
)
def test_retry_after_is_a_finite_number_of_seconds_or_ignored(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


def test_retry_after_as_a_future_date() -> None:
    seconds = parse_retry_after(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert seconds is not None and 28 <= seconds <= 30


@pytest.mark.parametrize('value', ['nan', 'inf', '-1', 'Wed, 21 Oct 2015 07:28:00 GMT', 'garbage'])
async def test_odd_retry_after_neither_breaks_nor_stalls_the_event_loop(chaos: ChaosProcess, value: str) -> None:
    chaos.plan(status=429, retry_after=value, failing=1)
    client = chaos_client(chaos)
    ticks = asyncio.create_task(asyncio.sleep(0.05))  # an unrelated timer on the same loop
    assert ''.join(await call(client, True)) == 'Hello, world!'
    await asyncio.wait_for(ticks, 1)


@pytest.mark.parametrize('use_async', [False, True])
async def test_a_key_echoed_in_an_error_body_is_redacted(chaos: ChaosProcess, use_async: bool) -> None:
    chaos.plan(status=401, error_body='echo_key')
    client = chaos_client(chaos, api_key=SECRET)
    with pytest.raises(RequestError) as info:
        await call(client, use_async)
    assert 'Incorrect API key provided: ***' in str(info.value)
    assert not shows_secret(info.value, SECRET)


@pytest.mark.parametrize('use_async', [False, True])
@pytest.mark.parametrize(
    'plan', [{'status': 302, 'location': '/v1/completions'}, {'status_line': 'SSH-2.0'}, {'headers_mode': 'many'}]
)
async def test_library_errors_never_carry_the_key(chaos: ChaosProcess, use_async: bool, plan: dict) -> None:
    chaos.plan(**plan)
    client = chaos_client(chaos, api_key=SECRET, max_retries=0)
    try:
        await call(client, use_async)
    except LLMError as error:
        assert not shows_secret(error, SECRET)


@pytest.mark.parametrize('key', ['sk-a\r\nX-Injected: 1', 'sk-\n', 'sk-\x00', ' sk-padded', 'sk-ключ'])
def test_keys_that_cannot_be_a_header_are_refused_at_construction(key: str) -> None:
    with pytest.raises(ValueError, match='api_key') as info:
        HTTPTransport('http://127.0.0.1:1/v1', api_key=key)
    assert key not in str(info.value)


@pytest.mark.parametrize('use_async', [False, True])
async def test_a_request_id_with_cr_lf_is_refused_at_the_call_and_never_sent(
    server: FaultServer, use_async: bool
) -> None:
    client = transport(server)
    bad = 'id\r\nX-Evil: 1'
    with pytest.raises(ValueError, match='request_id'):
        if use_async:
            client.astream('/completions', BODY, text_of, protocol=SSEStream, request_id=bad)
        else:
            client.stream('/completions', BODY, text_of, protocol=SSEStream, request_id=bad)
    with pytest.raises(ValueError, match='request_id'):
        if use_async:
            await client.apost_json('/completions', BODY, request_id=bad)
        else:
            client.post_json('/completions', BODY, request_id=bad)
    await client.aclose()
    assert server.requests == []


@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_a_body_json_cannot_carry_is_refused_before_sending(value: float) -> None:
    with pytest.raises(ValueError, match='NaN or infinity'):
        HTTPTransport('http://127.0.0.1:1/v1').post_json('/completions', {'temperature': value})


@pytest.mark.parametrize(
    'url',
    [None, '', 'localhost:8000', '127.0.0.1:8000', 'ftp://host/v1', 'http://', 'http://host:99999', 'http://a b'],
)
def test_urls_that_are_not_http_addresses_are_refused_at_construction(url: object) -> None:
    with pytest.raises(ValueError, match='URL'):
        HTTPTransport(url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ('name', 'value'),
    [('timeout', float('inf')), ('timeout', float('nan')), ('idle_timeout', 0), ('connect_timeout', -1),
     ('timeout', '5'), ('max_retries', -1), ('max_retries', True), ('retry_backoff', float('nan'))],
)  # fmt: skip
def test_settings_that_make_no_sense_are_refused(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        HTTPTransport('http://127.0.0.1:1/v1', **{name: value})


@pytest.mark.parametrize('use_async', [False, True])
async def test_per_event_items_gives_one_item_per_event_even_when_read_together(
    chaos: ChaosProcess, use_async: bool
) -> None:
    chaos.plan(tokens=['a', 'b', 'c', 'd'], writes='all')  # every event in one write: one read

    def joined(events: list[dict]) -> list[str]:
        return [''.join(text_of(events))]

    async def items(client: HTTPTransport) -> list[str]:
        if use_async:
            return [item async for item in client.astream('/completions', BODY, joined, protocol=SSEStream)]
        return list(client.stream('/completions', BODY, joined, protocol=SSEStream))

    client = chaos_client(chaos)
    try:
        assert await items(client) == ['abcd']  # one read, one item
        with per_event_items():
            assert await items(client) == ['a', 'b', 'c', 'd', '']
    finally:
        await client.aclose()


async def test_async_items_of_one_read_come_as_one_list_and_one_by_one(chaos: ChaosProcess) -> None:
    chaos.plan(tokens=['a', 'b', 'c', 'd'], writes='all')  # every event in one write: one read
    client = chaos_client(chaos)
    try:
        with per_event_items():
            stream = client.astream('/completions', BODY, text_of, protocol=SSEStream)
            assert [batch async for batch in stream.batches()] == [['a', 'b', 'c', 'd', '']]
            stream = client.astream('/completions', BODY, text_of, protocol=SSEStream)
            assert [item async for item in stream] == ['a', 'b', 'c', 'd', '']
    finally:
        await client.aclose()


# ---------------------------------------------------------------------- NDJSON through the transport (Ollama's /api/chat)


def ollama_chunks(events: list[dict]) -> list[Chunk]:
    """Ollama chat events as chunks: what an Ollama engine's parser would be."""
    chunks = []
    for event in events:
        usage = Usage(prompt_tokens=event['prompt_eval_count'], completion_tokens=event['eval_count']) if event[
            'done'] else None  # fmt: skip
        chunks.append(Chunk(event['message']['content'], event.get('done_reason'), usage))
    return chunks


OLLAMA = functools.partial(NDJSONStream, final=lambda event: event.get('done') is True)


@pytest.mark.parametrize('use_async', [False, True])
async def test_an_ndjson_stream_reads_through_the_same_transport(chaos: ChaosProcess, use_async: bool) -> None:
    chaos.plan(tokens=['Hel', 'lo', ' 你好'], finish='stop', writes='byte')
    client = HTTPTransport(chaos.url)
    body = {'model': 'chaos', 'messages': [{'role': 'user', 'content': 'Hi'}], 'stream': True}
    try:
        if use_async:
            chunks = [chunk async for chunk in client.astream('/api/chat', body, ollama_chunks, protocol=OLLAMA)]
        else:
            chunks = list(client.stream('/api/chat', body, ollama_chunks, protocol=OLLAMA))
    finally:
        await client.aclose()
    assert ''.join(chunk.text for chunk in chunks) == 'Hello 你好'
    assert chunks[-1].finish_reason == 'stop' and chunks[-1].usage == Usage(prompt_tokens=11, completion_tokens=3)


@pytest.mark.parametrize('use_async', [False, True])
@pytest.mark.parametrize(
    'plan', [{'done': False}, {'event_fault': 'error', 'event_at': 1}, {'cut_at': 1, 'end': 'close'}]
)
async def test_a_broken_ndjson_stream_is_a_typed_error(chaos: ChaosProcess, use_async: bool, plan: dict) -> None:
    chaos.plan(**plan)
    client = HTTPTransport(chaos.url, max_retries=0)
    body = {'model': 'chaos', 'messages': [], 'stream': True}
    with pytest.raises((StreamError, LLMConnectionError)):
        try:
            if use_async:
                [chunk async for chunk in client.astream('/api/chat', body, ollama_chunks, protocol=OLLAMA)]
            else:
                list(client.stream('/api/chat', body, ollama_chunks, protocol=OLLAMA))
        finally:
            await client.aclose()


@pytest.mark.parametrize('url', [None, 'localhost:8000', '127.0.0.1:8000', 'http://'])
@pytest.mark.parametrize('make', [OpenAICompatible, LMDeployClient, lambda url: GPTAPI(api_base=url)])
def test_engines_refuse_a_bad_url_at_construction(make, url: object) -> None:
    with pytest.raises(ValueError, match='URL'):
        make(url)


def test_an_engine_refuses_a_request_id_with_cr_lf_at_the_call(server: FaultServer) -> None:
    llm = OpenAICompatible(server.url, 'm', max_retries=3)
    with pytest.raises(ValueError, match='request_id'):
        llm.stream('Hi', request_id='one\r\nX-Evil: 1')
    with pytest.raises(ValueError, match='request_id'):
        llm.generate('Hi', request_id='one\nX-Evil: 1')
    llm.close()
    assert server.requests == []  # refused before sending, never retried
