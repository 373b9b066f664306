"""``IPythonInterpreter``: state across calls, restarts after timeouts and crashes, no leftover processes,
the original lagent's call shape.

The attacks on the sandbox are in test_sandbox_attacks.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lagent.actions import ActionExecutor, IPythonInterpreter
from lagent.schema import ActionStatusCode
from tests.actions.processes import (
    alive,
    processes_in_group,
    processes_in_pid_namespace,
    processes_running,
    sleep_marker,
)
from tests.actions.results import failed, ok
from tests.fixtures.waiting import wait_until

RESTARTED = 'The session was restarted: earlier variables, imports and files are gone.'
PID_NAMESPACE = 'import os\nprint("namespace", os.readlink("/proc/self/ns/pid"), flush=True)\n'


@pytest.fixture
def session() -> Iterator[IPythonInterpreter]:
    interpreter = IPythonInterpreter(timeout=2)
    yield interpreter
    interpreter.close()


def namespace_of(output: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith('namespace '))


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


def test_solution_is_answered_by_the_cell_that_defines_it(session: IPythonInterpreter):
    assert ok(session.run('def solution():\n    return 41 + 1')) == '42'
    assert ok(session.run('unrelated = 1')) == '(no output)'  # defined earlier: not this cell's answer
    assert ok(session.run('def solution():\n    return "again"')) == 'again'


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
    errmsg = failed(session.run(PID_NAMESPACE + 'print("working", flush=True)\nwhile True:\n    pass'))
    assert time.monotonic() - started < 15  # generous: the machine may be busy; the code would run forever
    assert errmsg.endswith(
        f'working\nFunctionTimedOut: timed out after 2s (wall-clock limit); the process was killed\n{RESTARTED}'
    )
    assert processes_in_group(group) == [] and processes_in_pid_namespace(namespace_of(errmsg)) == []
    assert failed(session.run('kept')).endswith("NameError: name 'kept' is not defined")
    assert session.pid != group


def test_a_call_may_ask_for_less_time_never_more(session: IPythonInterpreter):
    started = time.monotonic()
    assert failed(session.run('import time\ntime.sleep(30)', timeout=0.5)).startswith(
        'FunctionTimedOut: timed out after 0.5s'
    )
    assert failed(session.run('import time\ntime.sleep(30)', timeout=60)).startswith(
        'FunctionTimedOut: timed out after 2s'
    )
    assert time.monotonic() - started < 15
    assert session.run('1', timeout=0).state == ActionStatusCode.ARGS_ERROR


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
    marker = sleep_marker()
    code = f'import subprocess\nchild = subprocess.Popen(["sleep", "{marker}"], start_new_session=True)\n"started"'
    assert ok(session.run(PID_NAMESPACE + code)).endswith("'started'")
    assert processes_running(marker) == []
    assert len(processes_in_pid_namespace(namespace_of(ok(session.run(PID_NAMESPACE))))) == 2  # init and worker


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
        print("namespace", os.readlink("/proc/self/ns/pid"))
        """
    )
    with IPythonInterpreter(timeout=10) as session:  # the cleanup runs within the call's time
        output = ok(session.run(code))
        assert len(processes_in_pid_namespace(namespace_of(output))) == 2  # the session's init and worker
        assert ok(session.run('"still here"')) == "'still here'"


def test_environment_is_scrubbed_and_the_private_tmp_lives_with_the_session(
    session: IPythonInterpreter, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv('LAGENT_TEST_SECRET', 'sk-do-not-leak-123')
    assert ok(session.run('import os\nsorted(os.environ)')) == "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']"
    assert ok(session.run('open("notes.txt", "w").write("kept")\nos.getcwd()')) == "'/tmp'"
    assert ok(session.run('open("/tmp/notes.txt").read()')) == "'kept'"
    session.reset()
    assert failed(session.run('open("notes.txt").read()')).endswith("No such file or directory: 'notes.txt'")


def test_through_the_executor_with_the_original_call_shape():
    interpreter = IPythonInterpreter()
    executor = ActionExecutor([interpreter])
    assert executor.names == ['IPythonInterpreter']
    assert list(executor.get('IPythonInterpreter').parameters['properties']) == ['command', 'timeout']
    assert executor.get('IPythonInterpreter').parameters['required'] == ['command']
    assert executor.execute('IPythonInterpreter', {'command': 'a = 2'}).state == ActionStatusCode.SUCCESS
    assert executor.execute('IPythonInterpreter', '{"command": "a * 21", "timeout": 5}').format_result() == '42'
    pid = interpreter.pid
    executor.close()
    assert interpreter.pid is None and not alive(pid)


def test_the_original_constructor_keywords_are_accepted():
    with pytest.warns(DeprecationWarning, match='ignores work_dir'):
        legacy = IPythonInterpreter(timeout=20, user_data_dir='ENV', work_dir='./work_dir/tmp_dir')
    assert legacy.limits.wall_seconds == 20
    with pytest.warns(DeprecationWarning, match='ignores user_data_dir'):
        IPythonInterpreter(user_data_dir='/data/files')


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
        'from lagent.actions import IPythonInterpreter',
        'interpreter = IPythonInterpreter(timeout=60)',
        f'interpreter.run({name_the_worker!r})',
    ]
    if busy:  # a call still running when the program ends
        lines.append('threading.Thread(target=interpreter.run, args=("time.sleep(600)",), daemon=True).start()')
    lines += ['time.sleep(0.5)', 'print(interpreter.pid, flush=True)']
    script = tmp_path / 'leave_open.py'
    script.write_text('\n'.join(lines) + '\n')
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=os.getcwd(), check=True
    )
    group = int(completed.stdout)
    assert processes_in_group(group) == []
    assert _processes_named(marker) == []


def test_the_session_ends_when_its_program_is_killed(tmp_path: Path):
    """SIGKILL of the program leaves no session behind: the supervisor notices and ends the namespace."""
    script = tmp_path / 'killed.py'
    script.write_text(
        'import sys\nfrom lagent.actions import IPythonInterpreter\n'
        'interpreter = IPythonInterpreter(timeout=60)\n'
        'print(interpreter.run(\'import os\\nos.readlink("/proc/self/ns/pid")\').format_result(), flush=True)\n'
        'interpreter.run("import time\\ntime.sleep(600)")\n'
    )
    program = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        namespace = program.stdout.readline().strip().strip("'")
        assert namespace.startswith('pid:[') and processes_in_pid_namespace(namespace)
        program.kill()
        program.wait()
        wait_until(lambda: not processes_in_pid_namespace(namespace), 5, interval=0.05)
        assert processes_in_pid_namespace(namespace) == []
    finally:
        program.kill()
        program.wait()


def test_a_session_without_namespaces_still_ends_what_its_cells_start():
    from lagent.actions._sandbox import SandboxLimits, SandboxSession, choose_identity

    python, run_as = choose_identity('auto', sys.executable, namespaces=False)
    session = SandboxSession(SandboxLimits(wall_seconds=5), python=python, run_as=run_as, namespaces=False)
    try:
        assert 'pid' not in session.isolation
        marker = sleep_marker()
        code = f'import subprocess\nsubprocess.Popen(["sleep", "{marker}"], start_new_session=True)\nkept = 1'
        assert session.execute(code).ok
        assert processes_running(marker) == []
        assert session.execute('kept').value == '1'
        timed_out = session.execute(
            f'import subprocess, time\nsubprocess.Popen(["sleep", "{marker}"])\ntime.sleep(60)', 1
        )
        assert timed_out.timed_out and not session.alive
        assert processes_running(marker) == []
    finally:
        session.close()
