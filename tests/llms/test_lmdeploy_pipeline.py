"""LMDeployPipeline without a GPU: the device check, the pure settings mapping,
that mapping fed to lmdeploy's real config classes, and the engine's plumbing
against a stand-in of lmdeploy's ``Pipeline`` that hands out lmdeploy's real
``Response``/``GenOut`` objects (these need lmdeploy importable; they skip otherwise).

The engine itself needs CUDA; ``tests/gpu/`` runs it end to end on a GPU machine.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator

import pytest
import torch

from lagent.errors import EngineUnavailableError, MissingExtraError
from lagent.llms.lmdeploy_pipeline import (
    LMDeployPipeline,
    _build,
    _version_tuple,
    engine_config_fields,
    generation_config_fields,
    require_device,
)
from lagent.schema import GenerationParams, ModelStatusCode

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason='checks the behaviour without a CUDA device')


@pytest.fixture
def lmdeploy_messages():
    """lmdeploy's real ``lmdeploy.messages`` module (these tests skip when it does not import)."""
    return pytest.importorskip('lmdeploy.messages', reason='lmdeploy is not installed')


# ---------------------------------------------------------------------- the device check


@no_cuda
def test_no_cuda_device_is_a_clear_error_before_lmdeploy_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'lmdeploy', None)  # lmdeploy must not even be looked at
    with pytest.raises(EngineUnavailableError, match='needs a CUDA device'):
        LMDeployPipeline('/any/model')


@no_cuda
def test_pytorch_backend_on_another_accelerator_is_left_to_lmdeploy() -> None:
    require_device({'device_type': 'ascend'}, 'pytorch')  # no error: lmdeploy checks its own devices
    with pytest.raises(EngineUnavailableError):
        require_device({'device_type': 'ascend'}, 'turbomind')


def test_missing_lmdeploy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)  # stands in for a GPU
    monkeypatch.setitem(sys.modules, 'lmdeploy', None)
    with pytest.raises(MissingExtraError, match=r'pip install "lagent\[lmdeploy\]"'):
        LMDeployPipeline('/any/model')


def test_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'torch', None)
    with pytest.raises(MissingExtraError, match=r'lagent\[lmdeploy\]'):
        LMDeployPipeline('/any/model')


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match='backend'):
        LMDeployPipeline('/any/model', backend='vllm')


# ---------------------------------------------------------------------- the pure mapping


def test_engine_config_fields_named_keywords_win_and_none_keeps_defaults() -> None:
    fields = engine_config_fields(
        tp=2, session_len=8192, cache_max_entry_count=None, pipeline_cfg={'tp': 4, 'max_batch_size': 16}
    )
    assert fields == {'tp': 2, 'session_len': 8192, 'max_batch_size': 16}
    assert engine_config_fields() == {'tp': 1}


def test_generation_fields_greedy() -> None:
    fields = generation_config_fields(GenerationParams(temperature=0, top_k=None, max_new_tokens=7))
    assert fields['do_sample'] is False
    assert fields['top_k'] == 0
    assert fields['max_new_tokens'] == 7
    assert fields['skip_special_tokens'] is False  # tool-call markers survive by default
    assert fields['stop_words'] is None
    assert 'min_new_tokens' not in fields


def test_generation_fields_sampling() -> None:
    params = GenerationParams(
        temperature=0.7,
        top_p=0.9,
        top_k=20,
        repetition_penalty=1.1,
        stop_words=['<|im_end|>', '\nUser:'],
        seed=3,
        min_new_tokens=2,
        ignore_eos=True,
        skip_special_tokens=True,
    )
    fields = generation_config_fields(params)
    assert fields == dict(
        max_new_tokens=512,
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        top_k=20,
        repetition_penalty=1.1,
        ignore_eos=True,
        skip_special_tokens=True,
        stop_words=['<|im_end|>', '\nUser:'],
        random_seed=3,
        min_new_tokens=2,
    )


@pytest.mark.parametrize(
    ('version', 'expected'),
    [('0.12.0', (0, 12, 0)), ('0.16.1', (0, 16, 1)), ('0.18.0rc1', (0, 18, 0)), ('1.0.0.dev3', (1, 0, 0))],
)
def test_version_tuple(version: str, expected: tuple[int, ...]) -> None:
    assert _version_tuple(version) == expected


# ---------------------------------------------------------------------- against lmdeploy's real classes


def test_generation_config_is_accepted_by_lmdeploy(lmdeploy_messages) -> None:
    params = GenerationParams(temperature=0.5, top_k=None, stop_words=['</s>'], seed=11, min_new_tokens=1)
    config = _build(lmdeploy_messages.GenerationConfig, generation_config_fields(params), what='generation config')
    assert isinstance(config, lmdeploy_messages.GenerationConfig)
    assert (config.do_sample, config.temperature, config.top_k, config.top_p) == (True, 0.5, 0, 0.8)
    assert (config.stop_words, config.random_seed, config.min_new_tokens) == (['</s>'], 11, 1)
    assert config.skip_special_tokens is False


