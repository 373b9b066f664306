"""LMDeployServer against the real ``lmdeploy serve api_server`` (CUDA only).

Run by hand on a GPU machine (see the GPU notes of the project): build a tiny
model folder there (random Llama weights + a real tokenizer), then::

    LAGENT_GPU_MODEL_DIR=/path/to/tiny-model pytest tests/gpu/test_lmdeploy_server_gpu.py

Skipped without a CUDA device, the ``lmdeploy`` command or the model folder.
Random weights give nonsense text: the test checks the plumbing (start,
readiness, token limits, streaming, API key, clean stop), not the words.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lagent.errors import MissingExtraError
from lagent.llms.lmdeploy_server import LMDeployServer, find_lmdeploy
from lagent.schema import ModelStatusCode
from tests.fixtures.process_checks import group_alive

USER = [{'role': 'user', 'content': 'Say hello.'}]


def _model_dir() -> str:
    model = os.environ.get('LAGENT_GPU_MODEL_DIR')
    if not model or not Path(model, 'config.json').is_file():
        pytest.skip('set LAGENT_GPU_MODEL_DIR to a model folder')
    try:
        find_lmdeploy()
    except MissingExtraError:
        pytest.skip('the lmdeploy command is not installed')
    torch = pytest.importorskip('torch')
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device')
    return model


@pytest.mark.parametrize('backend', ['pytorch', 'turbomind'])
def test_real_api_server_lifecycle(backend: str) -> None:
    llm = LMDeployServer(
        _model_dir(),
        model_name='tiny',
        backend=backend,
        session_len=1024,
        api_keys=['gpu-test-key'],
        serve_cfg={'cache_max_entry_count': 0.2},
        max_new_tokens=8,
        ready_timeout=900,
    )
    pgid = llm.process.pid
    try:
        response = llm.complete(USER, ignore_eos=True)
        assert response.usage is not None and response.usage.completion_tokens == 8
        assert response.finish_reason == 'length'
        steps = list(llm.stream_chat(USER, ignore_eos=True))
        assert steps[-1][0] == ModelStatusCode.END
        assert llm.generate('Hello', ignore_eos=True, max_new_tokens=4)
        assert 'gpu-test-key' not in llm.process.log_tail(lines=1000)
    finally:
        llm.close()
    assert not group_alive(pgid)
