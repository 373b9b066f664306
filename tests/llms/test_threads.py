"""The daemon thread pool behind the async methods of in-process engines."""

from __future__ import annotations

import threading

from lagent.llms._threads import DaemonThreadPool


def _run(pool: DaemonThreadPool, job) -> None:
    done = threading.Event()
    pool.submit(lambda: (job(), done.set()))
    assert done.wait(10)


def test_an_idle_thread_is_reused() -> None:
    pool = DaemonThreadPool('test-pool')
    names: list[str] = []
    for _ in range(5):
        _run(pool, lambda: names.append(threading.current_thread().name))
    assert len(set(names)) == 1 and names[0].startswith('test-pool-')
    assert threading.current_thread().name not in names


def test_concurrent_jobs_get_threads_of_their_own_and_threads_are_daemons() -> None:
    pool = DaemonThreadPool('test-pool')
    release, started = threading.Event(), threading.Barrier(4)
    seen: list[tuple[str, bool]] = []

    def job() -> None:
        seen.append((threading.current_thread().name, threading.current_thread().daemon))
        started.wait(10)  # all four run at once, or this times out
        release.wait(10)

    for _ in range(3):
        pool.submit(job)
    started.wait(10)
    release.set()
    assert len({name for name, _ in seen}) == 3 and all(daemon for _, daemon in seen)
