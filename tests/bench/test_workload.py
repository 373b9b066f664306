"""Workloads: JSONL datasets, synthetic prompts and Poisson arrival times."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from lagent.bench.workload import BenchRequest, load_dataset, poisson_arrivals, synthetic_requests


def test_poisson_gaps_are_exponential_with_the_given_rate() -> None:
    rate, count = 5.0, 20000
    times = poisson_arrivals(count, rate, seed=0)
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert all(gap > 0 for gap in gaps)
    # mean 1/rate: the standard error of the mean is 0.2 / sqrt(20000) = 0.0014, so 3% is > 4 sigma
    assert statistics.fmean(gaps) == pytest.approx(1 / rate, rel=0.03)
    # an exponential's standard deviation equals its mean
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.05)
    # its median is ln 2 / rate
    assert sum(gap < math.log(2) / rate for gap in gaps) / count == pytest.approx(0.5, abs=0.015)
    # arrivals per second are Poisson: variance equals mean (index of dispersion 1)
    per_second = [0] * math.ceil(times[-1])
    for t in times:
        per_second[int(t)] += 1
    full = per_second[:-1]
    assert statistics.fmean(full) == pytest.approx(rate, rel=0.05)
    assert statistics.pvariance(full) / statistics.fmean(full) == pytest.approx(1.0, abs=0.15)


def test_poisson_arrivals_are_reproducible() -> None:
    assert poisson_arrivals(50, 2.0, seed=7) == poisson_arrivals(50, 2.0, seed=7)
    assert poisson_arrivals(50, 2.0, seed=7) != poisson_arrivals(50, 2.0, seed=8)
    times = poisson_arrivals(50, 2.0, seed=7)
    assert times == sorted(times)


def test_infinite_rate_sends_everything_at_once() -> None:
    assert poisson_arrivals(4, math.inf) == [0.0] * 4


@pytest.mark.parametrize('rate', [0, -1.0, math.nan])
def test_bad_rate(rate: float) -> None:
    with pytest.raises(ValueError, match='rate must be positive'):
        poisson_arrivals(3, rate)


def test_synthetic_requests() -> None:
    requests = synthetic_requests(5, input_len=12, output_len=9, seed=1)
    assert len(requests) == 5
    for request in requests:
        assert request.max_new_tokens == 9
        assert [m['role'] for m in request.messages] == ['user']
        assert len(request.messages[0]['content'].split()) == 12
    assert requests == synthetic_requests(5, input_len=12, output_len=9, seed=1)
    assert len({r.messages[0]['content'] for r in requests}) == 5
    with pytest.raises(ValueError, match='input_len'):
        synthetic_requests(1, input_len=0, output_len=1)


def test_load_dataset(tmp_path: Path) -> None:
    path = tmp_path / 'data.jsonl'
    conversation = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    lines = [
        json.dumps({'prompt': 'Name a colour.', 'max_new_tokens': 8}),
        '',
        json.dumps({'messages': conversation}),
        json.dumps({'prompt': 'third'}),
    ]
    path.write_text('\n'.join(lines) + '\n')
    assert load_dataset(path) == [
        BenchRequest([{'role': 'user', 'content': 'Name a colour.'}], 8),
        BenchRequest(conversation, None),
        BenchRequest([{'role': 'user', 'content': 'third'}], None),
    ]
    assert len(load_dataset(path, limit=2)) == 2


@pytest.mark.parametrize(
    ('line', 'message'),
    [
        ('{"prompt": ', 'data.jsonl:2: not valid JSON'),
        ('[1]', 'data.jsonl:2: expected a JSON object'),
        ('{"text": "x"}', 'data.jsonl:2: needs "prompt"'),
        ('{"prompt": "x", "max_new_tokens": 0}', 'data.jsonl:2: max_new_tokens must be a positive integer'),
    ],
)
def test_bad_dataset_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / 'data.jsonl'
    path.write_text('{"prompt": "ok"}\n' + line + '\n')
    with pytest.raises(ValueError, match=message):
        load_dataset(path)


def test_empty_dataset(tmp_path: Path) -> None:
    path = tmp_path / 'data.jsonl'
    path.write_text('\n\n')
    with pytest.raises(ValueError, match='holds no requests'):
        load_dataset(path)
