"""``PythonInterpreter``: notebook-cell semantics, the original lagent's conventions, and who the code runs as.

The attacks on the sandbox are in test_sandbox_attacks.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest

from lagent.actions import ActionExecutor, PythonInterpreter
from lagent.actions._sandbox import SandboxLimits, choose_identity, run_in_sandbox
from lagent.actions._sandbox_users import SESSION_UIDS, RunAs, lease_session_uid
from lagent.actions.python_interpreter import visible_controls
from lagent.schema import ActionStatusCode
from tests.actions.processes import processes_of_uid, processes_running, sleep_marker
from tests.actions.results import failed, ok

ROOT = os.geteuid() == 0


@pytest.fixture(scope='module')
def interpreter() -> PythonInterpreter:
    return PythonInterpreter(timeout=5)


# --------------------------------------------------------------------------- notebook-cell semantics


def test_stdout_then_the_last_expression(interpreter: PythonInterpreter):
    assert ok(interpreter.run('print("hi")\n6 * 7')) == 'hi\n42'
    assert ok(interpreter.run('x = [1, 2]\nx')) == '[1, 2]'
    assert ok(interpreter.run('"text"')) == "'text'"


def test_no_value_for_statements_or_none(interpreter: PythonInterpreter):
    assert ok(interpreter.run('x = 1')) == '(no output)'
    assert ok(interpreter.run('None')) == '(no output)'
    assert ok(interpreter.run('for i in range(2):\n    print(i)')) == '0\n1'


def test_stderr_is_reported_after_stdout(interpreter: PythonInterpreter):
    code = 'import sys\nprint("out")\nsys.stderr.write("careful\\n")\n1'
    assert ok(interpreter.run(code)) == 'out\n[stderr]\ncareful\n1'


def test_a_markdown_code_block_is_unwrapped(interpreter: PythonInterpreter):
    assert ok(interpreter.run('```python\nprint("fenced")\n2 + 2\n```')) == 'fenced\n4'
    assert ok(interpreter.run('```\n3 * 3\n```\n')) == '9'
    assert failed(interpreter.run('x = 1\n```python\nx\n```')).endswith('SyntaxError: invalid syntax')


def test_unicode(interpreter: PythonInterpreter):
    assert ok(interpreter.run('print("héllo ✓")\n"日本"')) == "héllo ✓\n'日本'"


def test_exception_gives_the_traceback_tail_of_the_cell_only(interpreter: PythonInterpreter):
    errmsg = failed(interpreter.run('print("before")\ndef f():\n    return 1 / 0\nf()'))
    assert errmsg.startswith('before\nTraceback (most recent call last):')
    assert 'File "<cell>", line 4, in <module>' in errmsg
    assert 'File "<cell>", line 3, in f' in errmsg
    assert errmsg.endswith('ZeroDivisionError: division by zero')
    assert 'run_cell' not in errmsg and 'PROGRAM' not in errmsg


def test_syntax_error(interpreter: PythonInterpreter):
    errmsg = failed(interpreter.run('def broken(:\n    pass'))
    assert 'File "<cell>", line 1' in errmsg
    assert errmsg.endswith('SyntaxError: invalid syntax')


def test_sys_exit(interpreter: PythonInterpreter):
    assert ok(interpreter.run('print(1)\nimport sys\nsys.exit(0)')) == '1'
    assert failed(interpreter.run('raise SystemExit(2)')) == 'SystemExit: 2'


def test_exiting_the_process(interpreter: PythonInterpreter):
    errmsg = failed(interpreter.run('import os\nprint("bye", flush=True)\nos._exit(3)'))
    assert errmsg == 'bye\nthe process exited with status 3 before the code finished'


def test_every_call_is_fresh(interpreter: PythonInterpreter):
    ok(interpreter.run('secret_value = 1\nopen("notes.txt", "w").write("x")'))
    assert failed(interpreter.run('secret_value')).endswith("NameError: name 'secret_value' is not defined")
    assert failed(interpreter.run('open("notes.txt").read()')).endswith("No such file or directory: 'notes.txt'")


def test_stdin_is_empty(interpreter: PythonInterpreter):
    assert failed(interpreter.run('input()')).endswith('EOFError: EOF when reading a line')


def test_through_the_executor_with_the_original_argument_name(interpreter: PythonInterpreter):
    executor = ActionExecutor([interpreter], timeout=30)
    assert executor.names == ['PythonInterpreter']
    assert list(executor.get('PythonInterpreter').parameters['properties']) == ['command']
    result = executor.execute('PythonInterpreter', {'command': 'sum(range(10))'}, tool_call_id='c1')
    assert (result.type, result.args, result.tool_call_id, result.format_result()) == (
        'PythonInterpreter',
        {'command': 'sum(range(10))'},
        'c1',
        '45',
    )
    failure = executor.execute('PythonInterpreter', '{"command": "raise KeyError(\\"k\\")"}')
    assert (failure.type, failure.state) == ('PythonInterpreter', ActionStatusCode.API_ERROR)
    assert failure.errmsg.endswith("KeyError: 'k'")


def test_invalid_options():
    with pytest.raises(ValueError, match='timeout must be positive'):
        PythonInterpreter(timeout=0)
    with pytest.raises(ValueError, match='scratch_mb must be positive'):
        PythonInterpreter(scratch_mb=0)


# --------------------------------------------------------------------------- the original lagent's conventions


def test_a_cell_that_only_defines_solution_returns_its_value(interpreter: PythonInterpreter):
    assert ok(interpreter.run('```python\ndef solution():\n    return 1\n```')) == '1'
    assert (
        ok(interpreter.run('import math\ndef solution():\n    return f"{math.pi:.2f}"')) == '3.14'
    )  # str(), not repr()


def test_solution_is_not_called_when_the_cell_shows_something(interpreter: PythonInterpreter):
    counted = 'import sys\ndef solution():\n    sys.stderr.write("called\\n")\n    return 7\n'
    assert ok(interpreter.run(counted + 'print(solution())')) == '7\n[stderr]\ncalled'  # called once, not twice
    assert ok(interpreter.run(counted + 'solution() * 2')) == '[stderr]\ncalled\n14'
    assert ok(interpreter.run('def unrelated():\n    return 7')) == '(no output)'


def test_an_error_inside_solution_is_reported(interpreter: PythonInterpreter):
    errmsg = failed(interpreter.run('def solution():\n    return 1 / 0'))
    assert 'File "<cell>", line 2, in solution' in errmsg
    assert errmsg.endswith('ZeroDivisionError: division by zero')


def test_solution_runs_under_the_wall_clock_limit():
    errmsg = failed(PythonInterpreter(timeout=1).run('def solution():\n    while True:\n        pass'))
    assert 'FunctionTimedOut' in errmsg  # the original lagent's word for it


def test_answer_conventions_can_be_changed_or_turned_off():
    by_symbol = PythonInterpreter(timeout=5, answer_symbol='answer')
    assert ok(by_symbol.run('answer = 6 * 7')) == '42'
    by_expression = PythonInterpreter(timeout=5, answer_expr='main(3)')
    assert ok(by_expression.run('def main(n):\n    return n * 2')) == '6'
    off = PythonInterpreter(timeout=5, answer_expr=None)
    assert ok(off.run('def solution():\n    return 1')) == '(no output)'
    last_line = PythonInterpreter(timeout=5, answer_from_stdout=True)
    assert ok(last_line.run('print("working")\nprint("done: 5")\n"value"')) == 'done: 5'


# --------------------------------------------------------------------------- output shown to the model


def test_control_characters_are_made_visible():
    assert visible_controls('\x1b[2Jcleared\a') == '\\x1b[2Jcleared\\x07'
    assert visible_controls('line 1\r\nline 2\rover\ttab') == 'line 1\r\nline 2\\rover\ttab'
    assert visible_controls('\x9b31m \u202eevil') == '\\x9b31m \\u202eevil'
    assert visible_controls('plain text, ünïcode ✓\n') == 'plain text, ünïcode ✓\n'


# --------------------------------------------------------------------------- who the code runs as


@pytest.mark.skipif(not ROOT, reason='only root can run the code as another user')
def test_as_root_every_call_gets_a_uid_of_its_own(interpreter: PythonInterpreter):
    assert interpreter.run_as == RunAs(per_session=True)
    first, second = (ok(interpreter.run('import os\nos.getuid(), os.getgid(), os.getgroups()')) for _ in range(2))
    assert first != second
    for text in (first, second):
        uid, gid, groups = eval(text)
        assert uid == gid and uid in SESSION_UIDS and groups == []


@pytest.mark.skipif(not ROOT, reason='only root can run the code as another user')
def test_as_root_a_named_user_or_root_itself_can_be_chosen():
    import pwd

    nobody = pwd.getpwnam('nobody')
    named = PythonInterpreter(timeout=5, user='nobody')
    assert named.run_as == RunAs(ids=(nobody.pw_uid, nobody.pw_gid))
    assert ok(named.run('import os\nos.getuid(), os.getgid()')) == f'({nobody.pw_uid}, {nobody.pw_gid})'
    kept = PythonInterpreter(timeout=1, user=None)
    assert kept.run_as == RunAs()
    assert (
        ok(kept.run('import os\nsorted(os.environ), os.getuid()'))
        == "(['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR'], 0)"
    )
    assert failed(kept.run('while True:\n    pass')).startswith('FunctionTimedOut: timed out after 1s')


@pytest.mark.skipif(not ROOT, reason='only root leases uids')
def test_uid_leases_are_exclusive_and_returned():
    first, second = lease_session_uid(), lease_session_uid()
    try:
        assert first.uid != second.uid and {first.uid, second.uid} <= set(SESSION_UIDS)
    finally:
        first.release()
        second.release()
    first.release()  # idempotent


@pytest.mark.skipif(not ROOT, reason='only root can run the code as another user')
def test_an_interpreter_in_a_private_directory_is_made_reachable(tmp_path: Path):
    """The sandbox binds the interpreter's directories into the ones that keep its user out."""
    private = tmp_path / 'private'
    private.mkdir(mode=0o700)
    hidden_python = private / 'python3'
    hidden_python.symlink_to(os.path.realpath(sys.executable))
    python, run_as = choose_identity('auto', str(hidden_python))
    assert (python, run_as) == (str(hidden_python), RunAs(per_session=True))
    code = 'import decimal, os, subprocess, sys\nos.getuid() != 0, sys.executable, subprocess.run([sys.executable, "-c", "1"]).returncode'
    assert (
        ok(PythonInterpreter(python=str(hidden_python), timeout=10).run(code)) == f'(True, {str(hidden_python)!r}, 0)'
    )


