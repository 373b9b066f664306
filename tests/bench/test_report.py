"""The printed summary, the JSON file, the figure and the optional progress bar."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lagent.bench.report import format_summary, plot_run, progress_bar, run_to_json, write_json
from lagent.bench.runner import BenchRun, RequestRecord
from lagent.bench.stats import summarize
from lagent.errors import MissingExtraError


def _run() -> BenchRun:
    records = [
        RequestRecord(
            index=0,
            scheduled_s=0.0,
            start_s=0.0,
            event_s=[0.1, 0.2, 0.3, 0.4, 0.5],
            latency_s=0.5,
            output_tokens=5,
            output_tokens_source='usage',
        ),
        RequestRecord(index=1, scheduled_s=0.2, start_s=0.25, latency_s=0.05, error='LLMConnectionError: refused'),
    ]
    return BenchRun(records=records, duration_s=1.0)


def test_summary_lines() -> None:
    text = format_summary(summarize(_run().records, 1.0))
    rows = dict(line.split(':', 1) for line in text.splitlines())
    rows = {name: value.strip() for name, value in rows.items()}
    assert rows['Requests sent'] == '2' and rows['Completed'] == '1' and rows['Errors'] == '1'
    assert rows['Output tokens'] == '5 (from usage)'
    assert rows['Output tokens/s'] == '5.000'
    assert rows['TTFT p50 (ms)'] == '100.000'
    assert rows['TPOT mean (ms)'] == '100.000'
    assert rows['ITL p99 (ms)'] == '100.000'
    assert rows['Latency p90 (ms)'] == '500.000'


def test_summary_without_measurements_shows_dashes() -> None:
    text = format_summary(summarize(_run().records[1:], 1.0))
    assert 'TTFT p50 (ms):' in text and text.count(' -') == 16


def test_json_holds_settings_summary_and_every_record(tmp_path: Path) -> None:
    run = _run()
    path = tmp_path / 'out.json'
    write_json(path, run_to_json(run, summarize(run.records, 1.0), {'request_rate': float('inf'), 'concurrency': 2}))
    data = json.loads(path.read_text())  # strict JSON: no Infinity
    assert data['settings'] == {'request_rate': 'inf', 'concurrency': 2}
    assert data['summary']['errors'] == 1 and data['summary']['ttft']['p50'] == pytest.approx(0.1)
    assert [r['index'] for r in data['records']] == [0, 1]
    assert data['records'][0]['tpot_s'] == pytest.approx(0.1)
    assert data['records'][1]['error'] == 'LLMConnectionError: refused'
    assert set(data['records'][0]) >= {
        'event_s',
        'ttft_s',
        'latency_s',
        'itl_s',
        'output_tokens',
        'output_tokens_source',
    }
    assert data['records'][0]['itl_s'] == pytest.approx([0.1] * 4)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / 'bench.png'
    run = _run()
    plot_run(path, run, summarize(run.records, 1.0))
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_plot_without_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    run = _run()
    with pytest.raises(MissingExtraError, match=r'lagent\[bench\]'):
        plot_run(tmp_path / 'x.png', run, summarize(run.records, 1.0))


def test_progress_bar_without_tqdm_is_silent(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, 'find_spec', lambda name, *a: None if name == 'tqdm' else real_find_spec(name, *a)
    )
    with progress_bar(2) as advance:
        advance(_run().records[0])
    assert capsys.readouterr().err == ''


def test_progress_bar_counts_requests(capsys: pytest.CaptureFixture) -> None:
    with progress_bar(2) as advance:
        for record in _run().records:
            advance(record)
    assert '2/2' in capsys.readouterr().err
