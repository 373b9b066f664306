"""LMDeployClient: the request bodies lmdeploy's api_server expects (checked on a
server speaking its protocol), and real generation on the llama.cpp server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from lagent.errors import LLMTimeoutError
from lagent.llms.lmdeploy_client import LMDeployClient
from tests.fixtures.fault_server import MODEL, Behaviour, FaultServer, fault_server

CHATML = [
    dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
    dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
]
HELLO = [{'role': 'user', 'content': 'Say hello.'}]
LAGENT_CALL = dict(session_id=7, request_id='req-7', sequence_start=True, sequence_end=True, ignore_eos=False)


@pytest.fixture(scope='module')
def server_module() -> Iterator[FaultServer]:
    with fault_server() as server:
        yield server


@pytest.fixture
def server(server_module: FaultServer) -> FaultServer:
    server_module.script(Behaviour())
    return server_module


def test_completion_body_has_lmdeploy_fields_and_no_session_id(server: FaultServer) -> None:
    with LMDeployClient(server.url, meta_template=CHATML, top_k=5, repetition_penalty=1.1, max_new_tokens=33) as llm:
        assert llm.chat(HELLO, stop_words=['<|im_end|>'], skip_special_tokens=False, **LAGENT_CALL) == 'Hello, world!'
    models, request = server.requests
    assert models.path == '/v1/models' and request.path == '/v1/completions'
    body = request.body
    assert body['model'] == MODEL
    assert body['prompt'] == '<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n'
    assert body['max_tokens'] == body['max_completion_tokens'] == 33
    assert body['top_k'] == 5 and body['repetition_penalty'] == 1.1
    assert body['ignore_eos'] is False and body['skip_special_tokens'] is False
    assert body['stop'] == ['<|im_end|>']
    assert 'session_id' not in body
    assert request.headers['X-Request-Id'] == 'req-7'


async def test_concurrent_chat_requests_never_share_a_session_id(server: FaultServer) -> None:
    llm = LMDeployClient(server.url, model_name=MODEL, min_new_tokens=2, ignore_eos=True)
    replies = await asyncio.gather(*(llm.achat(HELLO, session_id=1) for _ in range(8)))
    await llm.aclose()
    assert replies == ['Hello, world!'] * 8
    for request in server.requests:
        assert request.path == '/v1/chat/completions' and 'session_id' not in request.body
        assert request.body['min_new_tokens'] == 2 and request.body['ignore_eos'] is True


def test_streaming_body(server: FaultServer) -> None:
    llm = LMDeployClient(server.url, model_name=MODEL)
    steps = list(llm.stream_chat(HELLO, max_new_tokens=12))
    assert steps[-1][1] == 'Hello, world!' and steps[-1][2].usage.completion_tokens == 4
    (request,) = server.requests
    assert request.body['stream'] is True and request.body['stream_options'] == {'include_usage': True}
    assert request.body['max_tokens'] == request.body['max_completion_tokens'] == 12


@pytest.mark.parametrize('use_async', [False, True])
async def test_timeout_keyword_bounds_the_request(server: FaultServer, use_async: bool) -> None:
    server.script(Behaviour(tokens=['x'] * 100, delay=0.05))
    llm = LMDeployClient(server.url, model_name=MODEL)
    with pytest.raises(LLMTimeoutError):
        if use_async:
            [step async for step in llm.astream_chat(HELLO, timeout=0.3)]
        else:
            list(llm.stream_chat(HELLO, timeout=0.3))
    await llm.aclose()


def test_against_a_real_openai_compatible_server(llamacpp_url: str) -> None:
    with LMDeployClient(llamacpp_url, meta_template=CHATML, max_new_tokens=12, temperature=0) as llm:
        assert llm.model_name == 'smollm2'
        response = llm.complete(HELLO, top_k=1, repetition_penalty=1.0, session_id=3)
        assert response.text.strip() and 0 < response.usage.completion_tokens <= 12
        assert list(llm.stream_generate('The sky is'))[-1] == llm.generate('The sky is')
