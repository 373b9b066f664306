"""The program the sandbox's child processes run (stdlib only, Python >= 3.8).

It is passed to ``python -I -u -X utf8 -c`` as text, so it imports nothing
from lagent. The parent writes one JSON line on stdin: the configuration
(``mode``, ``namespaces``, ``limits``, ``result_fd``, ``ids``, ``unique_uid``,
``keep_root``, ``network``, ``scratch``, ``answer``, and for ``mode == 'cell'``
the ``code``). In a session every further stdin line is
``{"code": ..., "cell": id}``, the id being echoed in the cell's outcome.

The process tree, with the kernel's isolation::

    parent (lagent) -- supervisor ==|== init -- worker -- the code's processes
                                    |   (PID 1 of a private PID namespace)

* The **supervisor** is started by the parent. It enters new PID, mount, IPC,
  UTS and (unless the network is allowed) network namespaces (``unshare``; a
  user namespace too when it is not root), forks the namespace's *init* and
  waits for it. It kills init on SIGTERM (how the parent ends a run early) and
  when the parent dies (it polls its parent id, so a parent thread that ends
  does not matter, unlike ``PR_SET_PDEATHSIG``).
* **init** dies with the supervisor (``PR_SET_PDEATHSIG``); when init dies the
  kernel kills every process of the namespace, so nothing outlives it. It
  makes the file system read-only, mounts its own ``/proc`` and private
  ``tmpfs`` on ``/tmp`` and ``/dev/shm`` (and ``/run``, which holds the host's
  Unix sockets, when the network is off), brings up the loopback interface,
  forks the worker and enforces the wall-clock limit (cells).
* init (or, without namespaces, the supervisor) installs a seccomp filter that
  every process of the run inherits (``install_syscall_filter``).
* The **worker** drops to the sandbox's uid, loses every capability, sets
  ``PR_SET_NO_NEW_PRIVS`` (set-user-ID programs gain nothing) and the rlimits,
  and runs the code.

Where namespaces are not available the supervisor is also init: it makes
itself a *subreaper* (``PR_SET_CHILD_SUBREAPER``: processes the code starts
are re-parented to it when their parent dies) and forks the worker itself.
Every step that fails is reported in the ``isolation`` message and the run
continues with what works.

Messages on ``result_fd`` are JSON objects, one per line:

* ``{"isolation": [...], "missing": {feature: reason}}`` from init before the
  worker starts;
* the worker's ``{"ready": pid}`` (sessions), then one
  ``{"ok", "value", "error"}`` per cell (with ``"cell"`` in sessions);
* init's ``{"timed_out", "exit_code", "signal"}`` when the worker has ended
  and every other process of the run is gone.
"""

__all__ = ['PROGRAM']