def test_greedy_generation_config_is_accepted_by_lmdeploy(lmdeploy_messages) -> None:
    params = GenerationParams(temperature=0)
    config = _build(lmdeploy_messages.GenerationConfig, generation_config_fields(params), what='generation config')
    assert config.do_sample is False and config.stop_words is None


def test_settings_lmdeploy_rejects_raise_value_error(lmdeploy_messages) -> None:
    params = GenerationParams(temperature=3.0)  # lagent allows it, lmdeploy caps temperature at 2
    with pytest.raises(ValueError, match='lmdeploy rejected the generation config'):
        _build(lmdeploy_messages.GenerationConfig, generation_config_fields(params), what='generation config')


@pytest.mark.parametrize('backend', ['turbomind', 'pytorch'])
def test_engine_configs_are_accepted_by_lmdeploy(lmdeploy_messages, backend: str) -> None:
    config_class = {
        'turbomind': lmdeploy_messages.TurbomindEngineConfig,
        'pytorch': lmdeploy_messages.PytorchEngineConfig,
    }[backend]
    fields = engine_config_fields(tp=2, session_len=4096, cache_max_entry_count=0.5, pipeline_cfg={'max_batch_size': 8})
    config = _build(config_class, fields, what=f'{backend} engine config')
    assert (config.tp, config.session_len, config.cache_max_entry_count, config.max_batch_size) == (2, 4096, 0.5, 8)


def test_unknown_engine_config_field_is_named(lmdeploy_messages) -> None:
    fields = engine_config_fields(pipeline_cfg={'max_batch_size': 8, 'warp_speed': 9})
    with pytest.raises(ValueError, match='warp_speed'):
        _build(lmdeploy_messages.TurbomindEngineConfig, fields, what='turbomind engine config')


def test_invalid_engine_config_value_raises_value_error(lmdeploy_messages) -> None:
    with pytest.raises(ValueError, match='lmdeploy rejected'):
        _build(lmdeploy_messages.TurbomindEngineConfig, engine_config_fields(tp=0), what='turbomind engine config')


# ---------------------------------------------------------------------- against a stand-in of lmdeploy's Pipeline

REPLY = ['The', ' sea', ' is', ' wide', ' and', ' deep', '.']


class _Session:
    def __init__(self, session_id: int):
        self.session_id = session_id
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    async def async_abort(self) -> None:
        self.aborted = True


