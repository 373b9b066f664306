"""The program the sandbox's child process runs (stdlib only, any Python >= 3.8).

It is passed to ``python -I -u -c`` as text, so it imports nothing from lagent.
The parent writes one JSON request on stdin: ``code``, ``limits``, ``result_fd``.

The child becomes a *subreaper* (``PR_SET_CHILD_SUBREAPER``): every process the
code starts, even one that leaves the process group with ``setsid()``, is
re-parented to it when its parent dies. It forks a worker that sets the
rlimits and runs the code like a notebook cell, waits for it until the
wall-clock deadline, then kills the worker's group and every remaining
descendant, and reports on ``result_fd`` (one JSON object per line): the
worker's ``{"ok", "value", "error"}``, then its own
``{"status", "timed_out"}``.
"""

CHILD_PROGRAM = r"""
import ast, ctypes, json, linecache, os, resource, signal, sys, time, traceback

PR_SET_CHILD_SUBREAPER = 36


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


def set_limits(limits):
    memory = limits['memory_bytes']
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = limits['cpu_seconds']
    if cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    file_size = limits['file_size_bytes']
    if file_size:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    processes = limits['max_processes']
    if processes:
        allowed = count_tasks(os.getuid()) + processes
        resource.setrlimit(resource.RLIMIT_NPROC, (allowed, allowed))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def short(text, limit):
    return text if len(text) <= limit else text[:limit] + '... [%d more characters]' % (len(text) - limit)


def run_cell(source, limit):
    filename = '<cell>'
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {'__name__': '__main__', '__builtins__': __builtins__}
    try:
        tree = ast.parse(source, filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, 'exec'), namespace)
        value = eval(compile(last, filename, 'eval'), namespace) if last is not None else None
        return {'ok': True, 'value': None if value is None else short(repr(value), limit)}
    except SystemExit as exc:
        if exc.code in (None, 0):
            return {'ok': True, 'value': None}
        return {'ok': False, 'error': 'SystemExit: %s' % (exc.code,)}
    except BaseException as exc:
        frames = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        if isinstance(exc, SyntaxError):
            lines = traceback.format_exception_only(type(exc), exc)
        else:
            lines = traceback.format_exception(type(exc), exc, frames)
        return {'ok': False, 'error': ''.join(lines)}


def worker(request, result_fd):
    os.setpgid(0, 0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    set_limits(request['limits'])
    outcome = run_cell(request['code'], request['limits']['max_value_chars'])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os.write(result_fd, (json.dumps(outcome) + '\n').encode())
    os._exit(0)


def children():
    me = str(os.getpid())
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry, 'rb') as stat:
                fields = stat.read().rsplit(b')', 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1].decode() == me:
            found.append(int(entry))
    return found


def kill_descendants(group):
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
    while True:
        remaining = children()
        if not remaining:
            return
        for pid in remaining:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.005)
                break


def main():
    request = json.loads(sys.stdin.read())
    result_fd = request['result_fd']
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
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
    kill_descendants(pid)
    report = {'timed_out': timed_out, 'exit_code': None, 'signal': None}
    if os.WIFSIGNALED(status):
        report['signal'] = os.WTERMSIG(status)
    else:
        report['exit_code'] = os.WEXITSTATUS(status)
    os.write(result_fd, (json.dumps(report) + '\n').encode())


main()
"""
