"""TritonClient against a real tritonserver (PyTriton, CPU) serving SmolLM2.

The models are those of ``tests/fixtures/triton_models.py``: ``ensemble``
(TensorRT-LLM contract, decoupled), ``vllm_model`` (vLLM contract, decoupled),
``ensemble_whole`` (not decoupled, echoes the prompt), ``no_final`` (never sends
the final flag) and ``fails_midstream`` (errors after two tokens).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time

import pytest

from lagent.errors import EngineUnavailableError, LLMConnectionError, LLMTimeoutError, MissingExtraError, StreamError
from lagent.llms.triton import TritonClient
from lagent.schema import ModelStatusCode
from tests.fixtures.servers import free_port

CHATML = [
    dict(role='system', begin='<|im_start|>system\n', end='<|im_end|>\n'),
    dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
    dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
]
CONVERSATION = [{'role': 'user', 'content': 'Name three colours.'}]
PROMPT = '<|im_start|>user\nWrite a sentence about the sea.<|im_end|>\n<|im_start|>assistant\n'
OTHER_PROMPT = '<|im_start|>user\nWhat is a cat?<|im_end|>\n<|im_start|>assistant\n'
GREEDY = dict(temperature=0, max_new_tokens=12)
MODELS = [('ensemble', 'trtllm'), ('vllm_model', 'vllm'), ('ensemble_whole', 'trtllm')]


@pytest.fixture(params=MODELS, ids=[model for model, _ in MODELS])
def llm(request: pytest.FixtureRequest, triton_addr: str):
    model_name, protocol = request.param
    with TritonClient(triton_addr, model_name, CHATML, protocol=protocol, **GREEDY) as client:
        yield client


@pytest.fixture(scope='module')
def reference(triton_addr: str) -> str:
    """The greedy reply to PROMPT, from the decoupled ensemble."""
    with TritonClient(triton_addr, 'ensemble', **GREEDY) as client:
        return client.generate(PROMPT)


def test_decoupled_models_are_detected(triton_addr: str) -> None:
    assert TritonClient(triton_addr, 'ensemble').decoupled
    assert TritonClient(triton_addr, 'vllm_model', protocol='vllm').decoupled
    assert not TritonClient(triton_addr, 'ensemble_whole').decoupled


def test_every_sync_method(llm: TritonClient, reference: str) -> None:
    assert reference.strip()
    assert llm.generate(PROMPT) == reference  # same model, greedy: every contract and path agrees
    assert llm.generate([PROMPT, OTHER_PROMPT]) == [reference, llm.generate(OTHER_PROMPT)]
    texts = list(llm.stream_generate(PROMPT))
    assert texts[-1] == reference
    assert all(after.startswith(before) for before, after in itertools.pairwise(texts))
    chunks = list(llm.stream(PROMPT))
    assert ''.join(chunk.text for chunk in chunks) == reference
    reply = llm.chat(CONVERSATION)
    assert reply.strip() and '<|im_end|>' not in reply
    assert llm.chat([CONVERSATION, CONVERSATION]) == [reply, reply]
    steps = list(llm.stream_chat(CONVERSATION))
    assert [status for status, _, _ in steps[:-1]] == [ModelStatusCode.STREAM_ING] * (len(steps) - 1)
    assert steps[-1][0] == ModelStatusCode.END and steps[-1][1] == reply and steps[-1][2].text == reply


async def test_every_async_method(llm: TritonClient, reference: str) -> None:
    assert await llm.agenerate(PROMPT) == reference
    other = llm.generate(OTHER_PROMPT)
    assert await llm.agenerate([PROMPT, OTHER_PROMPT, PROMPT]) == [reference, other, reference]
    texts = [text async for text in llm.astream_generate(PROMPT)]
    assert texts[-1] == reference
    chunks = [chunk async for chunk in llm.astream(PROMPT)]
    assert ''.join(chunk.text for chunk in chunks) == reference
    reply = llm.chat(CONVERSATION)
    assert await llm.achat(CONVERSATION) == reply
    steps = [step async for step in llm.astream_chat(CONVERSATION)]
    assert steps[-1][0] == ModelStatusCode.END and steps[-1][1] == reply


async def test_concurrent_async_streams_do_not_mix(triton_addr: str) -> None:
    llm = TritonClient(triton_addr, 'ensemble', **GREEDY)
    expected = [llm.generate(PROMPT), llm.generate(OTHER_PROMPT)]
    replies = await asyncio.wait_for(asyncio.gather(llm.agenerate(PROMPT), llm.agenerate(OTHER_PROMPT)), 120)
    assert replies == expected


@pytest.mark.parametrize(('model_name', 'protocol'), MODELS[:2])
def test_max_new_tokens_limits_the_streamed_tokens(triton_addr: str, model_name: str, protocol: str) -> None:
    llm = TritonClient(triton_addr, model_name, protocol=protocol, temperature=0)
    chunks = list(llm.stream(PROMPT, max_new_tokens=5))
    assert 0 < len([chunk for chunk in chunks if chunk.text]) <= 5  # one response per token
    assert chunks[-1].finish_reason == 'length'
    assert len(llm.generate(PROMPT, max_new_tokens=5)) < len(llm.generate(PROMPT, max_new_tokens=12))
    assert llm.complete(PROMPT, max_new_tokens=200).finish_reason == 'stop'


def test_non_streamed_reply_drops_the_echoed_prompt(triton_addr: str, reference: str) -> None:
    llm = TritonClient(triton_addr, 'ensemble_whole', **GREEDY)
    reply = llm.generate(PROMPT)
    assert reply == reference and not reply.startswith('<|im_start|>')


@pytest.mark.parametrize(('model_name', 'protocol'), MODELS)
def test_stop_words_cut_the_reply(triton_addr: str, model_name: str, protocol: str, reference: str) -> None:
    llm = TritonClient(triton_addr, model_name, protocol=protocol, **GREEDY)
    stop = reference.split()[len(reference.split()) // 2]
    expected = reference[: reference.index(stop)]
    assert llm.generate(PROMPT, stop_words=[stop]) == expected
    texts = list(llm.stream_generate(PROMPT, stop_words=[stop]))
    assert texts[-1] == expected and all(stop not in text for text in texts)


def test_multibyte_text_streams_intact(triton_addr: str) -> None:
    prompt = '<|im_start|>user\nWrite the word café three times.<|im_end|>\n<|im_start|>assistant\n'
    streamed = TritonClient(triton_addr, 'ensemble', temperature=0, max_new_tokens=16).generate(prompt)
    whole = TritonClient(triton_addr, 'ensemble_whole', temperature=0, max_new_tokens=16).generate(prompt)
    assert streamed == whole and '\ufffd' not in streamed
    assert any(ord(char) > 127 for char in streamed), f'no multibyte text to check: {streamed!r}'


def test_lagent_keywords_are_accepted(triton_addr: str, reference: str) -> None:
    llm = TritonClient(triton_addr, 'ensemble', session_len=2048, session_id=7, **GREEDY)
    reply = llm.generate(PROMPT, request_id='lagent-1', session_id=8, sequence_start=True, sequence_end=True)
    assert reply == reference


def test_closing_a_stream_early_frees_the_connection(triton_addr: str, reference: str) -> None:
    llm = TritonClient(triton_addr, 'ensemble', **GREEDY)
    with llm.stream(PROMPT) as stream:
        assert next(stream).text
    assert llm.generate(PROMPT) == reference


def test_missing_final_flag_ends_in_idle_timeout(triton_addr: str) -> None:
    llm = TritonClient(triton_addr, 'no_final', idle_timeout=1)
    started = time.monotonic()
    stream = llm.stream(PROMPT)
    assert next(stream).text == 'Hello'
    with pytest.raises(LLMTimeoutError, match='idle_timeout'):
        next(stream)
    assert time.monotonic() - started < 10


async def test_missing_final_flag_ends_in_idle_timeout_async(triton_addr: str) -> None:
    llm = TritonClient(triton_addr, 'no_final', idle_timeout=1)
    with pytest.raises(LLMTimeoutError, match='idle_timeout'):
        await asyncio.wait_for(llm.agenerate(PROMPT), 10)


def test_error_mid_stream_is_raised_with_the_server_message(triton_addr: str) -> None:
    llm = TritonClient(triton_addr, 'fails_midstream', idle_timeout=10)
    stream = llm.stream(PROMPT)
    assert [next(stream).text, next(stream).text] == ['Hello', ' there']
    with pytest.raises(StreamError, match='simulated failure after two tokens'):
        next(stream)


async def test_error_mid_stream_is_raised_async(triton_addr: str) -> None:
    llm = TritonClient(triton_addr, 'fails_midstream', idle_timeout=10)
    with pytest.raises(StreamError, match='simulated failure after two tokens'):
        await llm.agenerate(PROMPT)


def test_unreachable_server() -> None:
    with pytest.raises(LLMConnectionError, match='cannot reach Triton'):
        TritonClient(f'127.0.0.1:{free_port()}', 'ensemble', connect_timeout=2)


def test_unknown_model_names_the_ready_ones(triton_addr: str) -> None:
    with pytest.raises(EngineUnavailableError, match="'no_such_model' is not ready") as caught:
        TritonClient(triton_addr, 'no_such_model')
    assert 'ensemble' in str(caught.value) and 'vllm_model' in str(caught.value)


def test_wrong_tensor_names_name_the_real_ones(triton_addr: str) -> None:
    with pytest.raises(ValueError, match=r"no input 'prompt'.*text_input, max_tokens"):
        TritonClient(triton_addr, 'ensemble', input_names={'text': 'prompt'})
    with pytest.raises(ValueError, match='sampling_parameters'):
        TritonClient(triton_addr, 'vllm_model', protocol='trtllm')
    with pytest.raises(ValueError, match=r"no output 'text'.*text_output"):
        TritonClient(triton_addr, 'ensemble', output_names={'text': 'text'})
    with pytest.raises(ValueError, match='unknown input role'):
        TritonClient(triton_addr, 'ensemble', input_names={'prompt': 'text_input'})
    with pytest.raises(ValueError, match="unknown protocol 'tgi'"):
        TritonClient(triton_addr, 'ensemble', protocol='tgi')


def test_a_role_mapped_to_none_is_not_sent(triton_addr: str, reference: str) -> None:
    llm = TritonClient(triton_addr, 'ensemble', input_names={'repetition_penalty': None, 'stop_words': None}, **GREEDY)
    assert llm.generate(PROMPT) == reference


def test_missing_tritonclient_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'tritonclient.grpc', None)
    with pytest.raises(MissingExtraError, match=r'lagent\[triton\]'):
        TritonClient('127.0.0.1:1', 'ensemble')
