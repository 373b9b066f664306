"""Streamed tokens/s through ``TritonClient`` against raw ``tritonclient.grpc``
decoupled streaming, both reading the same model of the same PyTriton server.

The server is a real ``tritonserver`` (PyTriton, CPU; ``tests/fixtures/triton_models.py``)
and the model its ``scripted`` one: decoupled, TensorRT-LLM ensemble tensors,
one response per token for ``max_tokens`` tokens, no model behind it, so what
is measured is Triton and the client:

* ``raw tritonclient.grpc``: one ``InferenceServerClient``; per request
  ``start_stream(callback)``, ``async_stream_infer(..., enable_empty_final_response=True)``,
  read the responses from the callback's queue until the final-response flag,
  decode ``text_output``, ``stop_stream()`` — what tritonclient's documentation
  does for decoupled models;
* ``TritonClient.stream``: the same prompt and ``max_new_tokens``, typed
  ``Chunk`` deltas (UTF-8 stream decoding and the stop-word filter on the way).

Runs are interleaved (raw, lagent, raw, ...); each side's rate is the median
over the repeats, in tokens per second of wall time from the request to the
last piece. Both sides must read the same text. Target: lagent >= 0.95x raw.

Run: ``python benchmarks/triton_engine.py [--tokens 2000] [--repeats 7]``.
"""

from __future__ import annotations

import queue
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from _timing import report_stream_rates, run_from_command_line, stream_rates

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test server lives in tests/fixtures

from lagent.llms.default_model import smollm2_gguf_path
from lagent.llms.triton import TritonClient
from tests.fixtures.triton_server import triton_server

MODEL = 'scripted'
PROMPT = 'Count.'
RAW, LAGENT = 'raw tritonclient.grpc', 'TritonClient.stream'


def raw_stream(client: Any, grpc: Any, tokens: int) -> str:
    """Decoupled streaming with tritonclient alone: the text of every response."""
    inputs = [grpc.InferInput('text_input', [1, 1], 'BYTES'), grpc.InferInput('max_tokens', [1, 1], 'INT32')]
    inputs[0].set_data_from_numpy(np.array([[PROMPT.encode()]], dtype=np.object_))
    inputs[1].set_data_from_numpy(np.array([[tokens]], dtype=np.int32))
    responses: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
    pieces = []
    client.start_stream(lambda result, error: responses.put((result, error)))
    try:
        client.async_stream_infer(MODEL, inputs, enable_empty_final_response=True)
        while True:
            result, error = responses.get(timeout=60)
            if error is not None:
                raise error
            output = result.as_numpy('text_output')
            if output is not None:
                pieces.extend(piece.decode() for piece in output.reshape(-1))
            if result.get_response().parameters['triton_final_response'].bool_param:
                break
    finally:
        client.stop_stream()
    return ''.join(pieces)


def run(tokens: int = 2000, repeats: int = 7) -> dict[str, float]:
    """Measure both sides in one run, print the table, return the medians and the ratio."""
    import tritonclient.grpc as grpc

    with (
        tempfile.TemporaryDirectory() as scratch,
        triton_server(smollm2_gguf_path(), Path(scratch) / 'workspace', Path(scratch) / 'server.log') as address,
    ):
        raw_client = grpc.InferenceServerClient(address)
        llm = TritonClient(address, MODEL, temperature=0, max_new_tokens=tokens)
        sides = {
            RAW: lambda: raw_stream(raw_client, grpc, tokens),
            LAGENT: lambda: ''.join(chunk.text for chunk in llm.stream(PROMPT)),
        }
        rates = stream_rates(sides, tokens, repeats)
        llm.close()
        raw_client.close()
    title = f'tritonserver (PyTriton, CPU), model {MODEL!r}, {tokens} tokens, median of {repeats} interleaved runs'
    return report_stream_rates(title, rates, raw=RAW, lagent=LAGENT, tokens=tokens, target=0.95)


if __name__ == '__main__':
    run_from_command_line(__doc__, run)
