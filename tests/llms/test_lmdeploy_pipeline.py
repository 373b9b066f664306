"""LMDeployPipeline without a GPU: the device check, the pure settings mapping,
that mapping fed to lmdeploy's real config classes, and the engine end to end on
lmdeploy's own ``Pipeline`` and ``AsyncEngine`` with the CPU engine of
``tests/fixtures/lmdeploy_cpu.py`` (scripted replies; SmolLM2 through llama.cpp
where the model itself is the point). ``tests/gpu/`` runs it on a real GPU.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from tests.fixtures.lmdeploy_cpu import CPUEngines, cpu_engine, scripted_model

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


# ---------------------------------------------------------------------- on lmdeploy's own Pipeline, CPU engine

TEMPLATED = 'Answered through the chat template.'
RULES = [
    {'when': '[[slow]]', 'reply': ' tick', 'forever': True, 'delay': 0.05},
    {'when': '[[special]]', 'reply': 'Hi <|im_start|> there'},
    {'when': '[[sea]]', 'reply': 'The sea is wide and deep.'},
    # SmolLM2's own chat template starts with this system turn: lmdeploy applied it
    {'when': '<|im_start|>system\nYou are a helpful AI assistant named SmolLM', 'reply': TEMPLATED},
]
SEA = 'The sea is wide and deep.'


@pytest.fixture(scope='module')
def cpu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LMDeployPipeline, CPUEngines]]:
    """An LMDeployPipeline (default backend: lmdeploy falls back to its PyTorch engine) on a scripted model."""
    model = scripted_model(tmp_path_factory.mktemp('pipeline') / 'model', RULES)
    with cpu_engine() as engines:
        llm = LMDeployPipeline(str(model), session_len=2048)
    yield llm, engines
    llm.close()


@pytest.fixture
def llm(cpu: tuple[LMDeployPipeline, CPUEngines]) -> LMDeployPipeline:
    return cpu[0]


@pytest.fixture
def engine(cpu: tuple[LMDeployPipeline, CPUEngines]) -> Any:
    return cpu[1].last


def ended(engine: Any, since: int) -> list[dict[str, Any]]:
    return [event for event in engine.events[since:] if event['event'] == 'end']


def sessions_left(llm: LMDeployPipeline) -> dict:
    """lmdeploy's own session table: empty once every request is over."""
    return llm.pipe.async_engine.session_mgr.sessions


@no_cuda
def test_refused_again_after_the_cpu_engine_block(tmp_path: Path) -> None:
    with cpu_engine():
        pass
    with pytest.raises(EngineUnavailableError, match='needs a CUDA device'):
        LMDeployPipeline('smollm2')


def test_by_name_on_smollm2_greedy_is_deterministic() -> None:
    """``LMDeployPipeline(path='smollm2')``: the embedded model, its tokens from llama.cpp."""
    with cpu_engine() as engines:
        llm = LMDeployPipeline(path='smollm2', session_len=2048, temperature=0, max_new_tokens=12)
    try:
        assert type(engines.last).__name__ == 'CPUEngine'
        replies = llm.generate(['The capital of France is', 'The capital of France is'])
        assert replies[0] == replies[1] == llm.generate('The capital of France is') and replies[0].strip()
        steps = list(llm.stream_chat([{'role': 'user', 'content': 'Name a fruit.'}]))
        assert steps[-1][1] == llm.chat([{'role': 'user', 'content': 'Name a fruit.'}])
    finally:
        llm.close()


def test_stream_maps_lmdeploy_outputs_to_chunks(llm: LMDeployPipeline, engine: Any) -> None:
    since = len(engine.events)
    chunks = list(llm.stream('[[sea]]', temperature=0))
    assert ''.join(chunk.text for chunk in chunks) == SEA
    assert len([chunk for chunk in chunks if chunk.text]) > 1
    start, end = engine.events[since], engine.events[-1]
    assert chunks[-1].finish_reason == 'stop'
    assert chunks[-1].usage.prompt_tokens == start['prompt_tokens']
    assert chunks[-1].usage.completion_tokens == end['generated'] - 1  # lmdeploy does not count the stop token
    assert start['gen_config']['top_k'] == 1 and start['gen_config']['skip_special_tokens'] is False