@pytest.mark.skipif(not ROOT, reason='only root can run the code as another user')
def test_without_namespaces_an_interpreter_the_user_cannot_run_is_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    private = tmp_path / 'private'
    private.mkdir(mode=0o700)
    hidden_python = private / 'python3'
    hidden_python.symlink_to(os.path.realpath(sys.executable))
    python, run_as = choose_identity('nobody', str(hidden_python), namespaces=False)
    assert run_as.ids is not None and python != str(hidden_python)
    assert Path(python).name == 'python3'
    with caplog.at_level(logging.WARNING):
        assert choose_identity('no-such-user-here', sys.executable) == (sys.executable, RunAs())
    assert "sandbox user 'no-such-user-here' does not exist" in caplog.text


# --------------------------------------------------------------------------- isolation, and without it


def test_the_kernel_isolation_in_force_is_reported(interpreter: PythonInterpreter):
    result = run_in_sandbox('1', interpreter.limits, python=interpreter.python, run_as=interpreter.run_as)
    expected = {'pid', 'proc', 'readonly', 'tmp', 'network', 'seccomp'} | ({'uid'} if ROOT else set())
    assert set(result.isolation) == expected, 'this machine runs the sandbox without some of its namespaces'


def test_without_namespaces_the_run_still_works_and_warns(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr('lagent.actions._sandbox._warned', set())  # once per process: other tests may have warned
    python, run_as = choose_identity('auto', sys.executable, namespaces=False)
    marker = sleep_marker()
    code = f'import os, subprocess\nsubprocess.Popen(["sleep", "{marker}"], start_new_session=True)\nos.getuid()'
    with caplog.at_level(logging.WARNING, logger='lagent.actions._sandbox'):
        result = run_in_sandbox(code, SandboxLimits(wall_seconds=5), python=python, run_as=run_as, namespaces=False)
    assert result.ok and result.isolation == (('seccomp', 'uid') if ROOT else ('seccomp',))
    assert 'the Python sandbox runs without a PID namespace of its own' in caplog.text
    assert caplog.text.count('no namespaces: turned off') == 1
    caplog.clear()
    run_in_sandbox('1', SandboxLimits(wall_seconds=5), python=python, run_as=run_as, namespaces=False)
    assert caplog.text == ''  # once per process
    assert processes_running(marker) == []
    assert not ROOT or processes_of_uid(int(result.value)) == []


async def test_async_calls_run_side_by_side(interpreter: PythonInterpreter):
    """Two calls through the async executor overlap in time (each sleeps 2 s)."""
    executor = ActionExecutor([interpreter], timeout=30)
    code = 'import time\nstart = time.time()\ntime.sleep(2)\nstart'
    first, second = await asyncio.gather(
        executor.aexecute('PythonInterpreter', {'command': code}),
        executor.aexecute('PythonInterpreter', {'command': code}),
    )
    assert abs(float(ok(first)) - float(ok(second))) < 1.9  # one after the other, they would be 2 s apart
