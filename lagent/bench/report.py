"""Showing a benchmark: the printed summary, the JSON file, the figure and the progress bar."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lagent._optional import import_optional
from lagent.bench.runner import BenchRun, RequestRecord
from lagent.bench.stats import BenchSummary, LatencyStats, token_arrivals

__all__ = ['format_summary', 'plot_run', 'progress_bar', 'run_to_json', 'write_json']

_LATENCIES = (('TTFT', 'ttft'), ('TPOT', 'tpot'), ('ITL', 'itl'), ('Latency', 'latency'))


def format_summary(summary: BenchSummary) -> str:
    """Return the summary as aligned ``name: value`` lines (latencies in milliseconds)."""
    rows: list[tuple[str, str]] = [
        ('Requests sent', str(summary.num_requests)),
        ('Completed', str(summary.completed)),
        ('Errors', str(summary.errors)),
        ('Duration (s)', f'{summary.duration_s:.3f}'),
        ('Requests/s', f'{summary.requests_per_s:.3f}'),
        ('Output tokens', _tokens(summary)),
        ('Output tokens/s', '-' if summary.output_tokens_per_s is None else f'{summary.output_tokens_per_s:.3f}'),
    ]
    for label, name in _LATENCIES:
        stats: LatencyStats | None = getattr(summary, name)
        for key in ('mean', 'p50', 'p90', 'p99'):
            rows.append((f'{label} {key} (ms)', '-' if stats is None else f'{getattr(stats, key) * 1000:.3f}'))
    width = max(len(name) for name, _ in rows) + 2
    return '\n'.join(f'{name + ":":<{width}}{value}' for name, value in rows)


def _tokens(summary: BenchSummary) -> str:
    if summary.output_tokens is None:
        return '- (the engine reports no usage: give a tokenizer to count them)'
    return f'{summary.output_tokens} (from {summary.output_tokens_source})'


def run_to_json(run: BenchRun, summary: BenchSummary, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the run as plain data: the settings, the summary and every record (times in seconds)."""
    records = [
        {**dataclasses.asdict(record), 'ttft_s': record.ttft_s, 'itl_s': record.itl_s, 'tpot_s': record.tpot_s}
        for record in run.records
    ]
    return {
        'settings': {key: _finite_or_text(value) for key, value in (settings or {}).items()},
        'summary': dataclasses.asdict(summary),
        'records': records,
    }


def write_json(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write :func:`run_to_json`'s data to ``path``."""
    with open(path, 'w', encoding='utf-8') as file:
        json.dump(data, file, indent=2)
        file.write('\n')


def _finite_or_text(value: Any) -> Any:
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def plot_run(path: str | os.PathLike[str], run: BenchRun, summary: BenchSummary) -> None:
    """Save a figure of the run: TTFT and ITL distributions, latency over time and
    cumulative output tokens as they arrived (see :func:`~lagent.bench.stats.token_arrivals`).

    Raises:
        MissingExtraError: matplotlib is not installed.
    """
    matplotlib = import_optional('matplotlib', package='matplotlib', extra='bench')
    matplotlib.use('Agg')
    pyplot = import_optional('matplotlib.pyplot', package='matplotlib', extra='bench')
    done = [record for record in run.records if record.error is None]
    figure, axes = pyplot.subplots(2, 2, figsize=(11, 8))
    try:
        ttft_ms = [r.ttft_s * 1000 for r in done if r.ttft_s is not None]
        itl_ms = [gap * 1000 for r in done for gap in r.itl_s]
        _histogram(axes[0][0], ttft_ms, 'Time to first token', 'ms')
        _histogram(axes[0][1], itl_ms, 'Inter-token latency', 'ms')
        latency = axes[1][0]
        latency.scatter([r.start_s for r in done], [r.latency_s for r in done], s=12, label='completed')
        failed = [r for r in run.records if r.error is not None]
        if failed:
            latency.scatter([r.start_s for r in failed], [r.latency_s for r in failed], s=12, c='red', label='error')
        latency.set(title='Request latency', xlabel='sent at (s)', ylabel='latency (s)')
        latency.legend()
        throughput = axes[1][1]
        times, totals, total = [0.0], [0.0], 0.0
        for at, tokens in token_arrivals(done):
            total += tokens
            times.append(at)
            totals.append(total)
        throughput.step(times, totals, where='post')
        rate = '?' if summary.output_tokens_per_s is None else f'{summary.output_tokens_per_s:.1f}'
        throughput.set(
            title=f'Output tokens as they arrived ({rate} tokens/s overall)',
            xlabel='time (s)',
            ylabel='cumulative output tokens',
        )
        figure.suptitle(
            f'{summary.completed}/{summary.num_requests} requests, {summary.errors} errors, '
            f'{summary.requests_per_s:.2f} requests/s'
        )
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)


def _histogram(axis: Any, values: list[float], title: str, unit: str) -> None:
    if values:
        axis.hist(values, bins=min(30, max(5, len(values) // 2)))
    else:
        axis.text(0.5, 0.5, 'no data', ha='center', va='center', transform=axis.transAxes)
    axis.set(title=title, xlabel=unit, ylabel='count')


@contextmanager
def progress_bar(total: int, *, enabled: bool = True, unit: str = 'req') -> Iterator[Callable[[RequestRecord], None]]:
    """Yield a callback that advances a tqdm bar on stderr by one finished request
    (or anything else with an ``error`` attribute), counted in ``unit``.

    Without tqdm installed (or with ``enabled=False``) the callback does nothing.
    """
    if not enabled or importlib.util.find_spec('tqdm') is None:
        yield lambda record: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True) as bar:

        def advance(record: RequestRecord) -> None:
            bar.update(1)
            if record.error is not None:
                bar.set_postfix_str('errors seen', refresh=False)

        yield advance