def test_prompt_goes_raw_and_conversation_through_lmdeploy_template(llm: LMDeployPipeline) -> None:
    assert llm.generate('[[sea]]') == SEA  # no template: the prompt is the text
    assert llm.chat([{'role': 'user', 'content': 'Hi'}]) == TEMPLATED


def test_stop_words_and_length(llm: LMDeployPipeline) -> None:
    steps = list(llm.stream_chat([{'role': 'user', 'content': '[[sea]]'}], stop_words=[' and']))
    assert steps[-1][0] == ModelStatusCode.END and steps[-1][1] == 'The sea is wide'
    assert steps[-1][2].finish_reason == 'stop'
    assert llm.generate('[[sea]]', stop_words=[' and']) == 'The sea is wide'
    assert all(' and' not in text for text in llm.stream_generate('[[sea]]', stop_words=[' and']))
    response = llm.complete('[[sea]]', max_new_tokens=2)
    assert response.finish_reason == 'length' and response.usage.completion_tokens == 2


@pytest.mark.parametrize(('skip', 'expected'), [(False, 'Hi <|im_start|> there'), (True, 'Hi  there')])
def test_skip_special_tokens(llm: LMDeployPipeline, skip: bool, expected: str) -> None:
    assert llm.generate('[[special]]', skip_special_tokens=skip) == expected


def test_closing_a_stream_early_aborts_the_session(llm: LMDeployPipeline, engine: Any) -> None:
    since = len(engine.events)
    with llm.stream('[[slow]]', max_new_tokens=2000) as stream:
        assert next(stream).text == ' tick'
    (end,) = ended(engine, since)
    assert end['status'] == 'CANCEL' and end['generated'] < 100
    assert not engine.requests and not sessions_left(llm)
    assert llm.generate('[[sea]]') == SEA


def test_batch_goes_through_infer(llm: LMDeployPipeline, engine: Any) -> None:
    since = len(engine.events)
    assert llm.generate(['[[sea]]', '[[special]]'], stop_words=[' is']) == ['The sea', 'Hi <|im_start|> there']
    assert len(ended(engine, since)) == 2
    replies = llm.chat([[{'role': 'user', 'content': 'x'}], [{'role': 'user', 'content': 'y'}]])
    assert replies == [TEMPLATED, TEMPLATED]
    assert not sessions_left(llm)


async def test_async_runs_on_lmdeploy_engine_loop(llm: LMDeployPipeline) -> None:
    assert await llm.agenerate('[[sea]]') == SEA
    steps = [step async for step in llm.astream_chat([{'role': 'user', 'content': 'Hi'}], max_new_tokens=3)]
    assert steps[-1][2].finish_reason == 'length' and steps[-1][2].usage.completion_tokens == 3
    assert TEMPLATED.startswith(steps[-1][1])


async def test_closing_an_async_stream_early_aborts_the_session(llm: LMDeployPipeline, engine: Any) -> None:
    since = len(engine.events)
    stream = llm.astream('[[slow]]', max_new_tokens=2000)
    first = await stream.__anext__()
    await stream.aclose()
    assert first.text == ' tick'
    for _ in range(200):  # the abort runs on lmdeploy's own event loop
        if ended(engine, since):
            break
        await asyncio.sleep(0.05)
    (end,) = ended(engine, since)
    assert end['status'] == 'CANCEL' and end['generated'] < 100
    assert not engine.requests and not sessions_left(llm)
    assert await llm.agenerate('[[sea]]', max_new_tokens=2) == 'The sea'


def test_close_closes_the_engine(tmp_path: Path) -> None:
    with cpu_engine() as engines:
        llm = LMDeployPipeline(str(scripted_model(tmp_path / 'model', RULES)), session_len=2048)
    assert llm.generate('[[sea]]') == SEA
    llm.close()
    assert engines.last.closed
    with pytest.raises(EngineUnavailableError, match='closed'):
        llm.generate('Hi')
