"""``PythonInterpreter``: notebook-cell semantics, and attacks contained within their limits.

Every attack must come back as an ``ActionReturn`` within its limit and leave
no process behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lagent.actions import ActionExecutor, PythonInterpreter
from lagent.actions._sandbox import choose_identity
from lagent.schema import ActionStatusCode
from tests.actions.processes import alive, processes_in_group
from tests.actions.results import failed, ok


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
    assert 'run_cell' not in errmsg and 'CHILD_PROGRAM' not in errmsg


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
    ok(interpreter.run('secret_value = 1'))
    assert failed(interpreter.run('secret_value')).endswith("NameError: name 'secret_value' is not defined")


def test_stdin_is_empty(interpreter: PythonInterpreter):
    assert failed(interpreter.run('input()')).endswith('EOFError: EOF when reading a line')


def test_through_the_executor(interpreter: PythonInterpreter):
    executor = ActionExecutor([interpreter], timeout=30)
    assert executor.names == ['PythonInterpreter']
    result = executor.execute('PythonInterpreter', {'code': 'sum(range(10))'}, tool_call_id='c1')
    assert (result.type, result.args, result.tool_call_id, result.format_result()) == (
        'PythonInterpreter',
        {'code': 'sum(range(10))'},
        'c1',
        '45',
    )
    failure = executor.execute('PythonInterpreter', {'code': 'raise KeyError("k")'})
    assert (failure.type, failure.state) == ('PythonInterpreter', ActionStatusCode.API_ERROR)
    assert failure.errmsg.endswith("KeyError: 'k'")


# --------------------------------------------------------------------------- attacks


def test_infinite_loop_is_killed_at_the_wall_clock_limit():
    started = time.monotonic()
    errmsg = failed(PythonInterpreter(timeout=1).run('while True:\n    pass'))
    assert time.monotonic() - started < 10  # generous: the machine may be busy; the code would run forever
    assert errmsg == 'timed out after 1s (wall-clock limit); the process was killed'


def test_sleeping_code_is_killed_too_and_keeps_its_output():
    errmsg = failed(PythonInterpreter(timeout=1).run('import time\nprint("started")\ntime.sleep(60)'))
    assert errmsg == 'started\ntimed out after 1s (wall-clock limit); the process was killed'


def test_allocating_8_gb_fails_with_memory_error():
    interpreter = PythonInterpreter(timeout=5, memory_mb=256)
    assert failed(interpreter.run('block = bytearray(8 * 2**30)')).endswith('MemoryError')
    growing = 'chunks = []\nwhile True:\n    chunks.append(bytearray(2**20))'
    assert failed(interpreter.run(growing)).endswith('MemoryError')


def test_cpu_time_limit():
    started = time.monotonic()
    errmsg = failed(PythonInterpreter(timeout=20, cpu_seconds=1).run('while True:\n    pass'))
    assert time.monotonic() - started < 15
    assert errmsg == 'killed by SIGXCPU: CPU time limit exceeded'


def test_file_size_limit():
    code = 'with open("big", "wb") as f:\n    f.write(b"x" * (2 * 2**20))'
    assert failed(PythonInterpreter(file_size_mb=1).run(code)).endswith('OSError: [Errno 27] File too large')


def test_fork_bomb_is_contained_and_leaves_no_process():
    code = '\n'.join(
        [
            'import os, time',
            'print("group", os.getpgid(0), flush=True)',
            'if os.fork() == 0:',  # a process that leaves the group, then hides
            '    os.setsid()',
            '    print("escaped", os.getpid(), flush=True)',
            '    time.sleep(600)',
            '    os._exit(0)',
            'while True:',
            '    try:',
            '        os.fork()',
            '    except OSError:',
            '        pass',
        ]
    )
    started = time.monotonic()
    errmsg = failed(PythonInterpreter(timeout=2, max_processes=8).run(code))
    assert time.monotonic() - started < 20
    assert errmsg.endswith('timed out after 2s (wall-clock limit); the process was killed')
    group = int(re.search(r'^group (\d+)$', errmsg, re.MULTILINE).group(1))
    escaped = int(re.search(r'^escaped (\d+)$', errmsg, re.MULTILINE).group(1))
    assert processes_in_group(group) == []
    assert not alive(escaped)


def test_background_processes_do_not_outlive_the_call(interpreter: PythonInterpreter):
    code = 'import subprocess\nproc = subprocess.Popen(["sleep", "600"], start_new_session=True)\nproc.pid'
    pid = int(ok(interpreter.run(code)))
    assert not alive(pid)


def test_the_parents_environment_is_not_visible(interpreter: PythonInterpreter, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv('LAGENT_TEST_SECRET', 'sk-do-not-leak-123')
    code = 'import os\nprint(sorted(os.environ))\nos.environ.get("LAGENT_TEST_SECRET")'
    output = ok(interpreter.run(code))
    assert output == "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']"
    assert 'sk-do-not-leak' not in ok(interpreter.run('import os\nopen("/proc/%d/environ" % os.getppid()).read()'))


def test_the_parents_process_memory_and_environ_are_out_of_reach_when_run_as_another_user(
    interpreter: PythonInterpreter, monkeypatch: pytest.MonkeyPatch
):
    if interpreter.run_as is None:
        pytest.skip('the sandbox runs as the parent user (not root): /proc/<parent>/environ is readable, as documented')
    monkeypatch.setenv('LAGENT_TEST_SECRET', 'sk-do-not-leak-123')
    errmsg = failed(interpreter.run(f'open("/proc/{os.getpid()}/environ").read()'))
    assert errmsg.endswith(f"PermissionError: [Errno 13] Permission denied: '/proc/{os.getpid()}/environ'")


def test_scratch_directory_is_the_cwd_and_home_and_is_removed(interpreter: PythonInterpreter):
    code = 'import os\nopen("notes.txt", "w").write("x")\nprint(os.getcwd())\nos.environ["HOME"] == os.getcwd()'
    first = ok(interpreter.run(code)).splitlines()
    second = ok(interpreter.run(code)).splitlines()
    assert first[1] == second[1] == 'True'
    assert first[0] != second[0]
    assert Path(first[0]).name.startswith('lagent-sandbox-')
    assert not Path(first[0]).exists() and not Path(second[0]).exists()


def test_scratch_directory_is_removed_even_when_made_unwritable(interpreter: PythonInterpreter):
    code = 'import os\nos.makedirs("a/b")\nopen("a/b/f", "w").close()\nos.chmod("a/b", 0)\nos.chmod("a", 0o500)\nos.getcwd()'
    scratch = ok(interpreter.run(code)).strip("'")
    assert not Path(scratch).exists()


def test_writing_outside_the_scratch_directory(interpreter: PythonInterpreter, tmp_path: Path):
    """Documented: rlimits do not confine writes. A sandbox running as another
    user (the parent is root) cannot write to the parent's private directories;
    world-writable places such as /tmp stay writable."""
    if interpreter.run_as is None:
        pytest.skip('the sandbox runs as the parent user: it can write wherever the parent can, as documented')
    target = tmp_path / 'owned-by-parent'
    target.mkdir(mode=0o700)
    errmsg = failed(interpreter.run(f'open({str(target / "x")!r}, "w").write("pwned")'))
    assert errmsg.endswith('Permission denied: ' + repr(str(target / 'x')))
    assert not (target / 'x').exists()


def test_world_writable_places_stay_writable_as_documented(interpreter: PythonInterpreter):
    outside = Path(tempfile.gettempdir()) / f'lagent-sandbox-escape-{os.getpid()}'
    try:
        assert ok(interpreter.run(f'open({str(outside)!r}, "w").write("not contained")')) == '13'
        assert outside.read_text() == 'not contained'
    finally:
        outside.unlink(missing_ok=True)


def test_output_flood_is_truncated():
    interpreter = PythonInterpreter(timeout=5, max_output_chars=1000)
    output = ok(interpreter.run('print("x" * 10**7)\n"v" * 10**6'))
    stdout, value = output.split('\n... [output truncated]\n')
    assert stdout == 'x' * 1000
    assert value.startswith("'vvv") and value.endswith('... [999002 more characters]')
    assert len(value) < 1100


def test_endless_output_is_bounded_and_stopped():
    errmsg = failed(PythonInterpreter(timeout=1, max_output_chars=500).run('while True:\n    print("y" * 1000)'))
    assert errmsg.startswith('y' * 500 + '\n... [output truncated]')
    assert errmsg.endswith('timed out after 1s (wall-clock limit); the process was killed')


def test_invalid_limits():
    with pytest.raises(ValueError, match='timeout must be positive'):
        PythonInterpreter(timeout=0)


# --------------------------------------------------------------------------- who the child runs as


@pytest.mark.skipif(os.geteuid() != 0, reason='only root can run the child as another user')
def test_as_root_the_child_runs_as_nobody_unless_told_otherwise():
    nobody = pwd.getpwnam('nobody')
    dropped = PythonInterpreter(timeout=5)
    assert dropped.run_as == (nobody.pw_uid, nobody.pw_gid)
    assert ok(dropped.run('import os\nos.getuid(), os.getgid(), os.getgroups()')) == (
        f'({nobody.pw_uid}, {nobody.pw_gid}, [])'
    )
    kept = PythonInterpreter(timeout=1, user=None)
    assert kept.run_as is None
    assert ok(kept.run('import os\nsorted(os.environ), os.getuid()')) == (
        "(['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR'], 0)"
    )
    assert failed(kept.run('while True:\n    pass')).startswith('timed out after 1s')


@pytest.mark.skipif(os.geteuid() != 0, reason='only root can run the child as another user')
def test_an_interpreter_the_user_cannot_run_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    private = tmp_path / 'private'
    private.mkdir(mode=0o700)
    hidden_python = private / 'python3'
    hidden_python.symlink_to(
        os.path.realpath('/usr/bin/python3') if Path('/usr/bin/python3').exists() else sys.executable
    )
    python, ids = choose_identity('nobody', str(hidden_python))
    assert ids is not None and python != str(hidden_python)
    assert Path(python).name == 'python3'
    with caplog.at_level(logging.WARNING):
        assert choose_identity('no-such-user-here', sys.executable) == (sys.executable, None)
    assert "sandbox user 'no-such-user-here' does not exist" in caplog.text


async def test_async_calls_run_side_by_side(interpreter: PythonInterpreter):
    """Each call waits for the other to show up: only calls running at the same time both succeed."""
    meeting = Path(tempfile.mkdtemp(prefix='lagent-meeting-'))
    meeting.chmod(0o777)  # the sandbox user may differ from ours
    try:
        executor = ActionExecutor([interpreter], timeout=30)

        def code(me: str, other: str) -> str:
            return (
                f'import os, time\nopen(os.path.join({str(meeting)!r}, {me!r}), "w").close()\n'
                f'deadline = time.time() + 20\n'
                f'while not os.path.exists(os.path.join({str(meeting)!r}, {other!r})) and time.time() < deadline:\n'
                f'    time.sleep(0.01)\n'
                f'os.path.exists(os.path.join({str(meeting)!r}, {other!r}))'
            )

        first, second = await asyncio.gather(
            executor.aexecute('PythonInterpreter', {'code': code('a', 'b')}),
            executor.aexecute('PythonInterpreter', {'code': code('b', 'a')}),
        )
        assert (ok(first), ok(second)) == ('True', 'True')
    finally:
        shutil.rmtree(meeting)
