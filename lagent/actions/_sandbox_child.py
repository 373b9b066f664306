"""The programs the sandbox's child processes run (stdlib only, Python >= 3.8).

They are passed to ``python -I -u -c`` as text, so they import nothing from
lagent. Both start as a *supervisor* that makes itself a subreaper
(``PR_SET_CHILD_SUBREAPER``: every process the code starts, even one that
leaves its process group with ``setsid()``, is re-parented to it when its
parent dies) and forks a *worker* that sets the rlimits and runs the code.
When the worker is gone, the supervisor kills every remaining descendant and
reports on ``result_fd``. Messages on ``result_fd`` are JSON objects, one per
line.

* :data:`CELL_PROGRAM` runs one cell. Stdin carries one JSON request
  (``code``, ``limits``, ``result_fd``). The supervisor enforces the
  wall-clock limit. Messages: the worker's ``{"ok", "value", "error"}``, then
  the supervisor's ``{"timed_out", "exit_code", "signal"}``.
* :data:`SESSION_PROGRAM` keeps a namespace across cells. The first stdin
  line is the configuration (``limits``, ``result_fd``); every further line is
  ``{"code": ...}``. The worker is a subreaper too, and kills what a cell
  started when the cell ends. Messages: ``{"ready": worker_pid}``, then one
  ``{"ok", "value", "error"}`` per cell, and the supervisor's
  ``{"timed_out", "exit_code", "signal"}`` when the worker has died. The
  parent enforces the wall-clock limit by killing the worker.
"""

__all__ = ['CELL_PROGRAM', 'SESSION_PROGRAM']

_COMMON = r'''
import ast, ctypes, json, linecache, os, resource, signal, sys, time, traceback

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def send(fd, message):
    os.write(fd, (json.dumps(message) + '\n').encode())


def count_tasks(uid):
    total = 0
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/status' % entry) as status:
                fields = dict(line.split(':', 1) for line in status if ':' in line)
            if int(fields['Uid'].split()[0]) == uid:
                total += int(fields.get('Threads', '1'))
        except (OSError, KeyError, ValueError):
            continue
    return total


def set_limit(kind, value, hard=None):
    """Set a soft limit (and a hard one, ``value`` unless given), never above the hard limit we have."""
    current_hard = resource.getrlimit(kind)[1]
    hard = value if hard is None else hard
    if current_hard != resource.RLIM_INFINITY:
        value = min(value, current_hard)
        hard = current_hard if hard == resource.RLIM_INFINITY else min(hard, current_hard)
    resource.setrlimit(kind, (value, hard))


def set_limits(limits, cpu_seconds):
    if limits['memory_bytes']:
        set_limit(resource.RLIMIT_AS, limits['memory_bytes'])
    if cpu_seconds:
        set_limit(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    if limits['file_size_bytes']:
        set_limit(resource.RLIMIT_FSIZE, limits['file_size_bytes'])
    if limits['max_processes']:
        set_limit(resource.RLIMIT_NPROC, count_tasks(os.getuid()) + limits['max_processes'])
    set_limit(resource.RLIMIT_CORE, 0)


def stdin_from_devnull():
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def short(text, limit):
    return text if len(text) <= limit else text[:limit] + '... [%d more characters]' % (len(text) - limit)


def run_cell(source, namespace, limit, filename):
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        tree = ast.parse(source, filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, 'exec'), namespace)
        value = eval(compile(last, filename, 'eval'), namespace) if last is not None else None
        outcome = {'ok': True, 'value': None if value is None else short(repr(value), limit)}
    except SystemExit as exc:
        if exc.code in (None, 0):
            outcome = {'ok': True, 'value': None}
        else:
            outcome = {'ok': False, 'error': 'SystemExit: %s' % (exc.code,)}
    except BaseException as exc:
        frames = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        if isinstance(exc, SyntaxError):
            lines = traceback.format_exception_only(type(exc), exc)
        else:
            lines = traceback.format_exception(type(exc), exc, frames)
        outcome = {'ok': False, 'error': ''.join(lines)}
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    return outcome


def descendants():
    """Return ``{pid: state}`` of every process below this one (zombies included)."""
    children_of = {}
    states = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry, 'rb') as stat:
                fields = stat.read().rsplit(b')', 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry)
        states[pid] = fields[0].decode()
        children_of.setdefault(int(fields[1]), []).append(pid)
    found = {}
    frontier = [os.getpid()]
    while frontier:
        for child in children_of.get(frontier.pop(), ()):
            if child not in found:
                found[child] = states[child]
                frontier.append(child)
    return found


def signal_all(pids, number):
    for pid in pids:
        try:
            os.kill(pid, number)
        except OSError:
            pass


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants():
    """Kill every process below this one, however fast it forks, and reap them.

    Stop them all first (a stopped process cannot fork) until a scan finds
    none still running, then kill them; as a subreaper this process inherits
    the orphans and reaps them.
    """
    stop_rounds = 0
    while True:
        found = descendants()
        if not found:
            return
        running = [pid for pid, state in found.items() if state not in ('T', 't', 'Z', 'X')]
        if running and stop_rounds < 200:  # bounded, in case a process never stops (uninterruptible I/O)
            stop_rounds += 1
            signal_all(running, signal.SIGSTOP)
            continue
        signal_all(found, signal.SIGKILL)
        reap()
        time.sleep(0.002)


def stop_own_group():
    """Stop, at once, the processes a cell left in this process's group.

    SIGTSTP is used because this process can ignore it while sending it (it
    cannot ignore SIGSTOP); processes that ignore it too are stopped one by
    one by kill_descendants, only more slowly.
    """
    previous = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    try:
        os.killpg(os.getpgid(0), signal.SIGTSTP)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTSTP, previous)


def report(fd, status, timed_out):
    message = {'timed_out': timed_out, 'exit_code': None, 'signal': None}
    if os.WIFSIGNALED(status):
        message['signal'] = os.WTERMSIG(status)
    else:
        message['exit_code'] = os.WEXITSTATUS(status)
    send(fd, message)
'''

