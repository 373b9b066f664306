"""LMDeployPipeline end to end on a CUDA device (skipped elsewhere).

Run by hand on a GPU machine (see README.md here) with a model folder built by
``run_lmdeploy_checks.py model``::

    LAGENT_GPU_MODEL_DIR=build/gpu/tiny-llama pytest tests/gpu/test_lmdeploy_gpu.py

The checks are those of ``run_lmdeploy_checks.py`` (one test each, per backend).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.gpu.run_lmdeploy_checks import pipeline_checks

CHECK_NAMES = [name for name, _ in pipeline_checks(None)]


def _model_dir() -> str:
    torch = pytest.importorskip('torch')
    if not torch.cuda.is_available():
        pytest.skip('no CUDA device')
    pytest.importorskip('lmdeploy', reason='lmdeploy is not installed')
    model = os.environ.get('LAGENT_GPU_MODEL_DIR')
    if not model or not Path(model, 'config.json').is_file():
        pytest.skip('set LAGENT_GPU_MODEL_DIR to a model folder (run_lmdeploy_checks.py model)')
    return model


@pytest.fixture(scope='module', params=['pytorch', 'turbomind'])
def pipeline(request: pytest.FixtureRequest):
    from lagent.llms.lmdeploy_pipeline import LMDeployPipeline

    llm = LMDeployPipeline(_model_dir(), backend=request.param, session_len=2048, cache_max_entry_count=0.2)
    yield llm
    llm.close()


@pytest.mark.parametrize('name', CHECK_NAMES)
def test_pipeline(pipeline, name: str) -> None:
    dict(pipeline_checks(pipeline))[name]()
