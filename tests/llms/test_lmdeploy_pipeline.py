"""LMDeployPipeline without a GPU: the device check, the pure settings mapping,
and that mapping fed to lmdeploy's real config classes (when lmdeploy imports).

The engine itself needs CUDA; ``tests/gpu/`` runs it end to end on a GPU machine.
"""

from __future__ import annotations

import sys

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
from lagent.schema import GenerationParams

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