CELL_PROGRAM = (
    _COMMON
    + r"""

def worker(request, result_fd):
    os.setpgid(0, 0)
    stdin_from_devnull()
    limits = request['limits']
    set_limits(limits, limits['cpu_seconds'])
    namespace = {'__name__': '__main__', '__builtins__': __builtins__}
    send(result_fd, run_cell(request['code'], namespace, limits['max_value_chars'], '<cell>'))
    os._exit(0)


def main():
    request = json.loads(sys.stdin.read())
    result_fd = request['result_fd']
    become_subreaper()
    deadline = time.monotonic() + request['limits']['wall_seconds']
    pid = os.fork()
    if pid == 0:
        worker(request, result_fd)
    status, timed_out, pause = None, False, 0.001
    while status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = raw
        elif time.monotonic() >= deadline:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            status = os.waitpid(pid, 0)[1]
        else:
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    kill_descendants()
    report(result_fd, status, timed_out)


main()
"""
)

SESSION_PROGRAM = (
    _COMMON
    + r"""

def worker(config, result_fd):
    os.setpgid(0, 0)
    requests = os.fdopen(os.dup(0), 'rb')
    stdin_from_devnull()
    become_subreaper()
    limits = config['limits']
    set_limits(limits, None)
    namespace = {'__name__': '__main__', '__builtins__': __builtins__}
    send(result_fd, {'ready': os.getpid()})
    cells = 0
    for line in requests:
        cells += 1
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(used.ru_utime + used.ru_stime) + limits['cpu_seconds']
        set_limit(resource.RLIMIT_CPU, soft, resource.RLIM_INFINITY)
        code = json.loads(line)['code']
        outcome = run_cell(code, namespace, limits['max_value_chars'], '<cell %d>' % cells)
        stop_own_group()
        kill_descendants()
        send(result_fd, outcome)
    os._exit(0)


def main():
    config = json.loads(sys.stdin.readline())
    result_fd = config['result_fd']
    become_subreaper()
    pid = os.fork()
    if pid == 0:
        worker(config, result_fd)
    stdin_from_devnull()
    status = os.waitpid(pid, 0)[1]
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    kill_descendants()
    report(result_fd, status, False)


main()
"""
)