PROGRAM = r'''
import ast, ctypes, io, json, linecache, os, re, resource, signal, sys, time, traceback

LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 0x1, 0x2, 0x4, 0x8, 0x20
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
MOUNT_OPTION_FLAGS = {
    'nosuid': MS_NOSUID, 'nodev': MS_NODEV, 'noexec': MS_NOEXEC, 'noatime': 0x400,
    'nodiratime': 0x800, 'relatime': 0x200000, 'strictatime': 0x1000000,
}
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 36, 38
SECCOMP_MODE_FILTER = 2
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
WAITED_SIGNALS = [signal.SIGCHLD, signal.SIGTERM]
CAPABILITY_VERSION_3 = 0x20080522


# ---------------------------------------------------------------- system calls


def libc_call(name, *args):
    if getattr(LIBC, name)(*args) != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))


def prctl(option, value):
    libc_call('prctl', option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


def mount(source, target, fstype, flags, data=None):
    encode = lambda text: None if text is None else text.encode()
    libc_call('mount', encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))


def drop_capabilities():
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    libc_call('capset', header, data)


def send(fd, message):
    os.write(fd, (json.dumps(message) + '\n').encode())


def why(exc):
    return exc.strerror or str(exc)


# ---------------------------------------------------------------- isolation


def enter_namespaces(network):
    """Enter new namespaces; the next child forked is PID 1 of the new PID namespace."""
    flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (0 if network else CLONE_NEWNET)
    if os.geteuid() == 0:
        libc_call('unshare', flags)
        return
    uid, gid = os.geteuid(), os.getegid()
    libc_call('unshare', flags | CLONE_NEWUSER)  # the unprivileged way: in it we may mount and unshare
    for name, text in (('setgroups', 'deny'), ('uid_map', '%d %d 1' % (uid, uid)), ('gid_map', '%d %d 1' % (gid, gid))):
        with open('/proc/self/' + name, 'w') as handle:
            handle.write(text)


def mount_points():
    with open('/proc/self/mountinfo') as info:
        for line in info:
            fields = line.split()
            point = re.sub(r'\\([0-7]{3})', lambda match: chr(int(match.group(1), 8)), fields[4])
            yield point, fields[5].split(',')


def make_read_only():
    """Remount every mount point read-only and nosuid (in this private mount namespace only)."""
    failed = []
    for point, options in mount_points():
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        for option in options:
            flags |= MOUNT_OPTION_FLAGS.get(option, 0)
        try:
            mount(None, point, None, flags)
        except OSError as exc:
            if exc.errno != 2:  # ENOENT: a mount point hidden under a later mount
                failed.append('%s (%s)' % (point, why(exc)))
    return failed


def under(path, places):
    return any(path == place or path.startswith(place.rstrip('/') + '/') for place in places)


def interpreter_paths():
    """The directories (and zip files) the interpreter imports and runs from, and its executable."""
    import sysconfig

    paths = list(sys.path) + [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    paths += [sys.executable, os.path.dirname(sys.executable), os.path.realpath(sys.executable)]
    paths.append(sysconfig.get_config_var('LIBDIR'))  # a shared libpython, for a subprocess of sys.executable
    return sorted({os.path.abspath(path) for path in paths if path and os.path.exists(path)})


def permits(path, ids):
    info = os.stat(path)
    bit = 0o100 if info.st_uid == ids[0] else 0o010 if info.st_gid == ids[1] else 0o001
    return bool(info.st_mode & bit)


def first_unsearchable(path, ids):
    """The highest directory above ``path`` the worker's user cannot search (``None``: none)."""
    if ids is None:
        return None
    parts = path.split('/')
    for end in range(2, len(parts)):
        directory = '/'.join(parts[:end])
        if not permits(directory, ids):
            return directory
    return None


def keep(paths, masked, ids):
    """Open the paths that masking would hide: parents first, a path inside one already kept comes
    with it; a directory the worker's user cannot search is left out (the files needed in it are not)."""
    kept = []
    for path in paths:
        if not under(path, masked) or any(under(path, [done]) for done, _ in kept):
            continue
        if ids is None or not os.path.isdir(path) or permits(path, ids):
            kept.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC)))
    return kept


def expose(kept):
    """Bind the kept interpreter paths back, read-only, where they were."""
    for path, fd in kept:
        source = '/proc/self/fd/%d' % fd
        if os.path.isdir(source):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, 'a').close()
        mount(source, path, None, MS_BIND | MS_REC)
        mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        os.close(fd)


def private_file_system(config, missing):
    """Read-only file system, own /proc, private tmpfs; return the working directory (or None).

    Empty read-only tmpfs also cover ``/run`` (the host's Unix sockets) when
    the network is off, and the directories that would keep the worker's user
    from the interpreter (``/root`` when it lives there); the interpreter's
    own directories are bound back into them (and into ``/tmp``), read-only.
    """
    try:
        mount(None, '/', None, MS_REC | MS_PRIVATE)
    except OSError as exc:
        for feature in ('readonly', 'tmp', 'proc'):
            missing[feature] = 'cannot make the mounts private: %s' % why(exc)
        return None
    uid, gid = config['ids'] or (os.geteuid(), os.getegid())
    size_kb = config['limits']['scratch_kb']
    masks = {
        '/tmp': 'size=%dk,nr_inodes=%d,mode=700,uid=%d,gid=%d' % (size_kb, max(1024, size_kb // 16), uid, gid),
        '/dev/shm': 'size=%dk,nr_inodes=1024,mode=1777' % size_kb,
    }
    if not config['network']:
        masks['/run'] = 'size=64k,nr_inodes=64,mode=755'
    masks = {place: options for place, options in masks.items() if os.path.isdir(place) and not os.path.islink(place)}
    paths = interpreter_paths()
    for path in paths:
        blocker = first_unsearchable(path, config['ids'])
        if blocker and not under(blocker, masks):
            masks[blocker] = 'size=64k,nr_inodes=1024,mode=755'
    kept = keep(paths, masks, config['ids'])
    failed = make_read_only()
    if failed:
        missing['readonly'] = 'still writable: ' + ', '.join(failed)
    try:
        mount('proc', '/proc', 'proc', MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as exc:
        missing['proc'] = 'cannot mount a /proc of its own: %s' % why(exc)
    for place, options in sorted(masks.items()):
        try:
            mount('tmpfs', place, 'tmpfs', MS_NOSUID | MS_NODEV, options)
        except OSError as exc:
            feature = {'/run': 'network', '/dev/shm': 'readonly'}.get(place, 'tmp')
            missing[feature] = 'cannot mount a tmpfs on %s: %s' % (place, why(exc))
    try:
        expose(kept)
        for place in masks:
            if place not in ('/tmp', '/dev/shm'):
                mount(None, place, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    except OSError as exc:
        missing['tmp'] = 'cannot keep the interpreter visible: %s' % why(exc)
    return None if 'tmp' in missing else '/tmp'


def loopback_up():
    import socket, struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack('16sH22x', b'lo', 0)
        flags = struct.unpack('16sH22x', fcntl_ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl_ioctl(sock, SIOCSIFFLAGS, struct.pack('16sH22x', b'lo', flags | IFF_UP))


def fcntl_ioctl(sock, request, argument):
    import fcntl
    return fcntl.ioctl(sock.fileno(), request, argument)


def become_init(config, missing):
    """Set up the namespace as its PID 1; return the working directory (or None)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the supervisor's death ends the namespace
    workdir = private_file_system(config, missing)
    if not config['network']:
        try:
            loopback_up()
        except OSError:
            pass  # still no network; only localhost does not work
    try:
        import socket

        socket.sethostname('sandbox')
    except OSError:
        pass
    return workdir


# ---------------------------------------------------------------- the worker


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


def set_limits(limits, cpu_seconds, tasks):
    if limits['memory_bytes']:
        set_limit(resource.RLIMIT_AS, limits['memory_bytes'])
    if cpu_seconds:
        set_limit(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    if limits['file_size_bytes']:
        set_limit(resource.RLIMIT_FSIZE, limits['file_size_bytes'])
    if limits['max_processes']:
        set_limit(resource.RLIMIT_NPROC, (count_tasks(os.getuid()) if tasks is None else tasks) + limits['max_processes'])
    set_limit(resource.RLIMIT_CORE, 0)


# ---------------------------------------------------------------- the system-call filter

SYSCALLS = {  # machine: (audit arch, {name: number})
    'x86_64': (0xC000003E, {'clone': 56, 'unshare': 272, 'clone3': 435, 'add_key': 248, 'request_key': 249,
                            'keyctl': 250, 'bpf': 321, 'perf_event_open': 298, 'userfaultfd': 323}),
    'aarch64': (0xC00000B7, {'clone': 220, 'unshare': 97, 'clone3': 435, 'add_key': 217, 'request_key': 218,
                             'keyctl': 219, 'bpf': 280, 'perf_event_open': 241, 'userfaultfd': 282}),
}
REFUSED = ('add_key', 'request_key', 'keyctl', 'bpf', 'perf_event_open', 'userfaultfd')


def install_syscall_filter():
    """Refuse new user namespaces (``unshare``/``clone`` with CLONE_NEWUSER; ``clone3``, whose flags a
    filter cannot read, says ENOSYS and the C library falls back to ``clone``), kernel keyrings, BPF,
    perf events and userfaultfd: kernel interfaces sandboxed code has no use for. Other ABIs
    (i386 and x32 on x86_64) are refused altogether."""
    machine = os.uname().machine
    if machine not in SYSCALLS:
        raise OSError(0, 'no system-call table for %s' % machine)
    arch, numbers = SYSCALLS[machine]
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    load, equal, at_least, any_bit, give = 0x20, 0x15, 0x35, 0x45, 0x06  # classic BPF opcodes
    program = [
        (load, 0, 0, 4), (equal, 1, 0, arch), (give, 0, 0, eperm),  # seccomp_data.arch
        (load, 0, 0, 0), (at_least, 0, 1, 0x40000000), (give, 0, 0, eperm),  # seccomp_data.nr
        (equal, 0, 1, numbers['clone3']), (give, 0, 0, enosys),
    ]
    for name in REFUSED:
        program += [(equal, 0, 1, numbers[name]), (give, 0, 0, eperm)]
    program += [
        (equal, 1, 0, numbers['unshare']), (equal, 0, 3, numbers['clone']),
        (load, 0, 0, 16), (any_bit, 0, 1, CLONE_NEWUSER), (give, 0, 0, eperm),  # the flags, args[0]
        (give, 0, 0, allow),
    ]

    class Instruction(ctypes.Structure):
        _fields_ = [('code', ctypes.c_uint16), ('jt', ctypes.c_uint8), ('jf', ctypes.c_uint8), ('k', ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [('len', ctypes.c_uint16), ('filter', ctypes.POINTER(Instruction))]

    instructions = (Instruction * len(program))(*[Instruction(*instruction) for instruction in program])
    compiled = Program(len(program), instructions)
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # what lets a process without CAP_SYS_ADMIN install a filter
    libc_call('prctl', PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(compiled), None, None)


def drop_privileges(config):
    ids = config['ids']
    if ids is not None:
        os.setgroups([])
        os.setresgid(ids[1], ids[1], ids[1])
        os.setresuid(ids[0], ids[0], ids[0])
    if not config['keep_root']:
        drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 1)  # a uid change cleared it; the code may read its own /proc/self


def stdin_from_devnull():
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


class CountingFile(io.FileIO):
    """Standard output that counts what the code wrote, to tell whether a cell printed anything."""

    written = 0

    def write(self, data):
        count = super().write(data)
        CountingFile.written += count or 0
        return count


def count_stdout():
    sys.stdout = io.TextIOWrapper(
        CountingFile(1, 'w', closefd=False), encoding='utf-8', errors=sys.stdout.errors, write_through=True
    )


def short(text, limit):
    return text if len(text) <= limit else text[:limit] + '... [%d more characters]' % (len(text) - limit)


def first_name(expression):
    for node in ast.walk(ast.parse(expression, mode='eval')):
        if isinstance(node, ast.Name):
            return node.id
    return None


def answer(namespace, before, convention, printed):
    """The value of the answer convention, if the cell (re)defined its name and printed nothing."""
    if printed or not convention:
        return None
    name = convention.get('symbol') or first_name(convention['expr'])
    if name is None or name not in namespace or namespace[name] is before.get(name):
        return None
    if convention.get('symbol'):
        return namespace[name]
    return eval(compile(convention['expr'], '<answer>', 'eval'), namespace)


def run_cell(source, namespace, limit, filename, convention):
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    printed_before = CountingFile.written
    before = dict(namespace)
    try:
        tree = ast.parse(source, filename)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, 'exec'), namespace)
        value = eval(compile(last, filename, 'eval'), namespace) if last is not None else None
        shown = None if value is None else repr(value)
        if last is None:
            result = answer(namespace, before, convention, CountingFile.written > printed_before)
            shown = None if result is None else str(result)
        outcome = {'ok': True, 'value': None if shown is None else short(shown, limit)}
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


def worker(config, workdir, cleanup, tasks, supervisor):
    os.setpgid(0, 0)
    requests = os.fdopen(os.dup(0), 'rb') if config['mode'] == 'session' else None
    stdin_from_devnull()
    os.chdir(workdir)
    os.environ['HOME'] = os.environ['TMPDIR'] = workdir
    drop_privileges(config)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it
    if os.getppid() != supervisor:  # it died before the line above
        os._exit(1)
    limits = config['limits']
    result_fd = config['result_fd']
    namespace = {'__name__': '__main__', '__builtins__': __builtins__}
    count_stdout()
    if requests is None:
        set_limits(limits, limits['cpu_seconds'], tasks)
        send(result_fd, run_cell(config['code'], namespace, limits['max_value_chars'], '<cell>', config['answer']))
        os._exit(0)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    set_limits(limits, None, tasks)
    send(result_fd, {'ready': os.getpid()})
    cells = 0
    for line in requests:
        cells += 1
        used = resource.getrusage(resource.RUSAGE_SELF)
        request = json.loads(line)
        set_limit(resource.RLIMIT_CPU, int(used.ru_utime + used.ru_stime) + limits['cpu_seconds'], resource.RLIM_INFINITY)
        filename = '<cell %d>' % cells
        outcome = run_cell(request['code'], namespace, limits['max_value_chars'], filename, config['answer'])
        kill_leftovers(cleanup)
        outcome['cell'] = request['cell']
        send(result_fd, outcome)
    os._exit(0)


# ---------------------------------------------------------------- ending every process of a run


def reap_all(deadline):
    """Reap children until none is left (or ``deadline``)."""
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.002)


def kill_all_visible():
    """SIGKILL every process this one may signal, except itself and PID 1: one system call that
    holds the process list, so that no process can fork while it runs."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_leftovers(cleanup, worker_group=None, uid=None):
    """End what the code left running: the worker calls it after each cell, and
    init with ``worker_group`` (and the sandbox's ``uid``) when the worker has ended.

    ``namespace``: everything visible is the run's (a PID namespace of its own);
    ``uid``: everything the sandbox's uid may signal is the run's (a uid of its own);
    ``tree``: only the descendants of this process are the run's.
    """
    if cleanup == 'tree':
        if worker_group is None:
            stop_own_group()
        else:
            signal_all([-worker_group], signal.SIGKILL)
        kill_descendants()
    elif cleanup == 'uid' and uid is not None and os.getuid() != uid:
        killer = os.fork()
        if killer == 0:
            os.setresuid(uid, uid, uid)
            kill_all_visible()
            os._exit(0)
        os.waitpid(killer, 0)
    else:
        kill_all_visible()
    reap_all(time.monotonic() + 10)


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
        reap_all(time.monotonic() + 0.002)


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


# ---------------------------------------------------------------- waiting


def wait_for(child, deadline, parent):
    """Wait for ``child`` to end, reaping any other child meanwhile; kill it at
    ``deadline``, on SIGTERM (the parent's way to end a run) or when this
    process's parent is gone. Return ``(status, timed_out)``. SIGCHLD and
    SIGTERM must be blocked."""
    timed_out = False
    while True:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 0, timed_out
            if pid == child:
                return status, timed_out
            if pid == 0:
                break
        pause = 0.5
        if os.getppid() != parent:
            signal_all([child], signal.SIGKILL)
        elif deadline is not None and not timed_out:
            pause = deadline - time.monotonic()
            if pause <= 0:
                timed_out = True
                signal_all([child], signal.SIGKILL)
            pause = min(max(pause, 0.001), 0.5)
        received = signal.sigtimedwait(WAITED_SIGNALS, pause)
        if received is not None and received.si_signo == signal.SIGTERM:
            signal_all([child], signal.SIGKILL)


def fork_child():
    """Fork; the child gets the signal mask back."""
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WAITED_SIGNALS)
    return pid


def report(fd, status, timed_out):
    message = {'timed_out': timed_out, 'exit_code': None, 'signal': None}
    if os.WIFSIGNALED(status):
        message['signal'] = os.WTERMSIG(status)
    else:
        message['exit_code'] = os.WEXITSTATUS(status)
    send(fd, message)


def exit_like(status):
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


def main():
    config = json.loads(sys.stdin.buffer.readline())
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, WAITED_SIGNALS)
    features = set() if config['network'] else {'network'}
    missing = {}
    # the uid's processes are counted where the kernel counts them for RLIMIT_NPROC
    tasks = 0 if config['unique_uid'] else (count_tasks(config['ids'][0]) if config['ids'] else None)
    try:
        if not config['namespaces']:
            raise OSError(0, 'turned off')
        enter_namespaces(config['network'])
    except OSError as exc:
        reason = 'no namespaces: %s' % why(exc)
        for feature in ('pid', 'proc', 'readonly', 'tmp') + (() if config['network'] else ('network',)):
            missing[feature] = reason
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        workdir, cleanup = None, 'uid' if config['unique_uid'] else 'tree'
    else:
        init = os.fork()  # init waits for the worker as the supervisor waits for init: signals stay blocked
        if init:
            exit_like(wait_for(init, None, parent)[0])
        parent = os.getppid()
        workdir, cleanup = become_init(config, missing), 'namespace'
    try:
        install_syscall_filter()  # by init (or the supervisor), so that every process of the run has it
    except OSError as exc:
        missing['seccomp'] = 'no system-call filter: %s' % why(exc)
    features |= {'pid', 'proc', 'readonly', 'tmp', 'seccomp'}
    if config['unique_uid']:
        features.add('uid')
    features -= set(missing)
    send(config['result_fd'], {'isolation': sorted(features), 'missing': missing})
    deadline = time.monotonic() + config['limits']['wall_seconds'] if config['mode'] == 'cell' else None
    supervisor = os.getpid()
    pid = fork_child()
    if pid == 0:
        try:
            worker(config, workdir or config['scratch'], cleanup, tasks, supervisor)
        except BaseException:
            traceback.print_exc()
        os._exit(70)
    stdin_from_devnull()
    status, timed_out = wait_for(pid, deadline, parent)
    kill_leftovers(cleanup, worker_group=pid, uid=config['ids'][0] if config['ids'] else None)
    report(config['result_fd'], status, timed_out)
    os._exit(0)


main()
'''
