"""Streamed tokens/s through ``LMDeployPipeline.stream`` against lmdeploy's raw
``Pipeline.stream_infer``, on the same pipeline in this process.

The pipeline is lmdeploy's own (``AsyncEngine``, its event-loop thread, session
manager and incremental detokenizer) on the CPU engine of
``tests/fixtures/lmdeploy_cpu.py``, with a scripted model that emits one token
(`` word``) per engine step for ``--tokens`` steps, as fast as lmdeploy takes
them: what is measured is lmdeploy's pipeline and lagent's layer over it.

* ``raw stream_infer``: ``pipe.stream_infer(prompt, gen_config=..., do_preprocess=False)``
  with the ``GenerationConfig`` lagent would send, concatenating ``response.text``;
* ``LMDeployPipeline.stream``: the same prompt and settings, typed ``Chunk``
  deltas (session handling, usage and the stop-word filter on the way).

Runs are interleaved; each side's rate is the median over the repeats, in
tokens per second of wall time. Both sides must read the same text.
Target: lagent >= 0.97x raw.

Run: ``python benchmarks/lmdeploy_pipeline.py [--tokens 2000] [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the CPU engine lives in tests/fixtures

from lagent.llms.lmdeploy_pipeline import LMDeployPipeline, generation_config_fields
from tests.fixtures.lmdeploy_cpu import cpu_engine, scripted_model

PROMPT = 'Count.'


def run(tokens: int = 2000, repeats: int = 7) -> dict[str, float]:
    """Measure both sides in one run, print the table, return the medians and the ratio."""
    from lmdeploy import GenerationConfig

    raw_rates: list[float] = []
    lagent_rates: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        model = scripted_model(Path(scratch) / 'model', [{'reply': ' word', 'forever': True}])
        with cpu_engine():
            llm = LMDeployPipeline(str(model), session_len=tokens + 64, temperature=0, max_new_tokens=tokens)
        pipe = llm.pipe
        gen_config = GenerationConfig(**generation_config_fields(llm.gen_params))

        def raw() -> str:
            return ''.join(out.text for out in pipe.stream_infer(PROMPT, gen_config=gen_config, do_preprocess=False))

        def lagent() -> str:
            return ''.join(chunk.text for chunk in llm.stream(PROMPT))

        expected = raw()  # warm both sides alike
        lagent()
        for _ in range(repeats):
            started = time.perf_counter()
            raw_text = raw()
            raw_rates.append(tokens / (time.perf_counter() - started))
            started = time.perf_counter()
            lagent_text = lagent()
            lagent_rates.append(tokens / (time.perf_counter() - started))
            if not raw_text == lagent_text == expected:
                raise RuntimeError('the two sides got different text')
        llm.close()
    result = {
        'tokens': float(tokens),
        'raw_tokens_per_s': statistics.median(raw_rates),
        'lagent_tokens_per_s': statistics.median(lagent_rates),
    }
    result['ratio'] = result['lagent_tokens_per_s'] / result['raw_tokens_per_s']
    print(f'lmdeploy pipeline (CPU engine, scripted), {tokens} tokens, median of {repeats} interleaved runs')
    print(f'  raw Pipeline.stream_infer    {result["raw_tokens_per_s"]:9.1f} tokens/s')
    print(f'  LMDeployPipeline.stream      {result["lagent_tokens_per_s"]:9.1f} tokens/s')
    print(f'  ratio lagent/raw             {result["ratio"]:9.3f}x   (target >= 0.97x)')
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tokens', type=int, default=2000, help='tokens per request')
    parser.add_argument('--repeats', type=int, default=7, help='interleaved runs per side')
    args = parser.parse_args()
    run(args.tokens, args.repeats)


if __name__ == '__main__':
    main()
