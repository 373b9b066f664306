"""``IPythonInterpreter``: state across calls, restarts after timeouts and crashes, no leftover processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lagent.actions import ActionExecutor, IPythonInterpreter
from lagent.schema import ActionStatusCode
from tests.actions.processes import alive, processes_in_group
from tests.actions.results import failed, ok

RESTARTED = 'The session was restarted: earlier variables, imports and files are gone.'


@pytest.fixture
def session() -> Iterator[IPythonInterpreter]:
    interpreter = IPythonInterpreter(timeout=2)
    yield interpreter
    interpreter.close()


def test_state_persists_between_calls(session: IPythonInterpreter):
    assert ok(session.run('import math\nx = 40')) == '(no output)'
    assert ok(session.run('def f(y):\n    return x + y')) == '(no output)'
    assert ok(session.run('print("sum")\nf(2)')) == 'sum\n42'
    assert ok(session.run('round(math.pi, 2)')) == '3.14'


def test_tracebacks_show_the_cells_source(session: IPythonInterpreter):
    ok(session.run('def broken():\n    return {}["missing"]'))
    errmsg = failed(session.run('broken()'))
    assert 'File "<cell 2>", line 1, in <module>' in errmsg
    assert 'File "<cell 1>", line 2, in broken' in errmsg
    assert 'return {}["missing"]' in errmsg
    assert errmsg.endswith("KeyError: 'missing'")
    assert ok(session.run('1 + 1')) == '2'  # an exception does not end the session


def test_reset_forgets_everything(session: IPythonInterpreter):
    ok(session.run('kept = 1'))
    first = session.pid
    session.reset()
    assert session.pid is None and not alive(first)
    assert failed(session.run('kept')).endswith("NameError: name 'kept' is not defined")


def test_timeout_kills_the_session_and_the_next_call_starts_fresh(session: IPythonInterpreter):
    ok(session.run('kept = 1'))
    group = session.pid
    started = time.monotonic()
    errmsg = failed(session.run('print("working", flush=True)\nwhile True:\n    pass'))
    assert time.monotonic() - started < 15  # generous: the machine may be busy; the code would run forever
    assert errmsg == f'working\ntimed out after 2s (wall-clock limit); the process was killed\n{RESTARTED}'
    assert processes_in_group(group) == []
    assert failed(session.run('kept')).endswith("NameError: name 'kept' is not defined")
    assert session.pid != group


def test_a_crash_restarts_the_session(session: IPythonInterpreter):
    ok(session.run('kept = 1'))
    errmsg = failed(session.run('import os\nos._exit(7)'))
    assert errmsg == f'the process exited with status 7 before the code finished\n{RESTARTED}'
    assert ok(session.run('"alive"')) == "'alive'"


def test_memory_error_keeps_the_session(session: IPythonInterpreter):
    ok(session.run('kept = 5'))
    assert failed(session.run('block = bytearray(8 * 2**30)')).endswith('MemoryError')
    assert ok(session.run('kept')) == '5'


def test_processes_started_by_a_call_end_with_it(session: IPythonInterpreter):
    code = 'import subprocess\nchild = subprocess.Popen(["sleep", "600"], start_new_session=True)\nchild.pid'
    pid = int(ok(session.run(code)))
    assert not alive(pid)


def test_fork_bomb_is_contained(session: IPythonInterpreter):
    code = textwrap.dedent(
        """
        import os, time
        print("group", os.getpgid(0), flush=True)
        if os.fork() == 0:
            os.setsid()
            print("escaped", os.getpid(), flush=True)
            time.sleep(600)
            os._exit(0)
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """
    )
    ok(session.run('1'))
    supervisor = session.pid
    started = time.monotonic()
    errmsg = failed(session.run(code))
    assert time.monotonic() - started < 20
    assert errmsg.endswith(f'timed out after 2s (wall-clock limit); the process was killed\n{RESTARTED}')
    group = int(re.search(r'^group (\d+)$', errmsg, re.MULTILINE).group(1))
    escaped = int(re.search(r'^escaped (\d+)$', errmsg, re.MULTILINE).group(1))
    assert not alive(escaped)
    assert processes_in_group(group) == [] and processes_in_group(supervisor) == []
    assert ok(session.run('"fresh"')) == "'fresh'"


def test_a_fork_bomb_left_running_after_the_cell_is_stopped_with_it():
    code = textwrap.dedent(
        """
        import os
        if os.fork() == 0:
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        print("group", os.getpgid(0))
        """
    )
    with IPythonInterpreter(timeout=10) as session:  # the cleanup runs within the call's time
        output = ok(session.run(code))
        group = int(re.search(r'^group (\d+)$', output, re.MULTILINE).group(1))
        assert len(processes_in_group(group)) == 1  # only the session's worker itself
        assert ok(session.run('"still here"')) == "'still here'"


def test_environment_is_scrubbed_and_the_scratch_directory_lives_with_the_session(
    session: IPythonInterpreter, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv('LAGENT_TEST_SECRET', 'sk-do-not-leak-123')
    assert ok(session.run('import os\nsorted(os.environ)')) == "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']"
    scratch = ok(session.run('open("notes.txt", "w").write("kept")\nos.getcwd()')).strip("'")
    assert ok(session.run('open("notes.txt").read()')) == "'kept'"
    session.close()
    assert not Path(scratch).exists()


def test_only_run_is_a_tool():
    interpreter = IPythonInterpreter()
    executor = ActionExecutor([interpreter])
    assert executor.names == ['IPythonInterpreter']
    assert executor.execute('IPythonInterpreter', {'code': 'a = 2'}).state == ActionStatusCode.SUCCESS
    assert executor.execute('IPythonInterpreter', {'code': 'a * 21'}).format_result() == '42'
    pid = interpreter.pid
    executor.close()
    assert interpreter.pid is None and not alive(pid)


def _processes_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                if Path(f'/proc/{entry}/comm').read_text().strip() == name:
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize('busy', [False, True], ids=['idle', 'busy'])
def test_the_session_stops_when_the_program_exits_without_close(tmp_path: Path, busy: bool):
    marker = f'lgt{os.getpid() % 10000}{int(busy)}'  # a process name (at most 15 characters)
    name_the_worker = f'import ctypes, time\nctypes.CDLL(None).prctl(15, b"{marker}", 0, 0, 0)'  # PR_SET_NAME
    lines = [
        'import os, threading, time',
        'from pathlib import Path',
        'from lagent.actions import IPythonInterpreter',
        'interpreter = IPythonInterpreter(timeout=60)',
        f'interpreter.run({name_the_worker!r})',
    ]
    if busy:  # a call still running when the program ends
        lines.append('threading.Thread(target=interpreter.run, args=("time.sleep(600)",), daemon=True).start()')
    lines += [
        'time.sleep(0.5)',
        'named = [p for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{p}/comm")',
        f'         and Path(f"/proc/{{p}}/comm").read_text().strip() == {marker!r}]',
        'print(interpreter.pid, len(named), flush=True)',
    ]
    script = tmp_path / 'leave_open.py'
    script.write_text('\n'.join(lines) + '\n')
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=os.getcwd(), check=True
    )
    group, named_before_exit = map(int, completed.stdout.split())
    assert named_before_exit == 1
    assert processes_in_group(group) == []
    assert _processes_named(marker) == []
