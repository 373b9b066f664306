"""Router: policies, failover before the first token (never after), the circuit breaker,
health checks, per-backend statistics, forwarded settings — on scripted engines, on
servers speaking lmdeploy's protocol that fail on demand, and on three real llama.cpp
servers, one killed with SIGKILL mid-run and brought back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lagent.errors import EngineUnavailableError, LLMConnectionError, LLMError, RequestError, StreamError
from lagent.llms import build_llm
from lagent.llms.lmdeploy_client import LMDeployClient
from lagent.llms.openai_compatible import OpenAICompatible
from lagent.llms.router import Router, models_endpoint_check
from lagent.llms.scripted import ScriptedLLM
from lagent.schema import ToolCall
from tests.fixtures.fault_server import MODEL, Behaviour, FaultServer, fault_server
from tests.fixtures.servers import closed_port_url, llamacpp_process
from tests.fixtures.waiting import wait_until

HELLO = [{'role': 'user', 'content': 'Say hello.'}]
CHATML = [
    dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
    dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
]


def client(url: str, **kwargs: Any) -> LMDeployClient:
    """A client that fails fast: no retries of its own (the router retries elsewhere)."""
    return LMDeployClient(url, model_name=MODEL, max_retries=0, **kwargs)


def named(*replies: str, chunk_size: int | None = 1) -> ScriptedLLM:
    return ScriptedLLM(list(replies), chunk_size=chunk_size)


@pytest.fixture(scope='module')
def servers() -> Iterator[tuple[FaultServer, FaultServer]]:
    with fault_server() as bad, fault_server() as good:
        yield bad, good


@pytest.fixture
def bad(servers: tuple[FaultServer, FaultServer]) -> FaultServer:
    servers[0].script(Behaviour())
    return servers[0]


@pytest.fixture
def good(servers: tuple[FaultServer, FaultServer]) -> FaultServer:
    servers[1].script(Behaviour())
    return servers[1]


# ---------------------------------------------------------------------- policies


def test_round_robin_takes_backends_in_turn() -> None:
    router = Router([named('a1', 'a2'), named('b1', 'b2'), named('c1', 'c2')], policy='round_robin')
    assert [router.generate('x') for _ in range(6)] == ['a1', 'b1', 'c1', 'a2', 'b2', 'c2']
    assert [stats.requests for stats in router.stats()] == [2, 2, 2]


def test_weighted_shares_requests_in_proportion() -> None:
    router = Router([named(*['a'] * 8), named(*['b'] * 8)], policy='weighted', weights=[3, 1])
    replies = [router.generate('x') for _ in range(8)]
    assert replies.count('a') == 6 and replies.count('b') == 2
    assert replies[:4].count('b') == 1  # smooth: the light backend is not left to the end


def test_least_in_flight_sends_a_request_to_the_idlest_backend() -> None:
    router = Router([named('a1', 'a2'), named('b1'), named('c1')])
    first = router.stream('x')
    second = router.stream('x')
    third = router.stream('x')
    assert [next(first).text, next(second).text, next(third).text] == ['a', 'b', 'c']  # one each
    assert [stats.in_flight for stats in router.stats()] == [1, 1, 1]
    first.close()
    assert [stats.in_flight for stats in router.stats()] == [0, 1, 1]
    assert router.generate('x') == 'a2'  # the only idle one
    second.close()
    third.close()
    assert [stats.in_flight for stats in router.stats()] == [0, 0, 0]


async def test_least_in_flight_spreads_concurrent_async_requests(good: FaultServer) -> None:
    good.script(Behaviour(delay=0.05))
    engines = [client(good.url) for _ in range(3)]
    router = Router(engines)
    replies = await asyncio.gather(*(router.achat(HELLO) for _ in range(9)))
    await router.aclose()
    assert replies == ['Hello, world!'] * 9
    assert [stats.requests for stats in router.stats()] == [3, 3, 3]


# ---------------------------------------------------------------------- failover


FAULTS_BEFORE_THE_FIRST_TOKEN = {
    'HTTP 500': Behaviour(status=500, message='engine crashed'),
    'HTTP 503': Behaviour(status=503, message='overloaded'),
    'HTTP 429': Behaviour(status=429, message='slow down', retry_after='0'),
    'in-band error first': Behaviour(error_after=0, message='out of memory'),
    'connection dropped before any event': Behaviour(drop_after=0),
    'no first byte within the idle timeout': Behaviour(stall_after=0),
}


@pytest.mark.parametrize('fault', FAULTS_BEFORE_THE_FIRST_TOKEN, ids=list(FAULTS_BEFORE_THE_FIRST_TOKEN))
def test_a_failure_before_the_first_token_is_retried_on_another_backend(
    fault: str, bad: FaultServer, good: FaultServer
) -> None:
    bad.script(FAULTS_BEFORE_THE_FIRST_TOKEN[fault])
    with Router([client(bad.url, idle_timeout=0.5), client(good.url)], policy='round_robin') as router:
        assert ''.join(chunk.text for chunk in router.stream(HELLO)) == 'Hello, world!'
        failed, answered = router.stats()
    assert len(bad.requests) == 1 and len(good.requests) == 1
    assert (failed.errors, failed.failovers, failed.state, failed.in_flight) == (1, 1, 'ejected', 0)
    assert failed.last_error is not None
    assert (answered.errors, answered.requests, answered.state) == (0, 1, 'healthy')
    assert answered.mean_ttft_s is not None and answered.mean_latency_s is not None


def test_a_refused_connection_fails_over_sync_and_async(good: FaultServer) -> None:
    router = Router([client(closed_port_url()), client(good.url)], policy='round_robin')
    assert router.chat(HELLO) == 'Hello, world!'
    assert asyncio.run(router.achat(HELLO)) == 'Hello, world!'  # the dead one is ejected: straight to the good one
    refused = router.stats()[0]
    assert refused.errors == 1 and 'LLMConnectionError' in (refused.last_error or '')
    router.close()


async def test_async_streams_and_whole_answers_fail_over(bad: FaultServer, good: FaultServer) -> None:
    bad.script(Behaviour(status=502, message='bad gateway'))
    router = Router([client(bad.url), client(good.url)], policy='round_robin', cooldown=0.01)
    chunks = [chunk async for chunk in router.astream(HELLO)]
    assert ''.join(chunk.text for chunk in chunks) == 'Hello, world!'
    await asyncio.sleep(0.02)  # the bad one cools down and is tried again
    assert (await router.acomplete(HELLO)).text == 'Hello, world!'
    await router.aclose()
    assert router.stats()[0].failovers == 2
    assert [request.body['stream'] for request in good.requests] == [True, False]  # complete() is not a stream


def test_a_failure_after_the_first_token_is_raised_not_retried(bad: FaultServer, good: FaultServer) -> None:
    bad.script(Behaviour(error_after=2, message='lost the GPU'))
    router = Router([client(bad.url), client(good.url)], policy='round_robin')
    received = []
    with pytest.raises(StreamError, match='lost the GPU'):
        for chunk in router.stream(HELLO):
            received.append(chunk.text)
    assert ''.join(received) == 'Hello,'  # what the first backend sent, never repeated by another
    assert good.requests == []
    failed = router.stats()[0]
    assert (failed.errors, failed.failovers, failed.in_flight) == (1, 0, 0)


async def test_an_async_failure_after_the_first_token_is_raised_not_retried(
    bad: FaultServer, good: FaultServer
) -> None:
    bad.script(Behaviour(drop_after=1))
    router = Router([client(bad.url), client(good.url)], policy='round_robin')
    received = []
    with pytest.raises(LLMConnectionError):
        async for chunk in router.astream(HELLO):
            received.append(chunk.text)
    await router.aclose()
    assert received == ['Hello'] and good.requests == []


def test_a_refused_request_is_not_retried_and_does_not_eject(bad: FaultServer, good: FaultServer) -> None:
    bad.script(Behaviour(status=400, message='prompt too long'))
    router = Router([client(bad.url), client(good.url)], policy='round_robin')
    with pytest.raises(RequestError, match='prompt too long'):
        router.chat(HELLO)
    assert good.requests == []
    assert router.stats()[0].state == 'healthy' and router.stats()[0].errors == 1


def test_when_every_backend_is_down_a_typed_error_comes_at_once() -> None:
    router = Router([client(closed_port_url()) for _ in range(3)], failover_timeout=5, cooldown=60)
    started = time.monotonic()
    with pytest.raises(EngineUnavailableError, match='3 of 3 backends failed this request') as info:
        router.chat(HELLO)
    assert time.monotonic() - started < 5
    assert isinstance(info.value.__cause__, LLMConnectionError)
    started = time.monotonic()
    with pytest.raises(EngineUnavailableError, match='every backend is ejected'):
        router.generate('x')  # all three are cooling down: no connection is even tried
    assert time.monotonic() - started < 0.5
    assert [stats.requests for stats in router.stats()] == [1, 1, 1]


def test_a_request_waits_for_a_cooldown_that_ends_before_its_deadline(bad: FaultServer) -> None:
    bad.script(Behaviour(status=500), Behaviour())
    router = Router([client(bad.url)], cooldown=0.3, failover_timeout=5)
    with pytest.raises(EngineUnavailableError, match='1 of 1 backends failed'):
        router.chat(HELLO)
    started = time.monotonic()
    assert router.chat(HELLO) == 'Hello, world!'  # waited for the cooldown, then the trial request passed
    assert 0.2 < time.monotonic() - started < 3
    assert router.stats()[0].state == 'healthy'
    slow = Router([client(closed_port_url())], cooldown=30, failover_timeout=1)
    with pytest.raises(EngineUnavailableError):
        slow.chat(HELLO)
    started = time.monotonic()
    with pytest.raises(EngineUnavailableError, match='every backend is ejected'):
        slow.chat(HELLO)  # the cooldown ends after the deadline: no waiting
    assert time.monotonic() - started < 0.5


# ---------------------------------------------------------------------- circuit breaker and health checks


def test_an_ejected_backend_rests_then_one_trial_brings_it_back(bad: FaultServer, good: FaultServer) -> None:
    bad.script(Behaviour(status=500), Behaviour())
    router = Router([client(bad.url), client(good.url)], policy='round_robin', cooldown=0.5)
    for _ in range(4):
        assert router.chat(HELLO) == 'Hello, world!'
    assert len(bad.requests) == 1 and router.stats()[0].state == 'ejected'  # not asked while cooling down
    time.sleep(0.6)
    for _ in range(2):
        assert router.chat(HELLO) == 'Hello, world!'
    assert len(bad.requests) == 2 and router.stats()[0].state == 'healthy'


def test_max_failures_ejects_only_after_that_many_in_a_row(bad: FaultServer, good: FaultServer) -> None:
    bad.script(Behaviour(status=500))
    router = Router([client(bad.url), client(good.url)], policy='round_robin', max_failures=2)
    router.chat(HELLO)
    assert router.stats()[0].state == 'healthy'
    router.chat(HELLO)  # good
    router.chat(HELLO)  # bad again: second failure in a row
    assert router.stats()[0].state == 'ejected' and router.stats()[0].failovers == 2


def test_health_checks_eject_and_bring_back_backends(good: FaultServer) -> None:
    down: set[str] = set()

    def check(engine: Any) -> None:
        if engine.url in down:
            raise LLMConnectionError(f'{engine.url} is down')

    with fault_server() as second:
        router = Router(
            [client(good.url), client(second.url)], health_check=check, health_check_interval=0.05, cooldown=60
        )
        down.add(good.url)
        assert wait_until(lambda: router.stats()[0].state == 'ejected', 10)
        assert 'health check' in (router.stats()[0].last_error or '')
        before = len(good.requests)
        assert [router.chat(HELLO) for _ in range(3)] == ['Hello, world!'] * 3
        assert len(good.requests) == before  # ejected before any request reached it
        down.clear()
        assert wait_until(lambda: router.stats()[0].state == 'healthy', 10)  # back without waiting out the cooldown
        assert [router.chat(HELLO) for _ in range(2)] == ['Hello, world!'] * 2
        assert len(good.requests) > before
        router.close()
        assert router._health_thread is None


def test_models_endpoint_check(good: FaultServer) -> None:
    models_endpoint_check(client(good.url))
    assert good.requests[-1].path == '/v1/models'
    with pytest.raises(LLMConnectionError):
        models_endpoint_check(client(closed_port_url()))
    with pytest.raises(TypeError, match='needs an OpenAI-compatible engine'):
        models_endpoint_check(named('x'))


# ---------------------------------------------------------------------- what goes to the backends


def test_settings_given_to_the_router_override_the_backends_and_the_rest_stay_theirs(good: FaultServer) -> None:
    backend = client(good.url, max_new_tokens=77, temperature=0.3, stop_words=['<|im_end|>'])
    router = Router([backend], top_p=0.5)
    router.generate('p')
    body = good.requests[-1].body
    assert (body['max_tokens'], body['temperature'], body['top_p'], body['stop']) == (77, 0.3, 0.5, ['<|im_end|>'])
    router.generate('p', max_new_tokens=5, stop_words=['Observation:'])
    body = good.requests[-1].body
    assert (body['max_tokens'], body['temperature'], body['top_p']) == (5, 0.3, 0.5)
    assert body['stop'] == ['<|im_end|>', 'Observation:']  # added to the backend's own, which stay
    assert router.gen_params.model_fields_set == {'top_p'}
    assert router.params(max_new_tokens=5).max_new_tokens == 5 and backend.gen_params.max_new_tokens == 77


def test_each_backend_renders_the_conversation_with_its_own_template() -> None:
    templated = ScriptedLLM(['from the templated one', 'raw 1'], meta_template=CHATML)
    plain = ScriptedLLM(['from the chat one', 'raw 2'])
    router = Router([templated, plain], policy='round_robin')
    assert router.prepare(HELLO).messages == HELLO  # the router renders nothing
    assert router.chat(HELLO) == 'from the templated one'
    assert router.chat(HELLO) == 'from the chat one'
    assert router.generate(['a raw prompt', 'another']) == ['raw 1', 'raw 2']
    assert templated.requests == ['<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n', 'a raw prompt']
    assert plain.requests == [HELLO, 'another']  # a raw prompt stays raw: no template anywhere
    with pytest.raises(ValueError, match='takes no meta_template: give templates to its engines'):
        Router([plain], meta_template=CHATML)
    assert Router([plain], meta_template=None, chat_template=None).template is None


def test_tools_travel_to_native_backends() -> None:
    weather = {'type': 'function', 'function': {'name': 'get_weather', 'parameters': {'type': 'object'}}}
    call = ToolCall(id='1', function={'name': 'get_weather', 'arguments': '{}'})
    backends = [ScriptedLLM([call]), ScriptedLLM([call])]
    router = Router(backends)
    assert router.tool_calling == 'native'
    response = router.complete(HELLO, tools=[weather], tool_choice='auto')
    assert [c.function.name for c in response.tool_calls] == ['get_weather']
    assert backends[0].tools_seen == [[weather]]
    assert Router([ScriptedLLM([]), ScriptedLLM([], meta_template=CHATML)]).tool_calling == 'none'


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match='non-empty list of engines'):
        Router([])
    with pytest.raises(ValueError, match="unknown policy 'fastest'; choose one of: least_in_flight"):
        Router([named('a')], policy='fastest')
    with pytest.raises(ValueError, match='weights must have one entry per engine'):
        Router([named('a')], policy='weighted', weights=[1, 2])
    with pytest.raises(ValueError, match='weights must be positive'):
        Router([named('a')], policy='weighted', weights=[0])
    with pytest.raises(ValueError, match='cooldown must be positive'):
        Router([named('a')], cooldown=0)
    with pytest.raises(ValueError, match='unknown generation parameter'):
        Router([named('a')], temprature=0)
    with pytest.raises(ValueError, match='engine 1 must be an engine or an engine config'):
        Router([named('a'), 'openai'])  # type: ignore[list-item]


def test_built_from_a_config_with_engine_configs_and_closes_them(good: FaultServer) -> None:
    router = build_llm(
        {
            'type': 'router',
            'policy': 'round_robin',
            'engines': [
                {'type': 'lmdeploy-client', 'url': good.url, 'model_name': MODEL},
                {'type': 'OpenAICompatible', 'url': good.url, 'model_name': MODEL, 'max_retries': 0},
            ],
            'max_new_tokens': 9,
        }
    )
    assert isinstance(router, Router)
    assert [type(engine).__name__ for engine in router.engines] == ['LMDeployClient', 'OpenAICompatible']
    assert router.chat(HELLO) == 'Hello, world!' and good.requests[-1].body['max_tokens'] == 9
    router.close()


def test_lagent_bench_targets_a_router(good: FaultServer, tmp_path: Path) -> None:
    config = {
        'type': 'Router',
        'engines': [{'type': 'lmdeploy-client', 'url': good.url, 'model_name': MODEL} for _ in range(2)],
    }
    (tmp_path / 'fleet.json').write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, '-m', 'lagent', 'bench', '--config', 'fleet.json', '--synthetic', '--num-requests', '6',
         '--concurrency', '3', '--output-len', '4', '--no-progress'],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert 'lagent bench: Router, 6 requests' in result.stdout
    assert 'Completed:' in result.stdout and 'Errors:            0' in result.stdout.replace('\t', ' ')
    assert len(good.requests) >= 6


# ---------------------------------------------------------------------- three real llama.cpp servers


@pytest.mark.slow
async def test_three_llamacpp_servers_one_killed_mid_run_then_back(smollm2_path: Path, tmp_path: Path) -> None:
    servers = [llamacpp_process(smollm2_path, tmp_path / f'server{index}.log') for index in range(3)]
    started = []
    for server in servers:
        started.append(server.start())
    try:
        engines = [OpenAICompatible(s.url, model_name='smollm2', max_retries=0, idle_timeout=60) for s in servers]
        router = Router(engines, cooldown=1.0, failover_timeout=120)
        outcomes = await _run_and_kill(router, servers[0].pid)
        started_then_failed = [error for started, error in outcomes if error is not None and started]
        not_started_failed = [error for started, error in outcomes if error is not None and not started]
        assert not_started_failed == []  # every request that had not started streaming was answered
        assert all(isinstance(error, LLMError) for error in started_then_failed)  # the others: typed errors
        killed = router.stats()[0]
        assert killed.errors >= 1 and killed.state != 'healthy'  # the kill hit requests in flight on it
        assert len(outcomes) == 12 and killed.in_flight == 0

        again = llamacpp_process(smollm2_path, tmp_path / 'server0-again.log', port=servers[0].port)
        started.append(again.start())  # the killed backend comes back, at the same address
        before = router.stats()[0].requests
        deadline = time.monotonic() + 60
        while router.stats()[0].requests == before or router.stats()[0].state != 'healthy':
            assert time.monotonic() < deadline, router.stats()[0]
            assert await router.agenerate('Count: one, two,', max_new_tokens=4, temperature=0)
        assert router.stats()[0].last_error is not None and router.stats()[0].in_flight == 0
        await router.aclose()
    finally:
        for server in started:
            server.stop()


async def _run_and_kill(router: Router, victim: int | None, count: int = 12) -> list[tuple[bool, Exception | None]]:
    assert victim is not None
    limit = asyncio.Semaphore(6)
    done = 0

    async def one(index: int) -> tuple[bool, Exception | None]:
        nonlocal done
        started = False
        async with limit:
            try:
                async with router.astream(f'Write a list of {index + 3} fruits:', max_new_tokens=16) as stream:
                    async for chunk in stream:
                        started = started or bool(chunk.text)
                return started, None
            except LLMError as exc:
                return started, exc
            finally:
                done += 1

    async def kill_when_busy() -> None:
        while not (done >= 2 and router.stats()[0].in_flight >= 1):
            await asyncio.sleep(0.01)
        os.kill(victim, signal.SIGKILL)

    killer = asyncio.create_task(kill_when_busy())
    outcomes = await asyncio.gather(*(one(index) for index in range(count)))
    await asyncio.wait_for(killer, 1)  # it did kill, mid-run
    return list(outcomes)


def test_in_flight_stays_right_under_threads() -> None:
    router = Router([named(*['ab'] * 50), named(*['cd'] * 50)])
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                with router.stream('x') as stream:
                    next(stream)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [stats.in_flight for stats in router.stats()] == [0, 0]
    assert sum(stats.requests for stats in router.stats()) == 80
