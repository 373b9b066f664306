"""Attacks on the Python sandbox, through ``ActionExecutor`` as a model's tool call would come.

Each attack is contained (the assertions say how) or is one of the limits
documented in docs/tools.md (the test then pins the documented behaviour).
Most run against both interpreters: ``PythonInterpreter`` (a sandbox per
call) and ``IPythonInterpreter`` (one sandbox per session). The kernel's
isolation these tests expect is checked in test_python_interpreter.py.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lagent.actions import ActionExecutor, IPythonInterpreter, PythonInterpreter
from lagent.schema import ActionReturn
from tests.actions.processes import processes_in_pid_namespace, processes_of_uid, processes_running, sleep_marker
from tests.actions.results import failed, ok

ROOT = os.geteuid() == 0
KINDS = ('PythonInterpreter', 'IPythonInterpreter')
OPTIONS = {
    'timeout': 3,
    'memory_mb': 256,
    'max_processes': 32,
    'file_size_mb': 8,
    'scratch_mb': 16,
    'max_output_chars': 1000,
}
TIMED_OUT = 'FunctionTimedOut: timed out after 3s (wall-clock limit); the process was killed'
WHO = 'import os\nprint("who", os.getuid(), os.readlink("/proc/self/ns/pid"), flush=True)\n'


class Sandbox:
    """One interpreter behind an executor, and what a run left on the host."""

    def __init__(self, kind: str, **options):
        self.kind = kind
        self.interpreter = {'PythonInterpreter': PythonInterpreter, 'IPythonInterpreter': IPythonInterpreter}[kind](
            **{**OPTIONS, **options}
        )
        self.executor = ActionExecutor([self.interpreter], timeout=120)

    @property
    def session(self) -> bool:
        return self.kind == 'IPythonInterpreter'

    def run(self, code: str, **arguments) -> ActionReturn:
        return self.executor.execute(self.kind, {'command': code, **arguments})

    def run_and_check_nothing_is_left(self, code: str) -> ActionReturn:
        """Run ``WHO + code`` and assert that no process of the run is left but a session's own."""
        result = self.run(WHO + code)
        text = result.format_result()
        uid, namespace = next(line.split()[1:] for line in text.splitlines() if line.startswith('who '))
        left = processes_in_pid_namespace(namespace)
        if self.session and self.interpreter.pid is not None:
            assert len(left) == 2, f'{left}: more than the session init and worker'  # the session lives on
        else:
            assert left == []
            if ROOT:
                assert processes_of_uid(int(uid)) == []
        return result

    def close(self) -> None:
        self.executor.close()


