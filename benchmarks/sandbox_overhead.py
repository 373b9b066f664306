"""What the Python sandbox's isolation costs per call, against a bare child process.

Every contender runs the same cell (``sum(range(1000))``) with the same
interpreter and returns its value; each figure is the median of ``--repeats``
calls, the contenders interleaved so that a busy machine slows them alike:

* ``bare subprocess``: ``subprocess.run([python, '-I', '-c', code])``, the
  least a fresh process per call can cost (no limits, no isolation);
* ``sandbox, no namespaces``: :func:`run_in_sandbox` with the kernel's
  namespaces turned off and the parent's user (the fallback's processes,
  rlimits, result pipe and cleanup);
* ``PythonInterpreter``: the full sandbox (namespaces, mounts, seccomp, a
  uid of its own when root), through ``ActionExecutor`` as a model's call;
* ``IPythonInterpreter cell``: one cell in a running session, through
  ``ActionExecutor``.

Printed: milliseconds per call and the ratio to the bare subprocess. No target:
the figures say what a call costs on this machine.

Run: ``python benchmarks/sandbox_overhead.py [--repeats 20] [--python PATH]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from lagent.actions import ActionExecutor, IPythonInterpreter, PythonInterpreter
from lagent.actions._sandbox import SandboxLimits, run_in_sandbox
from lagent.actions._sandbox_users import RunAs

CODE = 'sum(range(1000))'
EXPECTED = '499500'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--python', default=sys.executable, help='interpreter the code runs with')
    options = parser.parse_args()

    interpreter = PythonInterpreter(python=options.python, timeout=30)
    session = IPythonInterpreter(python=options.python, timeout=30)
    executor = ActionExecutor([interpreter, session], timeout=60)

    def bare() -> str:
        completed = subprocess.run(
            [interpreter.python, '-I', '-c', f'print({CODE})'], capture_output=True, text=True, check=True
        )
        return completed.stdout.strip()

    def without_namespaces() -> str:
        result = run_in_sandbox(CODE, SandboxLimits(), python=interpreter.python, run_as=RunAs(), namespaces=False)
        return result.value or ''

    def full() -> str:
        return executor.execute('PythonInterpreter', {'command': CODE}).format_result()

    def cell() -> str:
        return executor.execute('IPythonInterpreter', {'command': CODE}).format_result()

    contenders: dict[str, Callable[[], str]] = {
        'bare subprocess': bare,
        'sandbox, no namespaces': without_namespaces,
        'PythonInterpreter': full,
        'IPythonInterpreter cell': cell,
    }
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for name, run in contenders.items():  # warm up: caches, the session's start, the interpreter probe
        assert run() == EXPECTED, f'{name} returned {run()!r}'
    for _ in range(options.repeats):
        for name, run in contenders.items():
            started = time.perf_counter()
            output = run()
            timings[name].append(time.perf_counter() - started)
            assert output == EXPECTED, f'{name} returned {output!r}'
    executor.close()

    base = statistics.median(timings['bare subprocess'])
    print(f'interpreter: {interpreter.python} (run as {interpreter.run_as}); medians of {options.repeats} calls')
    for name, values in timings.items():
        median = statistics.median(values)
        print(f'{name:26s} {median * 1000:8.1f} ms   {median / base:5.2f}x bare subprocess')


if __name__ == '__main__':
    main()
