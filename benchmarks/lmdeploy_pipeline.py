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

import sys
import tempfile
from pathlib import Path

from _timing import report_stream_rates, run_from_command_line, stream_rates

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the CPU engine lives in tests/fixtures

from lagent.llms.lmdeploy_pipeline import LMDeployPipeline, generation_config_fields
from tests.fixtures.lmdeploy_cpu import cpu_engine, scripted_model

PROMPT = 'Count.'
RAW, LAGENT = 'raw Pipeline.stream_infer', 'LMDeployPipeline.stream'


def run(tokens: int = 2000, repeats: int = 7) -> dict[str, float]:
    """Measure both sides in one run, print the table, return the medians and the ratio."""
    from lmdeploy import GenerationConfig

    with tempfile.TemporaryDirectory() as scratch:
        model = scripted_model(Path(scratch) / 'model', [{'reply': ' word', 'forever': True}])
        with cpu_engine():
            llm = LMDeployPipeline(str(model), session_len=tokens + 64, temperature=0, max_new_tokens=tokens)
        pipe = llm.pipe
        gen_config = GenerationConfig(**generation_config_fields(llm.gen_params))
        sides = {
            RAW: lambda: ''.join(
                out.text for out in pipe.stream_infer(PROMPT, gen_config=gen_config, do_preprocess=False)
            ),
            LAGENT: lambda: ''.join(chunk.text for chunk in llm.stream(PROMPT)),
        }
        rates = stream_rates(sides, tokens, repeats)
        llm.close()
    title = f'lmdeploy pipeline (CPU engine, scripted), {tokens} tokens, median of {repeats} interleaved runs'
    return report_stream_rates(title, rates, raw=RAW, lagent=LAGENT, tokens=tokens, target=0.97)


if __name__ == '__main__':
    run_from_command_line(__doc__, run)
