"""ServerProcess: spawn, readiness, early failure, port conflicts and stopping
in every way the owner can end, with real child processes."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lagent.errors import EngineStartError
from lagent.llms.process import ServerProcess, ensure_port_free, free_port
from tests.fixtures.process_checks import (
    Leftovers,
    group_alive,
    owned_server_pid,
    process_alive,
    read_line,
    start_owner,
    wait_group_gone,
)

TINY_SERVER = Path(__file__).parents[1] / 'fixtures' / 'tiny_server.py'


@pytest.fixture
def leftovers() -> Iterator[Leftovers]:
    found = Leftovers()
    yield found
    found.kill_all()


def tiny(port: int, *args: str, **kwargs) -> ServerProcess:
    return ServerProcess([sys.executable, str(TINY_SERVER), '--port', str(port), *args], port=port, **kwargs)


def test_start_ready_stop(leftovers: Leftovers) -> None:
    server = tiny(free_port(), name='tiny')
    assert server.pid is None and not server.running
    server.start()
    pgid = leftovers.group(server.pid)
    assert server.running
    assert os.getpgid(server.pid) == server.pid  # its own process group
    assert os.getpgid(server.pid) != os.getpgid(0)
    assert requests.get(f'{server.url}/v1/models', timeout=5).json()['data'][0]['id'] == 'tiny'
    log = server.log_path
    assert log is not None and 'tiny_server argv' in log.read_text()

    server.stop()
    assert not group_alive(pgid)
    assert not server.running
    assert server.returncode == -signal.SIGTERM
    assert not log.exists()  # the temporary log of a clean run is removed
    server.stop()  # a second stop does nothing


def test_context_manager_stops(leftovers: Leftovers, tmp_path: Path) -> None:
    log = tmp_path / 'server.log'
    with tiny(free_port(), log_path=log) as server:
        pgid = leftovers.group(server.pid)
        assert group_alive(pgid)
    assert not group_alive(pgid)
    assert 'tiny_server argv' in log.read_text()  # a log the caller named is kept


def test_waits_for_health(leftovers: Leftovers) -> None:
    started = time.monotonic()
    with tiny(free_port(), '--unhealthy-for', '1.5') as server:
        leftovers.group(server.pid)
        assert time.monotonic() - started >= 1.5
        assert requests.get(f'{server.url}/health', timeout=5).status_code == 200
        assert '" 503 -' in server.log_tail(lines=1000)  # it was polled while unhealthy


def test_early_exit_quotes_log_at_once(leftovers: Leftovers) -> None:
    server = tiny(free_port(), '--exit-with', '3', '--message', 'FATAL: model file is corrupt', ready_timeout=60)
    started = time.monotonic()
    with pytest.raises(EngineStartError) as info:
        server.start()
    elapsed = time.monotonic() - started
    leftovers.group(server.pid)
    assert 'FATAL: model file is corrupt' in str(info.value)
    assert 'code 3' in str(info.value)
    assert elapsed < 10  # far sooner than ready_timeout: the exit is noticed, not waited out
    assert server.returncode == 3
    assert not group_alive(server.pid)
    assert server.log_path is not None and server.log_path.exists()  # kept for the post-mortem
    server.log_path.unlink()


def test_port_taken_fails_before_spawning(tmp_path: Path) -> None:
    marker = tmp_path / 'spawned'
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = ServerProcess([sys.executable, '-c', f'open({str(marker)!r}, "w")'], port=port)
        with pytest.raises(EngineStartError, match=f'127.0.0.1:{port}'):
            server.start()
    assert server.pid is None
    time.sleep(0.3)
    assert not marker.exists()


def test_ensure_port_free_accepts_a_free_port() -> None:
    ensure_port_free('127.0.0.1', free_port())


def test_missing_executable() -> None:
    server = ServerProcess(['lagent-no-such-server-binary'], port=free_port())
    with pytest.raises(EngineStartError, match='cannot run lagent-no-such-server-binary'):
        server.start()
    assert not server.running


def test_not_ready_in_time_is_stopped(leftovers: Leftovers) -> None:
    server = tiny(free_port(), '--unhealthy-for', '3600', ready_timeout=1.0)
    with pytest.raises(EngineStartError, match=r'not ready .* after 1s'):
        server.start()
    leftovers.group(server.pid)
    assert not group_alive(server.pid)
    assert server.log_path is not None
    server.log_path.unlink()


def test_wrong_api_key_is_reported(leftovers: Leftovers) -> None:
    server = tiny(free_port(), '--api-key', 'right-key', api_key='wrong-key', ready_timeout=30)
    with pytest.raises(EngineStartError, match='refused the API key') as info:
        server.start()
    leftovers.group(server.pid)
    assert 'wrong-key' not in str(info.value) and 'right-key' not in str(info.value)
    assert not group_alive(server.pid)
    assert server.log_path is not None
    server.log_path.unlink()


def test_secrets_never_logged(leftovers: Leftovers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger='lagent.llms.process')
    key = 'sk-very-secret-1234'
    with tiny(free_port(), '--api-key', key, api_key=key) as server:
        leftovers.group(server.pid)
        assert key in server.log_path.read_text()  # the server printed it...
        assert key not in server.log_tail(lines=1000)  # ...but quoting masks it
        assert '***' in server.log_tail(lines=1000)
        assert key not in repr(server)
    assert caplog.records and key not in caplog.text
    assert '--api-key ***' in caplog.text


def test_grandchildren_are_stopped(leftovers: Leftovers, tmp_path: Path) -> None:
    pid_file = tmp_path / 'grandchild.pid'
    with tiny(free_port(), '--grandchild-pid-file', str(pid_file)) as server:
        leftovers.group(server.pid)
        grandchild = int(pid_file.read_text())
        assert process_alive(grandchild)
        assert os.getpgid(grandchild) == server.pid
    assert not process_alive(grandchild)
    assert not group_alive(server.pid)


def test_sigkill_after_grace(leftovers: Leftovers) -> None:
    server = tiny(free_port(), '--ignore-sigterm', stop_timeout=0.5).start()
    leftovers.group(server.pid)
    server.stop()
    assert server.returncode == -signal.SIGKILL
    assert not group_alive(server.pid)


def test_owner_killed_leaves_no_orphan(leftovers: Leftovers, tmp_path: Path) -> None:
    owner = leftovers.proc(start_owner(tmp_path / 'server.log', 'process'))
    pid = leftovers.group(owned_server_pid(owner, timeout=60))
    assert group_alive(pid)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    assert wait_group_gone(pid, timeout=5)


def test_owner_killed_with_a_forked_child_alive(leftovers: Leftovers, tmp_path: Path) -> None:
    owner = leftovers.proc(start_owner(tmp_path / 'server.log', 'process', '--fork'))
    pid = leftovers.group(owned_server_pid(owner, timeout=60))
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    assert group_alive(owner.pid)  # the forked child still runs, in the owner's group...
    assert wait_group_gone(pid, timeout=5)  # ...and does not keep the server alive


def test_owner_sigterm_stops_server(leftovers: Leftovers, tmp_path: Path) -> None:
    owner = leftovers.proc(start_owner(tmp_path / 'server.log', 'process'))
    pid = leftovers.group(owned_server_pid(owner, timeout=60))
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(10) == -signal.SIGTERM  # the default action still happens
    assert not group_alive(pid)  # stopped by the owner itself, before it died


def test_owner_sigterm_chains_previous_handler(leftovers: Leftovers, tmp_path: Path) -> None:
    owner = leftovers.proc(start_owner(tmp_path / 'server.log', 'process', '--chain-handler'))
    pid = leftovers.group(owned_server_pid(owner, timeout=60))
    owner.send_signal(signal.SIGTERM)
    assert read_line(owner, timeout=10) == 'owner handler ran'
    assert owner.wait(10) == 0
    assert not group_alive(pid)


def test_interpreter_exit_stops_server(leftovers: Leftovers, tmp_path: Path) -> None:
    owner = leftovers.proc(start_owner(tmp_path / 'server.log', 'process', '--exit'))
    pid = leftovers.group(owned_server_pid(owner, timeout=60))
    assert owner.wait(30) == 0
    assert not group_alive(pid)
