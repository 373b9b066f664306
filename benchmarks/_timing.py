"""Timing lagent against a peer in the same run, so that a busy machine slows
both alike: interleaved rounds, medians, and the report of two streamed sides.

Imported by the benchmark scripts beside it (``python benchmarks/<script>.py``
puts this folder on the import path).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ['interleaved_medians', 'report_stream_rates', 'run_from_command_line', 'stream_rates']


def interleaved_medians(measures: Mapping[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Take every measurement once per round, in order, for ``repeats`` rounds; return the median of each."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def stream_rates(sides: Mapping[str, Callable[[], str]], tokens: int, repeats: int) -> dict[str, float]:
    """Tokens per second of each side, from the request to the last piece: the median of interleaved runs.

    Each side runs once untimed first (warm-up); every run of every side must
    read the text the first side read then.

    Raises:
        RuntimeError: A side read other text.
    """
    expected = None
    for read in sides.values():
        text = read()
        expected = text if expected is None else expected
        if text != expected:
            raise RuntimeError('the sides read different text')

    def rate(read: Callable[[], str]) -> Callable[[], float]:
        def measure() -> float:
            started = time.perf_counter()
            text = read()
            elapsed = time.perf_counter() - started
            if text != expected:
                raise RuntimeError('the sides read different text')
            return tokens / elapsed

        return measure

    return interleaved_medians({name: rate(read) for name, read in sides.items()}, repeats)


def report_stream_rates(
    title: str, rates: Mapping[str, float], *, raw: str, lagent: str, tokens: int, target: float
) -> dict[str, float]:
    """Print the rates of the raw side and of lagent and their ratio against ``target``; return them.

    Args:
        title: The first line (what was measured, and how).
        rates: Tokens per second by label, from :func:`stream_rates`.
        raw: The label of the raw side.
        lagent: The label of lagent's side.
        tokens: Tokens per run.
        target: The ratio lagent/raw to reach.

    Returns:
        ``tokens``, ``raw_tokens_per_s``, ``lagent_tokens_per_s`` and ``ratio``.
    """
    result = {'tokens': float(tokens), 'raw_tokens_per_s': rates[raw], 'lagent_tokens_per_s': rates[lagent]}
    result['ratio'] = result['lagent_tokens_per_s'] / result['raw_tokens_per_s']
    print(title)
    print(f'  {raw:<29}{result["raw_tokens_per_s"]:9.1f} tokens/s')
    print(f'  {lagent:<29}{result["lagent_tokens_per_s"]:9.1f} tokens/s')
    print(f'  {"ratio lagent/raw":<29}{result["ratio"]:9.3f}x   (target >= {target:g}x)')
    return result


def run_from_command_line(doc: str, run: Callable[[int, int], object]) -> None:
    """Parse a streaming benchmark's ``--tokens`` and ``--repeats`` and call ``run(tokens, repeats)``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument('--tokens', type=int, default=2000, help='tokens per request')
    parser.add_argument('--repeats', type=int, default=7, help='interleaved runs per side')
    args = parser.parse_args()
    run(args.tokens, args.repeats)
