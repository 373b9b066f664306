"""HFTransformer on the real SmolLM2-135M-Instruct (loaded once from its GGUF by
transformers): what the shared contract suite does not cover. Replies are kept
to a few tokens: transformers decodes this model at about 20 tokens/s on CPU."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest
import torch

from lagent.errors import EngineUnavailableError, MissingExtraError
from lagent.llms.hf_transformer import HFTransformer

PROMPT = '<|im_start|>user\nWrite a sentence about the sea.<|im_end|>\n<|im_start|>assistant\n'
CONVERSATION = [{'role': 'user', 'content': 'Name three colours.'}]
SHORT = dict(temperature=0, max_new_tokens=8)


@pytest.fixture
def llm(hf_engines) -> HFTransformer:
    return hf_engines()


def _generate_workers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == 'lagent-hf-generate']


def test_greedy_reply_equals_raw_transformers_generate(llm: HFTransformer) -> None:
    encoded = llm.tokenizer(PROMPT, return_tensors='pt')
    output = llm.model.generate(**encoded, max_new_tokens=8, do_sample=False)
    expected = llm.tokenizer.decode(output[0, encoded['input_ids'].shape[1] :], skip_special_tokens=True)
    response = llm.complete(PROMPT, **SHORT)
    assert response.text == expected
    assert response.usage is not None
    assert response.usage.prompt_tokens == encoded['input_ids'].shape[1]
    assert response.usage.completion_tokens == output.shape[1] - encoded['input_ids'].shape[1]


def test_chat_without_template_uses_the_tokenizer_chat_template(llm: HFTransformer) -> None:
    assert llm.prepare(CONVERSATION).messages == CONVERSATION
    rendered = llm.tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith('<|im_start|>assistant\n')
    reply = llm.chat(CONVERSATION, **SHORT)
    assert reply.strip() and reply == llm.generate(rendered, **SHORT)


def test_batch_of_conversations_is_left_padded_like_single_replies(llm: HFTransformer) -> None:
    short = [{'role': 'user', 'content': 'Hi.'}]
    replies = llm.chat([CONVERSATION, short], **SHORT)
    assert replies == [llm.chat(CONVERSATION, **SHORT), llm.chat(short, **SHORT)]


def test_batch_applies_stop_words(llm: HFTransformer) -> None:
    full = llm.generate(PROMPT, **SHORT)
    stop = full.split()[2]
    expected = full[: full.index(stop)]
    assert llm.generate([PROMPT, PROMPT], stop_words=[stop], **SHORT) == [expected, expected]


def test_ignore_eos_generates_exactly_max_new_tokens(llm: HFTransformer) -> None:
    response = llm.complete([{'role': 'user', 'content': 'Hi.'}], temperature=0, max_new_tokens=40, ignore_eos=True)
    assert response.finish_reason == 'length'
    assert response.usage is not None and response.usage.completion_tokens == 40


def test_closing_a_stream_stops_the_generate_thread(llm: HFTransformer) -> None:
    stream = llm.stream(PROMPT, temperature=0, max_new_tokens=1000, ignore_eos=True)
    next(stream)
    started = time.monotonic()
    stream.close()
    assert time.monotonic() - started < 30
    assert not _generate_workers()


async def test_closing_an_async_stream_stops_the_generate_thread(llm: HFTransformer) -> None:
    stream = llm.astream(PROMPT, temperature=0, max_new_tokens=1000, ignore_eos=True)
    await stream.__anext__()
    await stream.aclose()
    deadline = time.monotonic() + 30
    while _generate_workers() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not _generate_workers()


def test_engines_can_share_one_loaded_model(llm: HFTransformer, hf_engines) -> None:
    other = hf_engines(max_new_tokens=3)
    assert other.model is llm.model and other.gen_params.max_new_tokens == 3
    assert other.complete(PROMPT, temperature=0).usage.completion_tokens <= 3


def test_tools_need_a_template_that_renders_them(llm: HFTransformer) -> None:
    tool = {'type': 'function', 'function': {'name': 'noop', 'parameters': {'type': 'object'}}}
    with pytest.raises(ValueError, match='no native tools'):
        llm.complete(CONVERSATION, tools=[tool])


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the error raised without a CUDA device')
def test_cuda_without_a_device_is_refused_before_loading(hf_smollm2) -> None:
    model, tokenizer = hf_smollm2
    with pytest.raises(EngineUnavailableError, match='CUDA'):
        HFTransformer.from_loaded(model, tokenizer, device='cuda')
    with pytest.raises(EngineUnavailableError, match='CUDA'):
        HFTransformer('/nonexistent/model', device='cuda')


def test_unknown_device_is_refused(hf_smollm2) -> None:
    model, tokenizer = hf_smollm2
    with pytest.raises(ValueError, match='device'):
        HFTransformer.from_loaded(model, tokenizer, device='tpu')


def test_missing_torch_names_the_extra_and_says_torch_is_separate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'torch', None)
    with pytest.raises(MissingExtraError, match=r'pip install "lagent\[hf\]"') as caught:
        HFTransformer('/any/model')
    assert 'torch' in str(caught.value) and 'build of torch' in str(caught.value)


def test_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'transformers', None)
    with pytest.raises(MissingExtraError, match=r'pip install "lagent\[hf\]"'):
        HFTransformer('/any/model')
