"""Batches on a real two-node Ray cluster (``ray start --head`` + ``ray start --address``
on this machine): workers killed mid-run, GPU needs as Ray resources, every id exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lagent.distributed import AgentConfig, RayOptions, run_batch
from tests.distributed.test_batch import assert_each_id_once, results, tasks
from tests.distributed.workloads import QuestionEngine
from tests.fixtures.ray_cluster import RayCluster, ray_cluster
from tests.fixtures.waiting import wait_until

ray = pytest.importorskip('ray')

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def cluster() -> Iterator[RayCluster]:
    """A head node (1 CPU) and a second node (1 CPU and 1 declared GPU)."""
    with ray_cluster([(1, 0), (1, 1)]) as running:
        yield running


@pytest.fixture
def driver(cluster: RayCluster) -> Iterator[Any]:
    """This process connected to the cluster (``run_batch`` then uses that connection)."""
    ray.init(address=cluster.address, logging_level='WARNING')
    try:
        joined = wait_until(
            lambda: len([node for node in ray.nodes() if node['Alive']]) >= len(cluster.nodes), 60, interval=0.2
        )
        assert joined, 'the second node never joined'
        yield ray
    finally:
        ray.shutdown()


def test_a_batch_on_the_embedded_model_survives_a_worker_killed_mid_run(cluster: RayCluster, tmp_path: Path) -> None:
    count = 8
    lines = [json.dumps({'id': index, 'question': f'What is {index} + {index}?'}) for index in range(count)]
    (tmp_path / 'tasks.jsonl').write_text('\n'.join(lines) + '\n')
    out = tmp_path / 'out.jsonl'
    command = [
        sys.executable, '-m', 'lagent', 'batch', 'tasks.jsonl', '--out', 'out.jsonl', '--workers', '2',
        '--ray', cluster.address, '--tools', 'calculator', '--max-turn', '1', '--max-new-tokens', '12',
        '--temperature', '0', '--no-progress',
    ]  # fmt: skip
    batch = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while not (out.exists() and out.read_text().count('\n') >= 1):
            assert batch.poll() is None, batch.communicate()
            assert time.monotonic() < deadline, 'no result within 240 s'
            time.sleep(0.05)
        victim = results(out)[0]['worker']['pid']
        assert cluster.owns(victim)  # a worker of this test's cluster, nobody else's process
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = batch.communicate(timeout=300)
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
            batch.wait(10)
    assert batch.returncode == 0, stderr
    assert f'lagent batch: {count} tasks: {count} done, 0 already in out.jsonl, 0 failed' in stdout
    assert '(1 worker lost)' in stdout
    restarted = int(stdout.split(' restarted after')[0].rsplit(' ', 1)[1])
    assert restarted >= 1  # the task the killed worker held (or was handed) ran again elsewhere
    records = assert_each_id_once(out, set(range(count)))
    assert {record['worker']['pid'] for record in records} - {victim}  # others carried on
    assert all(record['status'] is not None and 'answer' in record for record in records)


def test_a_task_whose_worker_dies_runs_again_on_another_worker(driver: Any, tmp_path: Path) -> None:
    engine = QuestionEngine(tmp_path)
    summary = run_batch(
        AgentConfig(llm=engine), tasks(6, 'die once please'), tmp_path / 'out.jsonl', workers=2, ray=True
    )
    assert (summary.done, summary.failed, summary.retried, summary.workers_lost) == (7, {}, 1, 1)
    records = assert_each_id_once(tmp_path / 'out.jsonl', set(range(7)))
    died = int((tmp_path / 'died-die-once-please').read_text())
    survivor = next(record for record in records if record['id'] == 6)
    assert survivor['answer'] == 'answer to die once please'
    assert survivor['worker']['pid'] != died
    builds = engine.builds()
    # two workers, then a replacement (which may not have started before the end): each built its engine once
    assert died in builds and len(builds) == len(set(builds)) <= 3


def test_a_task_that_kills_every_worker_fails_after_max_attempts(driver: Any, tmp_path: Path) -> None:
    summary = run_batch(
        AgentConfig(llm=QuestionEngine(tmp_path)),
        tasks(4, 'die always'),
        tmp_path / 'out.jsonl',
        workers=2,
        ray=True,
        max_attempts=2,
    )
    assert summary.done == 4 and summary.workers_lost == 2 and summary.retried == 1
    assert list(summary.failed) == [4]
    assert summary.failed[4].startswith('its worker was lost on each of 2 attempts; last: ')
    assert_each_id_once(tmp_path / 'out.jsonl', set(range(4)))


def test_gpu_needs_are_ray_resources(driver: Any, tmp_path: Path) -> None:
    gpu_node = next(node['NodeID'] for node in driver.nodes() if node['Alive'] and node['Resources'].get('GPU'))
    out = tmp_path / 'out.jsonl'
    out.write_text('{"id": 0, "answer": "from an earlier run"}\n')
    options = RayOptions(num_gpus=1)
    summary = run_batch(AgentConfig(llm=QuestionEngine(tmp_path)), tasks(5), out, workers=2, ray=options)
    assert (summary.done, summary.skipped, summary.failed) == (4, 1, {})
    records = assert_each_id_once(out, set(range(5)))
    assert {record['worker']['node'] for record in records[1:]} == {gpu_node}  # the only node with a GPU
    with pytest.raises(ValueError, match=r'no node of the Ray cluster has what one worker needs \(CPU=1, GPU=2\)'):
        run_batch(AgentConfig(llm=QuestionEngine(tmp_path)), tasks(1), tmp_path / 'b.jsonl', ray=RayOptions(num_gpus=2))
    lmdeploy_on_two_gpus = AgentConfig(llm={'type': 'LMDeployPipeline', 'path': 'some/model', 'tp': 2})
    with pytest.raises(ValueError, match=r'\(CPU=1, GPU=2\)'):  # declared from the engine config, before any build
        run_batch(lmdeploy_on_two_gpus, tasks(1), tmp_path / 'c.jsonl', ray=True)


def test_a_worker_that_cannot_build_its_engine_stops_the_batch_with_that_error(driver: Any, tmp_path: Path) -> None:
    config = AgentConfig(llm={'type': 'LlamaCpp', 'path': str(tmp_path / 'missing.gguf')})
    with pytest.raises(FileNotFoundError, match='no GGUF file at'):
        run_batch(config, tasks(3), tmp_path / 'out.jsonl', workers=2, ray=True)
    assert (tmp_path / 'out.jsonl').read_text() == ''
