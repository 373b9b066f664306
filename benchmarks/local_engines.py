"""Decode speed and peak memory of the in-process engines against their raw libraries.

Pairs measured on the same prompt in the same run (SmolLM2-135M-Instruct):

* ``LlamaCpp.complete`` against raw llama-cpp-python ``create_completion(stream=True)``;
* ``HFTransformer.complete`` against raw transformers ``model.generate``;
* ``TritonClient.stream`` against raw ``tritonclient.grpc`` decoupled streaming
  on the same tritonserver (``triton``, from ``benchmarks/triton_engine.py``).

Every measurement runs in a fresh subprocess (so one engine's memory never
pollutes another's peak RSS): it loads the model, warms up once, then times
``--runs`` greedy generations of exactly ``--tokens`` tokens (EOS is
suppressed) and reports tokens/s (whole call, prompt included: the prompt is
16 tokens) and its peak RSS. Rounds interleave the engines of a pair, and the
figure reported is the median over rounds. Both transformers workers load the
model from the same GGUF (de-quantized to float32 on load).

Targets: ``LlamaCpp`` >= 60 tokens/s on 2 cores, >= 0.95x raw llama-cpp-python,
peak RSS < 400 MB. ``HFTransformer`` is reported against raw ``generate``.

torch runs on one thread by default (``--torch-threads``): with two threads on a
two-core machine that other processes also use, transformers decodes ten times
slower.

Run: ``python benchmarks/local_engines.py [--rounds 5] [--tokens 128] [--threads 2] [--only llamacpp]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

PROMPT = '<|im_start|>user\nWrite a sentence about the sea.<|im_end|>\n<|im_start|>assistant\n'

Worker = Callable[[argparse.Namespace], list[float]]
"""A measurement: loads its engine, returns tokens/s of each timed run."""


# ---------------------------------------------------------------------- llama.cpp


def llamacpp_raw(args: argparse.Namespace) -> list[float]:
    import llama_cpp

    from lagent.llms.default_model import smollm2_gguf_path

    llm = llama_cpp.Llama(str(smollm2_gguf_path()), n_ctx=2048, n_threads=args.threads, verbose=False)
    no_eos = {llm.token_eos(): float('-inf')}

    def run(tokens: int) -> int:
        pieces = llm.create_completion(
            PROMPT, max_tokens=tokens, temperature=0, top_p=0.8, top_k=40, min_p=0.0, logit_bias=no_eos, stream=True
        )
        return sum(1 for piece in pieces if piece['choices'][0]['text'])

    return _timed(run, args)


def llamacpp_lagent(args: argparse.Namespace) -> list[float]:
    from lagent.llms.llama_cpp import LlamaCpp

    llm = LlamaCpp(n_threads=args.threads, temperature=0, ignore_eos=True)

    def run(tokens: int) -> int:
        return llm.complete(PROMPT, max_new_tokens=tokens).usage.completion_tokens

    return _timed(run, args)


# ---------------------------------------------------------------------- transformers


def hf_raw(args: argparse.Namespace) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lagent.llms.default_model import smollm2_gguf_path

    torch.set_num_threads(args.torch_threads)
    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype='float32')
    encoded = tokenizer(PROMPT, return_tensors='pt')

    def run(tokens: int) -> int:
        output = model.generate(**encoded, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        return output.shape[1] - encoded['input_ids'].shape[1]

    return _timed(run, args)


def hf_lagent(args: argparse.Namespace) -> list[float]:
    import torch

    from lagent.llms.default_model import smollm2_gguf_path
    from lagent.llms.hf_transformer import HFTransformer

    torch.set_num_threads(args.torch_threads)
    llm = HFTransformer(smollm2_gguf_path(), device='cpu', torch_dtype='float32', temperature=0, ignore_eos=True)

    def run(tokens: int) -> int:
        return llm.complete(PROMPT, max_new_tokens=tokens).usage.completion_tokens

    return _timed(run, args)


# ---------------------------------------------------------------------- what is measured

WORKERS: dict[str, Worker] = {
    'llamacpp_raw': llamacpp_raw,
    'llamacpp_lagent': llamacpp_lagent,
    'hf_raw': hf_raw,
    'hf_lagent': hf_lagent,
}

PAIRS: dict[str, tuple[str, str]] = {
    'llamacpp': ('llamacpp_lagent', 'llamacpp_raw'),
    'hf': ('hf_lagent', 'hf_raw'),
}
"""Pair name -> (lagent engine, its raw peer)."""


# ---------------------------------------------------------------------- running


def _timed(run: Callable[[int], int], args: argparse.Namespace) -> list[float]:
    run(4)  # warm-up
    rates = []
    for _ in range(args.runs):
        started = time.perf_counter()
        generated = run(args.tokens)
        elapsed = time.perf_counter() - started
        if generated != args.tokens:
            raise RuntimeError(f'generated {generated} tokens, expected {args.tokens}')
        rates.append(generated / elapsed)
    return rates


def _worker_main(args: argparse.Namespace) -> None:
    rates = WORKERS[args.worker](args)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({'rates': rates, 'peak_rss_mb': peak_rss_mb}))


def _measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, '--worker', name, '--tokens', str(args.tokens), '--runs', str(args.runs)]
    command += ['--torch-threads', str(args.torch_threads)]
    if args.threads is not None:
        command += ['--threads', str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f'{name} failed:\n{done.stderr[-3000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


def _run_pair(pair: str, args: argparse.Namespace) -> None:
    engine, peer = PAIRS[pair]
    results: dict[str, list[dict[str, Any]]] = {engine: [], peer: []}
    for round_index in range(args.rounds):
        order = (engine, peer) if round_index % 2 == 0 else (peer, engine)
        for name in order:
            results[name].append(_measure(name, args))
    summary = {}
    for name, rounds in results.items():
        rate = statistics.median(statistics.median(r['rates']) for r in rounds)
        rss = max(r['peak_rss_mb'] for r in rounds)
        summary[name] = (rate, rss)
        print(f'  {name:<18} {rate:8.1f} tokens/s   peak RSS {rss:7.0f} MB')
    ratio = summary[engine][0] / summary[peer][0]
    print(f'  {engine} / {peer}: {ratio:.3f}x')
    if pair == 'llamacpp':
        rate, rss = summary[engine]
        print(
            f'  targets: >= 60 tokens/s [{"ok" if rate >= 60 else "MISSED"}], '
            f'>= 0.95x raw [{"ok" if ratio >= 0.95 else "MISSED"}], '
            f'peak RSS < 400 MB [{"ok" if rss < 400 else "MISSED"}]'
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=5, help='interleaved rounds per pair (median reported)')
    parser.add_argument('--runs', type=int, default=2, help='timed generations per worker process')
    parser.add_argument('--tokens', type=int, default=128, help='tokens per generation')
    parser.add_argument('--threads', type=int, default=None, help="llama.cpp threads (default: llama.cpp's)")
    parser.add_argument(
        '--torch-threads', type=int, default=1, help='torch threads (1 holds up best on a shared machine)'
    )
    parser.add_argument('--only', choices=[*sorted(PAIRS), 'triton'], action='append', help='measure only these')
    parser.add_argument('--worker', choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker_main(args)
        return
    pairs = args.only or [*PAIRS, 'triton']
    print(f'{args.tokens} tokens per generation, {args.runs} runs per process, {args.rounds} rounds')
    for pair in pairs:
        print(f'{pair}:')
        if pair == 'triton':
            _run_triton(args)
        else:
            _run_pair(pair, args)


def _run_triton(args: argparse.Namespace) -> None:
    """TritonClient against raw tritonclient.grpc on the same server (interleaved runs)."""
    from triton_engine import run  # the sibling script; it starts and stops its own tritonserver

    run(tokens=args.tokens, repeats=args.rounds)


if __name__ == '__main__':
    main()
