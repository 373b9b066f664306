"""The HTTP transport: the SSE decoder on its own, then retries, timeouts, errors
and secrets against a server that speaks lmdeploy's protocol and fails on demand."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from lagent.errors import (
    LLMConnectionError,
    LLMTimeoutError,
    RateLimitError,
    RequestError,
    ServerError,
    StreamError,
)
from lagent.llms.http import HTTPTransport
from lagent.llms.protocols import SSEStream
from tests.fixtures.fault_server import Behaviour, FaultServer, fault_server

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
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    client = HTTPTransport(f'http://127.0.0.1:{port}/v1', max_retries=2, retry_backoff=0.01)
    with pytest.raises(LLMConnectionError) as info:
        if use_async:
            await client.aget_json('/models')
        else:
            client.get_json('/models')
    await client.aclose()
    assert 'gave up after 3 attempts' in ''.join(info.value.__notes__)


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
