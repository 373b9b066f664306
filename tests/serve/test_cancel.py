"""A client that goes away cancels its generation: an in-process engine stops
producing tokens, an upstream server sees its connection closed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import aiohttp
import pytest
import requests

from lagent.llms import OpenAICompatible
from lagent.serve import ServedAgent, Server
from tests.fixtures.fault_server import Behaviour, FaultServer, fault_server
from tests.fixtures.waiting import wait_until
from tests.serve.engines import TickingLLM
from tests.serve.wire import content_of, events_of, user

TICKS = 1000  # 10 s of generation, if nothing stopped it
STOPPED_SOON = 200


@pytest.fixture
def ticking() -> TickingLLM:
    return TickingLLM(ticks=TICKS, interval=0.01)


@pytest.fixture
def upstream() -> Iterator[FaultServer]:
    with fault_server() as server:
        server.script(Behaviour(tokens=['token '] * 200, delay=0.05))
        yield server


@pytest.fixture
def url(ticking: TickingLLM, upstream: FaultServer) -> Iterator[str]:
    models = {
        'ticking': ticking,
        'ticking-agent': ServedAgent(ticking, []),
        'upstream': OpenAICompatible(upstream.url, model_name='upstream'),
    }
    with Server(models).run_in_thread() as address:
        yield address


async def read_a_few_events_and_leave(url: str, model: str) -> None:
    body = {'model': model, 'messages': user('Go on and on.'), 'stream': True}
    async with aiohttp.ClientSession() as session, session.post(f'{url}/v1/chat/completions', json=body) as response:
        assert response.status == 200
        events = 0
        while events < 3:
            events += (await response.content.readline()).startswith(b'data:')


@pytest.mark.parametrize('model', ['ticking', 'ticking-agent'])
async def test_leaving_a_stream_stops_the_in_process_engine(url: str, ticking: TickingLLM, model: str) -> None:
    await read_a_few_events_and_leave(url, model)
    assert ticking.closed.wait(3), 'the engine stream was not closed after the client left'
    produced = ticking.produced
    time.sleep(0.3)
    assert ticking.produced == produced < STOPPED_SOON  # and it generates nothing more


def test_leaving_a_whole_answer_stops_the_in_process_engine(url: str, ticking: TickingLLM) -> None:
    body = {'model': 'ticking', 'messages': user('Go on and on.')}
    with pytest.raises(requests.ReadTimeout):
        requests.post(f'{url}/v1/chat/completions', json=body, timeout=(5, 0.5))
    assert ticking.closed.wait(3)
    assert ticking.produced < STOPPED_SOON


async def test_leaving_a_stream_closes_the_upstream_connection(url: str, upstream: FaultServer) -> None:
    await read_a_few_events_and_leave(url, 'upstream')
    assert wait_until(lambda: upstream.disconnects, 3), 'the upstream server kept streaming to nobody'
    assert upstream.disconnects == 1 and len(upstream.requests) == 1


def test_an_upstream_failure_mid_stream_ends_the_stream_with_an_error_event(url: str, upstream: FaultServer) -> None:
    upstream.script(Behaviour(tokens=['a', 'b', 'c', 'd'], error_after=2, message='the GPU fell over'))
    body = {'model': 'upstream', 'messages': user('x'), 'stream': True}
    text = requests.post(f'{url}/v1/chat/completions', json=body, timeout=30).text
    events = events_of(text)
    assert content_of(events[:-1]) == 'ab'  # what came before the error
    error = events[-1]['error']
    assert 'the GPU fell over' in error['message'] and error['type'] == 'server_error' and '[DONE]' not in events
    upstream.script(Behaviour(status=500, message='down'))
    whole = requests.post(f'{url}/v1/chat/completions', json={**body, 'stream': False}, timeout=30)
    assert whole.status_code == 502 and 'down' in whole.json()['error']['message']
