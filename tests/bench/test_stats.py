"""Percentiles and the run summary, against values computed by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lagent.bench.runner import RequestRecord
from lagent.bench.stats import LatencyStats, percentile, summarize, token_arrivals


@pytest.mark.parametrize(
    ('values', 'q', 'expected'),
    [
        ([7.0], 50, 7.0),
        ([1, 2, 3, 4], 50, 2.5),
        ([4, 1, 3, 2], 50, 2.5),  # order does not matter
        ([10, 20, 30, 40, 50], 90, 46.0),  # rank 3.6: 40 + 0.6 * 10
        ([10, 20, 30, 40, 50], 0, 10.0),
        ([10, 20, 30, 40, 50], 100, 50.0),
        (list(range(1, 101)), 99, 99.01),  # rank 98.01
        ([1, 1, 1, 5], 90, 3.8),  # rank 2.7: 1 + 0.7 * 4
    ],
)
def test_percentile_by_hand(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_matches_numpy_linear_method() -> None:
    rng = random.Random(3)
    for size in (2, 3, 10, 101):
        values = [rng.expovariate(1.0) for _ in range(size)]
        for q in (1, 50, 90, 99, 99.9):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match='no values'):
        percentile([], 50)
    with pytest.raises(ValueError, match=r'\[0, 100\]'):
        percentile([1.0], 101)


def test_latency_stats() -> None:
    stats = LatencyStats.of([0.1, 0.3])
    assert stats is not None
    assert (stats.count, stats.mean, stats.p50, stats.p90, stats.p99) == pytest.approx((2, 0.2, 0.2, 0.28, 0.298))
    assert LatencyStats.of([]) is None


def _records() -> list[RequestRecord]:
    return [
        RequestRecord(
            index=0,
            scheduled_s=0.0,
            event_s=[0.1, 0.2, 0.3, 0.4, 0.5],
            latency_s=0.5,
            output_tokens=5,
            output_tokens_source='usage',
        ),
        RequestRecord(
            index=1,
            scheduled_s=0.0,
            start_s=1.0,
            event_s=[0.3, 0.5, 0.7, 0.9],
            latency_s=0.9,
            output_tokens=4,
            output_tokens_source='tokenizer',
        ),
        RequestRecord(index=2, scheduled_s=0.0, latency_s=0.05, error='LLMConnectionError: refused'),
    ]


def test_summary_by_hand() -> None:
    summary = summarize(_records(), duration_s=2.0)
    assert (summary.num_requests, summary.completed, summary.errors) == (3, 2, 1)
    assert summary.output_tokens == 9
    assert summary.output_tokens_per_s == pytest.approx(4.5)
    assert summary.requests_per_s == pytest.approx(1.0)
    assert summary.ttft.mean == pytest.approx(0.2)
    assert summary.ttft.p90 == pytest.approx(0.28)
    # TPOT: (0.5 - 0.1) / 4 = 0.1 and (0.9 - 0.3) / 3 = 0.2
    assert summary.tpot.mean == pytest.approx(0.15)
    # ITL pools the gaps of every request: four of 0.1, three of 0.2
    assert summary.itl.count == 7
    assert summary.itl.mean == pytest.approx(1.0 / 7)
    assert summary.itl.p50 == pytest.approx(0.1)
    assert summary.itl.p90 == pytest.approx(0.2)
    assert summary.latency.p50 == pytest.approx(0.7)  # the failed request is left out
    assert summary.output_tokens_source == 'mixed'


def test_tpot_needs_two_tokens_a_count_and_success() -> None:
    one_token = RequestRecord(index=0, scheduled_s=0, event_s=[0.1], latency_s=0.1, output_tokens=1)
    failed = RequestRecord(index=1, scheduled_s=0, event_s=[0.1], latency_s=0.3, output_tokens=3, error='X: y')
    uncounted = RequestRecord(index=2, scheduled_s=0, event_s=[0.1, 0.2], latency_s=0.3)
    assert one_token.tpot_s is None and failed.tpot_s is None and uncounted.tpot_s is None
    assert summarize([one_token], 1.0).tpot is None


def test_summary_of_only_failures() -> None:
    summary = summarize([_records()[2]], duration_s=1.0)
    assert (summary.completed, summary.errors, summary.output_tokens) == (0, 1, 0)
    assert summary.ttft is None and summary.itl is None and summary.latency is None
    assert summary.output_tokens_source == 'none'


def test_unknown_token_counts_give_no_throughput_rather_than_a_guess() -> None:
    uncounted = RequestRecord(index=0, scheduled_s=0, event_s=[0.1, 0.2], latency_s=0.3)
    summary = summarize([_records()[0], uncounted], duration_s=1.0)
    assert summary.output_tokens is None and summary.output_tokens_per_s is None
    assert summary.output_tokens_source == 'mixed'
    assert summary.itl is not None and summary.itl.count == 5  # latencies do not need a count


def test_tokens_are_credited_when_they_arrive_not_at_the_end() -> None:
    arrivals = token_arrivals(_records())
    assert [at for at, _ in arrivals] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 1.3, 1.5, 1.7, 1.9])
    assert sum(tokens for _, tokens in arrivals) == pytest.approx(9)
    assert len({at for at, _ in arrivals}) == 9  # a ramp, not one step per request