@pytest.fixture(scope='module', params=KINDS)
def sandboxes(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    box = Sandbox(request.param)
    yield box
    box.close()


@pytest.fixture
def sandbox(sandboxes: Sandbox) -> Iterator[Sandbox]:
    """An interpreter of each kind; a session starts afresh for every test (attacks leave it damaged)."""
    yield sandboxes
    if sandboxes.session:
        sandboxes.interpreter.reset()


@pytest.fixture(scope='module', params=KINDS)
def quick(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """An interpreter of each kind with a 1 s wall-clock limit."""
    box = Sandbox(request.param, timeout=1)
    yield box
    box.close()


@pytest.fixture(scope='module')
def bystander() -> Iterator[IPythonInterpreter]:
    """Another session, started before the attacks, which must come through them unharmed."""
    with IPythonInterpreter(timeout=5) as session:
        ok(session.run('treasure = 42'))
        yield session


def assert_bystander_unharmed(bystander: IPythonInterpreter) -> None:
    assert ok(bystander.run('treasure')) == '42'


# --------------------------------------------------------------------------- processes that would outlive the call


@pytest.mark.parametrize(
    'attack',
    [
        'os.kill(os.getppid(), signal.SIGKILL)',
        'os.kill(os.getppid(), signal.SIGSTOP)',
        'os.kill(1, signal.SIGKILL)',
        'os.kill(-1, signal.SIGKILL)',
        'os.kill(-1, signal.SIGSTOP)',
        'os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)',
    ],
    ids=['kill-supervisor', 'stop-supervisor', 'kill-init', 'kill-everything', 'stop-everything', 'kill-group'],
)
def test_killing_or_stopping_the_supervisor_or_everything(sandbox: Sandbox, bystander: IPythonInterpreter, attack: str):
    marker = sleep_marker()
    code = textwrap.dedent(
        f"""
        import os, signal, subprocess, time
        subprocess.Popen(['sleep', '{marker}'], start_new_session=True)
        try:
            {attack}
        except OSError as exc:
            print('refused:', type(exc).__name__)
        time.sleep(0.2)
        print('the cell goes on')
        """
    )
    started = time.monotonic()
    result = sandbox.run_and_check_nothing_is_left(code)
    assert time.monotonic() - started < 10
    if attack.startswith('os.killpg'):  # the group id the code sees is 0, so it killed its own group
        assert 'killed by SIGKILL' in failed(result)
    else:
        assert 'the cell goes on' in ok(result)
    assert processes_running(marker) == []
    assert_bystander_unharmed(bystander)
    assert ok(sandbox.run('"next call"')) == "'next call'"


@pytest.mark.parametrize('how', ['double-fork', 'ignores-signals', 'nested-pid-namespace', 'reparented-thread'])
def test_daemons_do_not_outlive_the_call(sandbox: Sandbox, how: str):
    marker = sleep_marker()
    daemons = {
        'double-fork': f"""
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execvp('sleep', ['sleep', '{marker}'])
                os._exit(0)
            """,
        'ignores-signals': f"""
            if os.fork() == 0:
                for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGTSTP):
                    signal.signal(number, signal.SIG_IGN)
                os.setsid()
                subprocess.Popen(['sleep', '{marker}'])
                while True:
                    time.sleep(1)
            """,
        'nested-pid-namespace': f"""
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(0x10000000 | 0x20000000) == 0 and os.fork() == 0:  # user and PID namespaces
                os.execvp('sleep', ['sleep', '{marker}'])
            """,
        'reparented-thread': f"""
            import threading
            threading.Thread(target=lambda: subprocess.Popen(['sleep', '{marker}'], start_new_session=True)).start()
            """,
    }
    code = 'import os, signal, subprocess, time\n' + textwrap.dedent(daemons[how]) + 'time.sleep(0.3)\n"started"'
    assert ok(sandbox.run_and_check_nothing_is_left(code)).endswith("'started'")
    assert processes_running(marker) == []


def test_fork_bomb(sandbox: Sandbox):
    code = textwrap.dedent(
        """
        import os, time
        deadline = time.time() + 1.5
        while time.time() < deadline:
            try:
                os.fork()
            except OSError:
                pass
        os._exit(0) if os.getpid() != PARENT else print('bomb over')
        """
    )
    started = time.monotonic()
    result = sandbox.run_and_check_nothing_is_left('PARENT = os.getpid()\n' + code)
    assert time.monotonic() - started < 20
    assert 'bomb over' in ok(result)


def test_fork_bomb_that_never_stops(quick: Sandbox):
    code = 'while True:\n    try:\n        os.fork()\n    except OSError:\n        pass'
    started = time.monotonic()
    errmsg = failed(quick.run(WHO + code))
    assert time.monotonic() - started < 20
    assert 'FunctionTimedOut: timed out after 1s (wall-clock limit); the process was killed' in errmsg
    namespace = errmsg.split('\n')[0].split()[2]
    assert processes_in_pid_namespace(namespace) == []


def test_thread_bomb(sandbox: Sandbox):
    code = textwrap.dedent(
        """
        import threading, time
        started = 0
        try:
            for _ in range(10000):
                threading.Thread(target=time.sleep, args=(0.5,), daemon=True).start()
                started += 1
        except RuntimeError as exc:
            print('refused:', exc)
        started
        """
    )
    output = ok(sandbox.run_and_check_nothing_is_left(code))
    assert "refused: can't start new thread" in output
    assert int(output.splitlines()[-1]) <= OPTIONS['max_processes']


@pytest.mark.parametrize(
    'code',
    [
        'while True:\n    pass',
        'import time\ntime.sleep(600)',
        'import signal\nfor number in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGALRM):\n'
        '    signal.signal(number, signal.SIG_IGN)\nwhile True:\n    pass',
        'def solution():\n    while True:\n        pass',
    ],
    ids=['busy-loop', 'sleep', 'ignoring-signals', 'inside-solution'],
)
def test_code_that_never_ends_is_killed_at_the_wall_clock_limit(quick: Sandbox, code: str):
    started = time.monotonic()
    errmsg = failed(quick.run(code))
    assert time.monotonic() - started < 10  # 1 s, with room for a busy machine; the code would run forever
    assert errmsg.startswith('FunctionTimedOut: timed out after 1s (wall-clock limit); the process was killed')


def test_a_session_thread_outlives_its_cell_until_the_session_ends():
    """Documented limit: a thread is part of the session's process, as in Jupyter."""
    box = Sandbox('IPythonInterpreter')
    try:
        code = 'import threading, time\nticks = []\ndef tick():\n    while True:\n        ticks.append(1)\n        time.sleep(0.05)\n'
        ok(box.run(code + 'threading.Thread(target=tick, daemon=True).start()'))
        time.sleep(0.3)
        assert int(ok(box.run('len(ticks)'))) > 2
        pid = box.interpreter.pid
    finally:
        box.close()
    assert not Path(f'/proc/{pid}').exists()


# --------------------------------------------------------------------------- memory, files and output


@pytest.mark.parametrize(
    'code',
    [
        'block = bytearray(8 * 2**30)',
        'chunks = []\nwhile True:\n    chunks.append(bytearray(2**20))',
        'import mmap\nmmap.mmap(-1, 8 * 2**30)',
        '"x" * 2**40',
    ],
    ids=['8-gb', 'growing', 'mmap', 'huge-string'],
)
def test_memory_bombs_fail_with_memory_error(sandbox: Sandbox, code: str):
    errmsg = failed(sandbox.run(code))
    assert errmsg.endswith(('MemoryError', 'OSError: [Errno 12] Cannot allocate memory'))
    assert ok(sandbox.run('"fine"')) == "'fine'"


def test_a_file_larger_than_the_limit(sandbox: Sandbox):
    code = 'with open("big", "wb") as f:\n    f.write(b"x" * (9 * 2**20))'
    assert failed(sandbox.run(code)).endswith('OSError: [Errno 27] File too large')


@pytest.mark.parametrize('place', ['/tmp', '/dev/shm'])
def test_filling_the_private_file_systems_stops_at_their_size(sandbox: Sandbox, place: str):
    prefix = f'lagent-fill-{sleep_marker()}-'
    code = textwrap.dedent(
        f"""
        import os
        written = 0
        try:
            for index in range(100):
                with open(os.path.join({place!r}, '{prefix}%d' % index), 'wb') as f:
                    f.write(b'x' * 2**20 * 4)
                written += 4
        except OSError as exc:
            print(exc.strerror)
        written
        """
    )
    output = ok(sandbox.run(code))
    assert output.splitlines()[0] == 'No space left on device'
    assert int(output.splitlines()[-1]) <= OPTIONS['scratch_mb']
    assert not list(Path(place).glob(prefix + '*'))  # the host's file systems took none of it
    if sandbox.session:
        ok(sandbox.run(f'import glob\nfor name in glob.glob({place!r} + "/{prefix}*"):\n    os.remove(name)'))


def test_exhausting_inodes_stops_too(sandbox: Sandbox):
    code = textwrap.dedent(
        """
        import os
        os.makedirs('many', exist_ok=True)
        count = 0
        try:
            while count < 10**6:
                open('many/%d' % count, 'w').close()
                count += 1
        except OSError as exc:
            print(exc.strerror)
        count < 10**6
        """
    )
    assert ok(sandbox.run(code)) == 'No space left on device\nTrue'
    if sandbox.session:
        ok(sandbox.run('import shutil\nshutil.rmtree("many")'))


@pytest.mark.parametrize(
    'code',
    ['print("x" * 10**7)', 'import sys\nsys.stderr.write("e" * 10**7)\nNone', '"v" * 10**7'],
    ids=['stdout', 'stderr', 'value'],
)
def test_output_floods_are_truncated(sandbox: Sandbox, code: str):
    output = ok(sandbox.run(code))
    assert len(output) < 2 * OPTIONS['max_output_chars'] + 100
    assert re.search(r'\.\.\. \[(output truncated|\d+ more characters)\]$', output)


def test_endless_output_is_bounded_and_stopped(quick: Sandbox):
    errmsg = failed(quick.run('while True:\n    print("y" * 1000)'))
    assert errmsg.startswith('y' * 1000 + '\n... [output truncated]\nFunctionTimedOut: timed out after 1s')


def test_forged_results_do_not_replace_the_real_one():
    """Code can write to the result pipe; a run takes the real outcome, and a session the outcome
    of the cell it sent (a forged one for the current cell ends the call early: a documented limit)."""
    forge = 'import os\nfor fd in range(3, 20):\n    try:\n        os.write(fd, b\'{"ok": true, "value": "forged"}\\n\')\n    except OSError:\n        pass\n'
    assert failed(Sandbox('PythonInterpreter').run(forge + 'raise ValueError("real")')).endswith('ValueError: real')
    session = Sandbox('IPythonInterpreter')
    try:
        assert failed(session.run(forge + 'raise ValueError("real")')).endswith('ValueError: real')
        assert ok(session.run('"next"')) == "'next'"
    finally:
        session.close()


# --------------------------------------------------------------------------- privileges


@pytest.mark.parametrize(
    'code, error',
    [
        ('import os\nos.setuid(0)', 'PermissionError: [Errno 1] Operation not permitted'),
        ('import os\nos.chroot("/")', "PermissionError: [Errno 1] Operation not permitted: '/'"),
        ('import os\nos.mknod("disk", 0o600 | 0o060000, os.makedev(8, 0))', 'PermissionError: [Errno 1] Operation not permitted'),
        ('import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))', 'ValueError: not allowed to raise maximum limit'),
        ('import resource\nresource.setrlimit(resource.RLIMIT_NPROC, (10**6, 10**6))', 'ValueError: not allowed to raise maximum limit'),
        ('import resource\nresource.setrlimit(resource.RLIMIT_FSIZE, (-1, -1))', 'ValueError: not allowed to raise maximum limit'),
        ('import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n'
         'assert libc.mount(b"none", b"/mnt", b"tmpfs", 0, None) == 0, ctypes.get_errno()', 'AssertionError: 1'),
        ('import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n'
         'assert libc.ptrace(16, 1, None, None) == 0, ctypes.get_errno()', 'AssertionError: 1'),  # PTRACE_ATTACH
        ('import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n'
         'assert libc.umount2(b"/proc", 2) == 0, ctypes.get_errno()', 'AssertionError: 1'),
        ('open("/etc/shadow").read()', "PermissionError: [Errno 13] Permission denied: '/etc/shadow'"),
        ('import os\nos.symlink("/etc/shadow", "shadow")\nopen("shadow").read()', "PermissionError: [Errno 13] Permission denied: 'shadow'"),
    ],
    ids=['setuid-root', 'chroot', 'mknod', 'raise-memory-limit', 'raise-process-limit', 'raise-file-limit',
         'mount', 'ptrace-init', 'unmount-proc', 'read-shadow', 'symlink-to-shadow'],
)  # fmt: skip
def test_privileged_operations_are_refused(sandbox: Sandbox, code: str, error: str):
    if not ROOT and 'shadow' in code:
        pytest.skip('as a user, /etc/shadow is unreadable anyway')
    assert failed(sandbox.run(code)).endswith(error)


def test_no_user_namespace_of_its_own_and_the_mounts_stay(sandbox: Sandbox):
    """A user namespace would give the code capabilities over new namespaces (and more of the kernel to
    attack): the system-call filter refuses it, with unshare as with clone; and the mounts stay."""
    code = textwrap.dedent(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        def attempt(result):
            return 'done' if result == 0 else os.strerror(ctypes.get_errno())
        print('unshare:', attempt(libc.unshare(0x10000000 | 0x00020000)))  # user and mount namespaces
        print('clone:', attempt(libc.syscall(56 if os.uname().machine == 'x86_64' else 220, 0x10000000 | 17, 0, 0, 0, 0)))
        print('unmount /proc:', attempt(libc.umount2(b'/proc', 2)))
        print('unmount /tmp:', attempt(libc.umount2(b'/tmp', 2)))
        print('remount / writable:', attempt(libc.mount(None, b'/', None, 0x20 | 0x1000, None)))
        """
    )
    assert ok(sandbox.run(code)) == (
        'unshare: Operation not permitted\nclone: Operation not permitted\nunmount /proc: Operation not permitted\n'
        'unmount /tmp: Operation not permitted\nremount / writable: Operation not permitted'
    )


@pytest.mark.skipif(os.uname().machine != 'x86_64', reason='system-call numbers of x86_64')
@pytest.mark.parametrize('call, number', [('add_key', 248), ('keyctl', 250), ('bpf', 321), ('perf_event_open', 298)])
def test_kernel_interfaces_it_has_no_use_for_are_refused(sandbox: Sandbox, call: str, number: int):
    code = f'import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall({number}, 0, 0, 0, 0, 0), os.strerror(ctypes.get_errno())'
    assert ok(sandbox.run(code)) == "(-1, 'Operation not permitted')"


def test_no_capabilities_and_no_new_privileges(sandbox: Sandbox):
    status = ok(sandbox.run('print(open("/proc/self/status").read())'))
    fields = dict(line.split(':\t', 1) for line in status.splitlines() if ':\t' in line)
    assert fields['CapEff'].strip() == fields['CapPrm'].strip() == '0000000000000000'
    assert fields['NoNewPrivs'].strip() == '1'


@pytest.mark.skipif(not ROOT, reason='only root can make a set-user-ID root program')
def test_a_set_user_id_root_program_gains_nothing(sandbox: Sandbox):
    directory = Path(tempfile.mkdtemp(dir='/var/tmp'))  # /tmp is private in the sandbox
    try:
        directory.chmod(0o755)
        program = directory / 'id'
        shutil.copy('/usr/bin/id', program)
        program.chmod(0o4755)
        assert subprocess.run([str(program), '-u'], capture_output=True, text=True).stdout.strip() == '0'
        code = f'import os, subprocess\nprint(os.getuid())\nsubprocess.run([{str(program)!r}, "-u"])\nNone'
        output = ok(sandbox.run(code))
        own, effective = output.split()
        assert own == effective != '0'
    finally:
        shutil.rmtree(directory)


# --------------------------------------------------------------------------- the file system


@pytest.mark.parametrize('target', ['/etc/lagent-pwned', '/usr/lagent-pwned', '/var/tmp/lagent-pwned', 'REPO'])
def test_writing_outside_the_private_tmp_fails(sandbox: Sandbox, target: str):
    if target == 'REPO':
        target = str(Path(__file__).resolve().parent / 'lagent-pwned')
    errmsg = failed(sandbox.run(f'open({target!r}, "w").write("pwned")'))
    refusals = ('Read-only file system', 'Permission denied', 'No such file or directory')  # the last: under /tmp
    assert errmsg.endswith(tuple(f'{refusal}: {target!r}' for refusal in refusals))
    assert not Path(target).exists()


def test_the_hosts_tmp_is_not_the_sandboxes(sandbox: Sandbox):
    name = f'lagent-sandbox-escape-{os.getpid()}'
    host_file = Path('/tmp') / name
    host_file.write_text('the host')
    try:
        output = ok(
            sandbox.run(f'import os\nprint(os.path.exists("/tmp/{name}"))\nopen("/tmp/{name}", "w").write("x")')
        )
        assert output == 'False\n1'
        assert host_file.read_text() == 'the host'
    finally:
        host_file.unlink()


def test_sessions_do_not_see_each_others_files_or_processes(sandbox: Sandbox, bystander: IPythonInterpreter):
    ok(bystander.run('open("/tmp/secret-notes", "w").write("only mine")\nopen("/dev/shm/secret", "w").write("x")'))
    code = (
        'import os, glob\nprint(glob.glob("/tmp/secret*"), glob.glob("/dev/shm/secret*"))\n'
        'sorted(int(p) for p in os.listdir("/proc") if p.isdigit())'
    )
    output = ok(sandbox.run(code))
    assert output.startswith('[] []')
    assert len(eval(output.splitlines()[-1])) <= 3  # init, the worker, and in a session nothing else
    assert_bystander_unharmed(bystander)


def test_the_system_files_and_sys_are_read_only(sandbox: Sandbox):
    errmsg = failed(sandbox.run('open("/sys/kernel/mm/transparent_hugepage/enabled", "w").write("never")'))
    assert 'Read-only file system' in errmsg or 'Permission denied' in errmsg or 'No such file' in errmsg


# --------------------------------------------------------------------------- /proc and secrets


def test_proc_shows_only_the_sandbox_and_no_host_command_line(sandbox: Sandbox):
    secret = 'sk-lagent-' + sleep_marker()
    host = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '--api-keys', secret])
    try:
        code = textwrap.dedent(
            """
            import os
            lines = []
            for entry in os.listdir('/proc'):
                if entry.isdigit():
                    try:
                        lines.append(open('/proc/%s/cmdline' % entry, 'rb').read().replace(b'\\0', b' ').decode())
                    except OSError:
                        pass
            print('\\n'.join(lines))
            """
        )
        output = ok(sandbox.run(code))
        assert secret not in output and 'pytest' not in output and 'sleep(30)' not in output
        if host.pid > 100:  # not a number the sandbox's own processes could have
            errmsg = failed(sandbox.run(f'open("/proc/{host.pid}/cmdline").read()'))
            assert errmsg.endswith(f"No such file or directory: '/proc/{host.pid}/cmdline'")
    finally:
        host.kill()
        host.wait()


def test_the_parents_environment_is_out_of_reach(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv('LAGENT_TEST_SECRET', 'sk-do-not-leak-123')
    code = textwrap.dedent(
        """
        import os
        found = []
        for entry in os.listdir('/proc'):
            try:
                found.append(open('/proc/%s/environ' % entry, 'rb').read())
            except OSError:
                pass
        print(sorted(os.environ))
        any(b'sk-do-not-leak' in text for text in found)
        """
    )
    assert ok(sandbox.run(code)) == "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']\nFalse"


def test_signals_reach_no_host_process(sandbox: Sandbox):
    victim = subprocess.Popen(['sleep', '30'])
    try:
        errmsg = failed(sandbox.run(f'import os, signal\nos.kill({victim.pid}, signal.SIGKILL)'))
        assert errmsg.endswith(
            ('ProcessLookupError: [Errno 3] No such process', 'PermissionError: [Errno 1] Operation not permitted')
        )
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


# --------------------------------------------------------------------------- the network


@pytest.fixture(scope='module')
def host_server() -> Iterator[tuple[int, str]]:
    """A TCP listener on the host's loopback and an abstract Unix socket, accepting forever."""
    tcp = socket.create_server(('127.0.0.1', 0))
    abstract = socket.socket(socket.AF_UNIX)
    name = f'\0lagent-test-{os.getpid()}'
    abstract.bind(name)
    abstract.listen()
    stop = threading.Event()

    def accept(server: socket.socket) -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                continue

    threads = [threading.Thread(target=accept, args=(server,), daemon=True) for server in (tcp, abstract)]
    for thread in threads:
        thread.start()
    yield tcp.getsockname()[1], name
    stop.set()
    for thread in threads:
        thread.join()
    tcp.close()
    abstract.close()


def test_no_network(sandbox: Sandbox, host_server: tuple[int, str]):
    port, abstract = host_server
    code = textwrap.dedent(
        f"""
        import socket
        for family, address in ((socket.AF_INET, ('127.0.0.1', {port})), (socket.AF_UNIX, {abstract!r}),
                                (socket.AF_INET, ('1.1.1.1', 53))):
            with socket.socket(family) as sock:
                sock.settimeout(2)
                try:
                    sock.connect(address)
                    print('connected')
                except OSError as exc:
                    print(type(exc).__name__)
        try:
            socket.getaddrinfo('example.com', 80)
            print('resolved')
        except OSError as exc:
            print(type(exc).__name__)
        server = socket.create_server(('127.0.0.1', 0))
        client = socket.create_connection(server.getsockname())
        'loopback of its own works'
        """
    )
    output = ok(sandbox.run(code)).splitlines()
    assert 'connected' not in output and 'resolved' not in output
    assert output[-1] == "'loopback of its own works'"


def test_the_hosts_unix_sockets_in_run_are_hidden(sandbox: Sandbox):
    sockets = [str(path) for path in Path('/run').rglob('*') if path.is_socket()] if Path('/run').exists() else []
    code = f'import os\n[path for path in {sockets!r} if os.path.exists(path)] + os.listdir("/run")'
    assert ok(sandbox.run(code)) == '[]'


def test_unix_sockets_outside_run_stay_reachable_as_documented(sandbox: Sandbox):
    """Documented limit: a read-only mount does not stop connecting to a socket file anyone may write to."""
    directory = Path(tempfile.mkdtemp(dir='/var/tmp'))  # /tmp is private in the sandbox
    try:
        directory.chmod(0o755)
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(directory / 'socket'))
            (directory / 'socket').chmod(0o777)
            server.listen()
            code = f'import socket\nsocket.socket(socket.AF_UNIX).connect({str(directory / "socket")!r})\n"connected"'
            assert ok(sandbox.run(code)) == "'connected'"
    finally:
        shutil.rmtree(directory)


def test_the_network_can_be_allowed(host_server: tuple[int, str]):
    port, _ = host_server
    code = f'import socket\nsocket.create_connection(("127.0.0.1", {port}), timeout=5).close()\n"connected"'
    assert ok(Sandbox('PythonInterpreter', network=True).run(code)) == "'connected'"


# --------------------------------------------------------------------------- what reaches the model and the terminal


@pytest.mark.parametrize(
    'code, shown',
    [
        ('print("\\x1b[2J\\x1b[31mred\\x1b[0m")', '\\x1b[2J\\x1b[31mred\\x1b[0m'),
        ('print("safe\\rEVIL")', 'safe\\rEVIL'),
        ('print("\\u202eevil")', '\\u202eevil'),
        ('import sys\nsys.stderr.write("\\x1b]0;title\\x07")\nNone', '[stderr]\n\\x1b]0;title\\x07'),
        ('class X:\n    def __repr__(self):\n        return "\\x1b[8mhidden"\nX()', '\\x1b[8mhidden'),
    ],
    ids=['ansi', 'carriage-return', 'bidi-override', 'osc-on-stderr', 'in-a-repr'],
)
def test_terminal_escapes_are_made_visible(sandbox: Sandbox, code: str, shown: str):
    assert ok(sandbox.run(code)) == shown


def test_terminal_escapes_in_errors_are_made_visible(sandbox: Sandbox):
    errmsg = failed(sandbox.run('raise ValueError("\\x1b[2J\\x1b[Hcleared")'))
    assert errmsg.endswith('ValueError: \\x1b[2J\\x1b[Hcleared') and '\x1b' not in errmsg


# --------------------------------------------------------------------------- as an unprivileged user

AS_A_USER = textwrap.dedent(
    """
    import json, sys
    from lagent.actions import ActionExecutor, IPythonInterpreter, PythonInterpreter

    marker = sys.argv[1]
    found = {}
    with ActionExecutor([PythonInterpreter(timeout=5), IPythonInterpreter(timeout=5)]) as executor:
        first = executor.get('IPythonInterpreter').function.__self__
        executor.execute('IPythonInterpreter', {'command': 'kept = 1'})
        found['isolation'] = list(first.isolation)
        code = (
            'import os, subprocess, time\\n'
            f'subprocess.Popen(["sleep", "{marker}"], start_new_session=True)\\n'
            'os.kill(os.getppid(), 9)\\n'
            'try:\\n    os.kill(-1, 9)\\nexcept OSError:\\n    pass\\n'
            'time.sleep(0.2)\\n'
            'alive = [p for p in os.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/stat").read().split(") ")[1][0] != "Z"]\\n'
            'sorted(alive), os.getuid()'
        )
        found['attack'] = executor.execute('PythonInterpreter', {'command': code}).format_result()
        found['writes'] = executor.execute('PythonInterpreter', {'command': 'open("/var/tmp/x", "w")'}).errmsg
        found['bystander'] = executor.execute('IPythonInterpreter', {'command': 'kept'}).format_result()
    from lagent.actions._sandbox import SandboxLimits, run_in_sandbox

    daemon = f'import os, subprocess\\nif os.fork() == 0:\\n    os.setsid()\\n    subprocess.Popen(["sleep", "{marker}"])\\n    os._exit(0)'
    fallback = run_in_sandbox(daemon, SandboxLimits(), python=sys.executable, namespaces=False)
    found['fallback'] = [fallback.ok, list(fallback.isolation)]
    print(json.dumps(found))
    """
)


@pytest.mark.skipif(not ROOT, reason='becomes an unprivileged user to test the user-namespace sandbox')
def test_an_unprivileged_parent_gets_user_namespaces():
    import pwd
    import site

    from lagent.actions._sandbox import choose_identity

    nobody = pwd.getpwnam('nobody')
    python, run_as = choose_identity('nobody', sys.executable, namespaces=False)  # one nobody can run itself
    repository = Path(__file__).resolve().parents[2]
    env = {
        'PATH': '/usr/bin:/bin',
        'PYTHONPATH': os.pathsep.join([str(repository), *site.getsitepackages()]),
        'HOME': '/',
    }
    probe = subprocess.run(
        [python, '-c', 'import lagent.actions'], user=nobody.pw_uid, group=nobody.pw_gid, env=env, capture_output=True
    )
    if run_as.ids is None or probe.returncode != 0:
        pytest.skip(f'nobody cannot run this checkout with {python}: {probe.stderr.decode()[-200:]}')
    marker = sleep_marker()
    completed = subprocess.run(
        [python, '-c', AS_A_USER, marker],
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        env=env,
        cwd='/',
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    found = __import__('json').loads(completed.stdout)
    assert found['isolation'] == ['network', 'pid', 'proc', 'readonly', 'seccomp', 'tmp'], 'no user namespaces here'
    assert found['attack'] == f"(['1', '2'], {nobody.pw_uid})"  # only init and the worker, as the same user
    assert found['writes'].endswith("Read-only file system: '/var/tmp/x'")
    assert found['bystander'] == '1'
    assert found['fallback'] == [True, ['seccomp']]  # without namespaces the processes are ended as descendants
    assert processes_running(marker) == []
