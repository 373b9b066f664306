"""Streamed tokens/s through ``TritonClient`` against calling the same model function directly.

Both sides run the same generation, ``generate_token_bytes`` of
``tests/fixtures/triton_models.py`` (SmolLM2-135M through llama-cpp-python,
greedy, n_ctx 2048, 2 threads):

* ``direct``: in this process, reading the token pieces as they come;
* ``triton``: inside a real ``tritonserver`` (PyTriton, CPU), model ``ensemble``,
  streamed back over gRPC decoupled inference and read with
  ``TritonClient.stream`` (stop-word filter and UTF-8 decoding on the way).

Runs are interleaved (direct, triton, direct, ...); each side's rate is the
median over the repeats, in generated tokens per second of wall time from the
request to the last piece. The token count is the direct run's (greedy: both
sides generate the same tokens, which is checked on the text).

Run: ``python benchmarks/triton_engine.py [--tokens 64] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test server lives in tests/fixtures

from lagent.llms.default_model import smollm2_gguf_path
from lagent.llms.triton import TritonClient
from tests.fixtures.triton_models import Sampling, generate_token_bytes, load_model
from tests.fixtures.triton_server import triton_server

PROMPT = '<|im_start|>user\nTell me a long story about a dragon and a knight.<|im_end|>\n<|im_start|>assistant\n'


def run(tokens: int = 64, repeats: int = 5) -> dict[str, float]:
    """Measure both sides in one run, print the table, return the medians and the ratio."""
    model_path = smollm2_gguf_path()
    llm = load_model(str(model_path))
    sampling = Sampling(max_tokens=tokens, temperature=0)
    direct_rates: list[float] = []
    triton_rates: list[float] = []
    with (
        tempfile.TemporaryDirectory() as scratch,
        triton_server(model_path, Path(scratch) / 'workspace', Path(scratch) / 'server.log') as address,
    ):
        client = TritonClient(address, 'ensemble', temperature=0, max_new_tokens=tokens)
        client.generate(PROMPT)  # warm both sides' caches alike
        b''.join(generate_token_bytes(llm, PROMPT, sampling))
        for _ in range(repeats):
            started = time.perf_counter()
            pieces = list(generate_token_bytes(llm, PROMPT, sampling))
            direct_s = time.perf_counter() - started
            started = time.perf_counter()
            text = ''.join(chunk.text for chunk in client.stream(PROMPT))
            triton_s = time.perf_counter() - started
            if text != b''.join(pieces).decode():
                raise RuntimeError(f'the two sides generated different text:\n{text!r}\n{b"".join(pieces)!r}')
            direct_rates.append(len(pieces) / direct_s)
            triton_rates.append(len(pieces) / triton_s)
        client.close()
    result = {
        'tokens': float(len(pieces)),
        'direct_tokens_per_s': statistics.median(direct_rates),
        'triton_tokens_per_s': statistics.median(triton_rates),
    }
    result['ratio'] = result['triton_tokens_per_s'] / result['direct_tokens_per_s']
    print(f'streamed tokens/s, {len(pieces)} tokens, median of {repeats} interleaved runs')
    print(f'  direct (in process)      {result["direct_tokens_per_s"]:8.1f}')
    print(f'  TritonClient (gRPC)      {result["triton_tokens_per_s"]:8.1f}')
    print(f'  ratio triton/direct      {result["ratio"]:8.2f}x')
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tokens', type=int, default=64, help='max new tokens per request')
    parser.add_argument('--repeats', type=int, default=5, help='interleaved runs per side')
    args = parser.parse_args()
    run(args.tokens, args.repeats)


if __name__ == '__main__':
    main()
