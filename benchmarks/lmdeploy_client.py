"""Streamed tokens/s through ``LMDeployClient.stream`` against a raw ``requests``
reader, both reading lmdeploy's own api_server.

The server is lmdeploy's real ``lmdeploy serve api_server`` on the CPU engine of
``tests/fixtures/lmdeploy_cpu.py``, with a scripted model that emits one token
(`` word``) per engine step for ``--tokens`` steps, as fast as lmdeploy takes
them: what is measured is lmdeploy's server and the client, never a model.

* ``raw requests``: ``POST /v1/completions`` with the request body lagent sends
  (so the server does the same work for both), ``iter_lines(chunk_size=65536)``,
  keep ``data:`` lines, stop at ``[DONE]``, ``json.loads`` the rest and take
  ``choices[0].text``: the least a reader can do;
* ``LMDeployClient.stream``: the same prompt and settings, read as typed
  ``Chunk`` deltas (usage and the stop-word filter on the way, as always).

Runs are interleaved (raw, lagent, raw, ...); each side's rate is the median
over the repeats, in tokens per second of wall time from the request to the
last piece. Both sides must read the same text. Target: lagent >= 0.95x raw.

Run: ``python benchmarks/lmdeploy_client.py [--tokens 2000] [--repeats 7]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import requests
from _timing import report_stream_rates, run_from_command_line, stream_rates

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the CPU engine lives in tests/fixtures

from lagent.llms.lmdeploy_client import LMDeployClient
from tests.fixtures.lmdeploy_cpu import scripted_model, write_command
from tests.fixtures.lmdeploy_cpu_server import api_server

MODEL_NAME = 'bench'
PROMPT = 'Count.'
RAW, LAGENT = 'raw requests reader', 'LMDeployClient.stream'


def raw_stream(url: str, tokens: int) -> str:
    """The least a reader of lmdeploy's stream can do: the text of every event."""
    body = {
        'model': MODEL_NAME,
        'prompt': PROMPT,
        'max_tokens': tokens,
        'temperature': 0,
        'top_p': 0.8,
        'max_completion_tokens': tokens,
        'repetition_penalty': 1.0,
        'ignore_eos': False,
        'top_k': 40,
        'stream': True,
        'stream_options': {'include_usage': True},
    }  # fmt: skip  (what LMDeployClient sends for the same call)
    text = []
    with requests.post(f'{url}/v1/completions', json=body, stream=True, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines(chunk_size=65536):
            if not line.startswith(b'data: '):
                continue
            data = line[6:]
            if data == b'[DONE]':
                break
            choices = json.loads(data)['choices']
            if choices:
                text.append(choices[0].get('text') or '')
    return ''.join(text)


def run(tokens: int = 2000, repeats: int = 7) -> dict[str, float]:
    """Measure both sides in one run, print the table, return the medians and the ratio."""
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        model = scripted_model(workdir / 'model', [{'reply': ' word', 'forever': True}])
        options = ('--model-name', MODEL_NAME, '--log-level', 'ERROR')
        with api_server(write_command(workdir), model, workdir, *options) as server:
            llm = LMDeployClient(server.url, model_name=MODEL_NAME, temperature=0, max_new_tokens=tokens)
            sides = {
                RAW: lambda: raw_stream(server.url, tokens),
                LAGENT: lambda: ''.join(chunk.text for chunk in llm.stream(PROMPT)),
            }
            rates = stream_rates(sides, tokens, repeats)
            llm.close()
    title = f'lmdeploy api_server (CPU engine, scripted), {tokens} tokens, median of {repeats} interleaved runs'
    return report_stream_rates(title, rates, raw=RAW, lagent=LAGENT, tokens=tokens, target=0.95)


if __name__ == '__main__':
    run_from_command_line(__doc__, run)