class _LoopThread:
    """An event loop in its own thread, as lmdeploy's pipeline keeps one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class _StandInPipeline:
    """lmdeploy's ``Pipeline`` interface (0.16+), answering every request with REPLY one
    token at a time, as lmdeploy's real ``Response``/``GenOut`` objects (delta text,
    cumulative ``generate_token_len``, ``finish_reason`` on the last one)."""

    def __init__(self, response_class: type, genout_class: type):
        self.response_class = response_class
        self.genout_class = genout_class
        self.sessions: list[_Session] = []
        self.calls: list[dict] = []
        self.internal_thread = _LoopThread()
        self.async_engine = _StandInEngine(self)
        self.closed = False

    def session(self) -> _Session:
        self.sessions.append(_Session(len(self.sessions)))
        return self.sessions[-1]

    def steps(self, prompt, gen_config) -> Iterator[tuple[str, int, int, str | None]]:
        """(delta, input_token_len, generate_token_len, finish_reason) of one reply."""
        tokens = REPLY[: gen_config.max_new_tokens]
        prompt_tokens = len(str(prompt).split())
        for index, token in enumerate(tokens, 1):
            yield token, prompt_tokens, index, None
        yield '', prompt_tokens, len(tokens), 'length' if len(tokens) < len(REPLY) else 'stop'

    def stream_infer(self, prompts, sessions=None, gen_config=None, do_preprocess=True, **kwargs):
        self.calls.append(dict(kind='stream_infer', prompts=prompts, gen_config=gen_config, pre=do_preprocess))
        for text, prompt_tokens, generated, finish in self.steps(prompts, gen_config):
            if sessions.aborted:
                return
            yield self.response_class(
                text=text, generate_token_len=generated, input_token_len=prompt_tokens, finish_reason=finish
            )

    def infer(self, prompts, gen_config=None, do_preprocess=True, **kwargs):
        self.calls.append(dict(kind='infer', prompts=prompts, gen_config=gen_config, pre=do_preprocess))
        outputs = []
        for index, prompt in enumerate(prompts):
            steps = list(self.steps(prompt, gen_config))
            outputs.append(
                self.response_class(
                    text=''.join(s[0] for s in steps),
                    generate_token_len=steps[-1][2],
                    input_token_len=steps[-1][1],
                    finish_reason=steps[-1][3],
                    index=index,
                )
            )
        return outputs

    def close(self) -> None:
        self.closed = True
        self.internal_thread.close()


class _StandInEngine:
    """lmdeploy's ``AsyncEngine`` from 0.16: ``preprocess`` then ``generate``, on the pipeline's loop."""

    def __init__(self, pipe: _StandInPipeline):
        self.pipe = pipe

    async def preprocess(self, messages, session_id, gen_config=None, do_preprocess=True, **kwargs):
        assert asyncio.get_running_loop() is self.pipe.internal_thread.loop
        self.pipe.calls.append(dict(kind='preprocess', prompts=messages, gen_config=gen_config, pre=do_preprocess))
        return dict(messages=messages, session=session_id, gen_config=gen_config)

    async def generate(self, request, stream_response=True):
        for text, prompt_tokens, generated, finish in self.pipe.steps(request['messages'], request['gen_config']):
            await asyncio.sleep(0.01)
            if request['session'].aborted:
                return
            yield self.pipe.genout_class(text, prompt_tokens, generated, finish)


@pytest.fixture
def standin():
    messages = pytest.importorskip('lmdeploy.messages', reason='lmdeploy is not installed')
    core = pytest.importorskip('lmdeploy.serve.core.async_engine', reason='lmdeploy is not installed')
    pipe = _StandInPipeline(messages.Response, core.GenOut)
    yield pipe
    if not pipe.closed:
        pipe.close()


def test_stream_maps_lmdeploy_responses_to_chunks(standin) -> None:
    llm = LMDeployPipeline.from_pipeline(standin, temperature=0)
    chunks = list(llm.stream('Tell me about the sea'))
    assert ''.join(chunk.text for chunk in chunks) == ''.join(REPLY)
    assert chunks[-1].finish_reason == 'stop'
    assert chunks[-1].usage.model_dump() == dict(prompt_tokens=5, completion_tokens=7, total_tokens=12)
    call = standin.calls[-1]
    assert call['kind'] == 'stream_infer' and call['pre'] is False  # a raw prompt: no template applied
    assert call['gen_config'].do_sample is False and call['gen_config'].skip_special_tokens is False


def test_conversation_without_template_goes_to_lmdeploy_template(standin) -> None:
    llm = LMDeployPipeline.from_pipeline(standin)
    conversation = [{'role': 'user', 'content': 'Hi'}]
    assert llm.chat(conversation, max_new_tokens=3) == 'The sea is'
    call = standin.calls[-1]
    assert call['prompts'] == conversation and call['pre'] is True
    assert call['gen_config'].max_new_tokens == 3


def test_stream_chat_stop_words_and_length(standin) -> None:
    llm = LMDeployPipeline.from_pipeline(standin)
    steps = list(llm.stream_chat([{'role': 'user', 'content': 'Hi'}], stop_words=[' and']))
    assert steps[-1][0] == ModelStatusCode.END and steps[-1][1] == 'The sea is wide'
    assert standin.calls[-1]['gen_config'].stop_words == [' and']
    response = llm.complete('Hi', max_new_tokens=2)
    assert response.finish_reason == 'length' and response.usage.completion_tokens == 2


def test_closing_a_stream_early_aborts_the_session(standin) -> None:
    llm = LMDeployPipeline.from_pipeline(standin)
    with llm.stream('Hi') as stream:
        next(stream)
    assert standin.sessions[-1].aborted
    assert llm.generate('Hi') == ''.join(REPLY)
    assert not standin.sessions[-1].aborted  # a finished stream is not aborted


def test_batch_goes_through_infer(standin) -> None:
    llm = LMDeployPipeline.from_pipeline(standin)
    assert llm.generate(['a b', 'c'], max_new_tokens=4, stop_words=[' is']) == ['The sea', 'The sea']
    call = standin.calls[-1]
    assert call['kind'] == 'infer' and call['prompts'] == ['a b', 'c'] and call['pre'] is False
    replies = llm.chat([[{'role': 'user', 'content': 'x'}], [{'role': 'user', 'content': 'y'}]], max_new_tokens=2)
    assert replies == ['The sea', 'The sea'] and standin.calls[-1]['pre'] is True


async def test_async_uses_the_engine_api_on_lmdeploy_loop(standin) -> None:
    llm = LMDeployPipeline.from_pipeline(standin)
    assert await llm.agenerate('Hi there') == ''.join(REPLY)
    assert [call['kind'] for call in standin.calls] == ['preprocess']
    steps = [step async for step in llm.astream_chat([{'role': 'user', 'content': 'Hi'}], max_new_tokens=3)]
    assert steps[-1][1] == 'The sea is' and steps[-1][2].finish_reason == 'length'
    assert standin.calls[-1]['pre'] is True


async def test_closing_an_async_stream_early_aborts_the_session(standin) -> None:
    llm = LMDeployPipeline.from_pipeline(standin)
    stream = llm.astream('Hi')
    first = await stream.__anext__()
    await stream.aclose()
    assert first.text == 'The'
    assert standin.sessions[-1].aborted
    assert await llm.agenerate('Hi', max_new_tokens=2) == 'The sea'


def test_close_closes_the_pipeline(standin) -> None:
    llm = LMDeployPipeline.from_pipeline(standin)
    llm.close()
    assert standin.closed
    with pytest.raises(EngineUnavailableError, match='closed'):
        llm.generate('Hi')
