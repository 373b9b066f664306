"""The fault campaign in CI: 200 seeded runs against the chaos server over every
fault class, engine and public method, with no untyped error, hang, silent loss
or leaked key; no file descriptor left open; 256 concurrent async streams.

``benchmarks/chaos.py`` runs the same campaign at full length (1,000+ runs)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from tests.faults.campaign import (
    OUTCOMES,
    Campaign,
    ChaosProcess,
    chaos_server,
    concurrent_streams,
    fault_classes,
    open_fds,
    summary,
)

RUNS = 200


@pytest.fixture(scope='module')
def server() -> Iterator[ChaosProcess]:
    with chaos_server() as running:
        yield running


def test_there_are_at_least_forty_fault_classes() -> None:
    names = [fault.name for fault in fault_classes()]
    assert len(names) == len(set(names)) >= 40


def test_campaign_finds_no_untyped_error_hang_silent_loss_or_leak(server: ChaosProcess) -> None:
    warmup = Campaign(server, seed=99)
    warmup.run(3)  # lazily created things (sessions, the deadline thread) exist before counting
    gc.collect()
    fds_before = open_fds()
    failures: list[str] = []
    campaign = Campaign(server, seed=2024, log=failures.append)
    counts = campaign.run(RUNS)
    report = summary(campaign.runs)
    print(report)
    bad = {name: counts[name] for name in OUTCOMES if name not in ('correct', 'typed error') and counts[name]}
    assert not bad, report + '\n' + '\n'.join(failures)
    assert counts['typed error'] == 0, report + '\n' + '\n'.join(failures)  # nor a wrong error class
    assert len({run.fault for run in campaign.runs}) == len(fault_classes())
    assert [run.fds_left for run in campaign.runs if run.fds_left > 0] == [], 'close() left connections open'
    assert {run.method for run in campaign.runs} >= {'generate', 'agenerate', 'stream_chat', 'astream_chat'}
    gc.collect()
    assert open_fds() <= fds_before, 'file descriptors left open after the campaign'


def test_256_concurrent_async_streams_all_complete(server: ChaosProcess) -> None:
    server.plan(tokens=[f' t{i}' for i in range(50)])
    gc.collect()
    fds_before = open_fds()
    exact, _ = asyncio.run(concurrent_streams(server.url, 256, 50))
    assert exact == 256
    gc.collect()
    assert open_fds() <= fds_before
