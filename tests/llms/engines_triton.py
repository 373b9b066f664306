"""Triton engine fixtures for the contract suite: ``TritonClient`` on a real
``tritonserver`` serving SmolLM2 (``tests/fixtures/triton_server.py``), through the
TensorRT-LLM ensemble contract (``engine_triton``) and the vLLM backend contract
(``engine_triton_vllm``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lagent.llms.triton import TritonClient
from tests.fixtures.triton_server import triton_addr
from tests.llms.engines import fresh_engines

__all__ = ['engine_triton', 'engine_triton_vllm', 'triton_addr']

MakeClient = Callable[..., TritonClient]


def _clients(address: str, model_name: str, protocol: str) -> Iterator[MakeClient]:
    yield from fresh_engines(lambda **kwargs: TritonClient(address, model_name, protocol=protocol, **kwargs))


@pytest.fixture
def engine_triton(triton_addr: str) -> Iterator[MakeClient]:
    """``make(**kwargs) -> TritonClient`` on the decoupled TensorRT-LLM-style ``ensemble`` model."""
    yield from _clients(triton_addr, 'ensemble', 'trtllm')


@pytest.fixture
def engine_triton_vllm(triton_addr: str) -> Iterator[MakeClient]:
    """``make(**kwargs) -> TritonClient`` on the decoupled vLLM-style ``vllm_model`` model."""
    yield from _clients(triton_addr, 'vllm_model', 'vllm')
