"""Reusable daemon threads for the blocking side of async streams.

An async call on an in-process engine runs the engine's blocking iterator in
a worker thread. Starting a thread makes the caller wait until the new thread
is scheduled, which on a busy machine costs the event loop milliseconds per
request; an idle thread of this pool takes the job at once. The threads are
daemons, so a worker stuck in a long read never holds up interpreter exit, and
one that waits idle for a minute ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ['DaemonThreadPool', 'stream_threads']

_IDLE_S = 60.0


class DaemonThreadPool:
    """Runs jobs on daemon threads, reusing idle ones and starting more when none is free.

    Args:
        name: Prefix of the threads' names.
    """

    def __init__(self, name: str):
        self.name = name
        self._jobs: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job, less the jobs already queued for them
        self._started = 0

    def submit(self, job: Callable[[], object]) -> None:
        """Run ``job`` on an idle thread, or on a new one if none is idle."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._jobs.put(job)
                return
            self._started += 1
            number = self._started
        threading.Thread(target=self._work, args=(job,), name=f'{self.name}-{number}', daemon=True).start()

    def _work(self, job: Callable[[], object]) -> None:
        while True:
            job()
            del job  # drop the finished job's references while idle
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=_IDLE_S)
            except queue.Empty:
                with self._lock:
                    try:
                        job = self._jobs.get_nowait()  # queued for this thread just as it timed out
                    except queue.Empty:
                        self._idle -= 1
                        return


stream_threads = DaemonThreadPool('lagent-stream')
"""The pool that runs the blocking iterators of :func:`lagent.llms.base.iterate_in_thread`."""
