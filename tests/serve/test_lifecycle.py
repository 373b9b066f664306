"""``lagent serve`` as a process: SIGTERM stops taking requests, lets running
ones finish (within ``--drain-timeout``) and exits 0; child servers it owns
are stopped with it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.process_checks import process_alive
from tests.fixtures.waiting import wait_until
from tests.serve.engines import TICK
from tests.serve.served import lagent_serve
from tests.serve.wire import content_of, events_of, user


def ticking_config(tmp_path: Path, ticks: int, interval: float) -> str:
    path = tmp_path / 'ticking.json'
    path.write_text(json.dumps({'type': 'tests.serve.engines:TickingLLM', 'ticks': ticks, 'interval': interval}))
    return str(path)


def wait_exit(served: Any, timeout: float) -> int | None:
    wait_until(lambda: not served.process.running, timeout, interval=0.05)
    return served.process.returncode


def stream_in_background(url: str, received: dict[str, Any]) -> threading.Thread:
    def read() -> None:
        body = {'model': 'ticking', 'messages': user('x'), 'stream': True}
        with requests.post(f'{url}/v1/chat/completions', json=body, stream=True, timeout=60) as response:
            received['status'] = response.status_code
            chunks = []
            for data in response.iter_content(chunk_size=None):
                chunks.append(data)
                received['started'] = True
            received['text'] = b''.join(chunks).decode()

    thread = threading.Thread(target=read)
    thread.start()
    return thread


def test_sigterm_drains_running_streams_refuses_new_ones_and_exits_0(tmp_path: Path) -> None:
    config = ticking_config(tmp_path, ticks=40, interval=0.05)
    with lagent_serve('--config', config, log_path=tmp_path / 'serve.log') as served:
        received: dict[str, Any] = {}
        reader = stream_in_background(served.url, received)
        assert wait_until(lambda: received.get('started'), 10), 'the stream did not start'
        os.kill(served.process.pid, signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(requests.ConnectionError):  # no longer listening
            requests.get(f'{served.url}/health', timeout=2)
        reader.join(20)
        assert wait_exit(served, 20) == 0
    events = events_of(received['text'])
    assert received['status'] == 200 and events[-1] == '[DONE]'
    assert content_of(events) == TICK * 40  # the running answer was finished, whole
    log = (tmp_path / 'serve.log').read_text()
    assert 'SIGTERM: finishing running requests' in log


def test_sigterm_cuts_what_outlives_the_drain_timeout(tmp_path: Path) -> None:
    config = ticking_config(tmp_path, ticks=100_000, interval=0.01)
    with lagent_serve('--config', config, '--drain-timeout', '0.5') as served:
        received: dict[str, Any] = {}
        reader = stream_in_background(served.url, received)
        assert wait_until(lambda: received.get('started'), 10), 'the stream did not start'
        started = time.monotonic()
        os.kill(served.process.pid, signal.SIGTERM)
        assert wait_exit(served, 20) == 0
        assert time.monotonic() - started < 10
        reader.join(10)
    events = events_of(received['text'])
    assert events[-1]['error']['message'] == 'the server shut down before the answer was complete'


@pytest.mark.slow
def test_a_child_server_is_stopped_with_lagent_serve(smollm2_path: Path, tmp_path: Path) -> None:
    with lagent_serve('--backend', 'llamacpp-server', '--model', str(smollm2_path), '--model-name', 'child') as served:
        answer = requests.post(
            f'{served.url}/v1/chat/completions',
            json={'model': 'child', 'messages': user('Hi'), 'max_tokens': 4},
            timeout=120,
        )
        assert answer.status_code == 200 and answer.json()['choices'][0]['message']['content']
        children = descendants(served.process.pid)
        assert any('llama_cpp.server' in command for command in children.values()), children
        os.kill(served.process.pid, signal.SIGTERM)
        assert wait_exit(served, 30) == 0
    assert wait_until(lambda: not any(process_alive(pid) for pid in children), 10, interval=0.05), (
        f'left running: {children}'
    )


def descendants(pid: int) -> dict[int, str]:
    """Every process under ``pid`` (children, grandchildren...) and its command line."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            commands[int(entry.name)] = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(')', 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                found[child] = commands.get(child, '')
                frontier.append(child)
    return found
