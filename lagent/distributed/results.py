"""The results file of a batch: one JSON object a line, each task id at most once."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import IO, Any

from lagent.distributed.tasks import TaskId, check_task_id

try:  # POSIX; elsewhere two batches on one file are not prevented
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ['ResultsFile']

logger = logging.getLogger(__name__)


class ResultsFile:
    """Appends results to a JSONL file, each task id at most once, and knows the
    ids already there (so an interrupted batch resumes where it stopped).

    Opening it (``with ResultsFile(path) as results:``) creates the file if
    needed, takes an exclusive lock on it (a second batch writing the same file
    would duplicate ids), and reads the ids already written. A last line cut
    off mid-write (the writer was killed) is removed, so that task runs again;
    any other line that is not a result is an error, never skipped.

    Args:
        path: The JSONL file.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self._file: IO[bytes] | None = None
        self._done: set[TaskId] = set()

    def __enter__(self) -> ResultsFile:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def done_ids(self) -> frozenset[TaskId]:
        """The ids of the results in the file."""
        return frozenset(self._done)

    def open(self) -> None:
        """Lock the file and read the ids already in it.

        Raises:
            ValueError: Another batch is writing the file, or a line of it is not
                a result (a JSON object with a string or integer ``id``), or an id
                appears twice.
            OSError: The file cannot be opened.
        """
        file = open(self.path, 'a+b')  # noqa: SIM115 - held open until close()
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise ValueError(f'{self.path} is being written by another batch') from None
            file.seek(0)
            self._done = self._read_ids(file)
        except BaseException:
            file.close()
            raise
        self._file = file

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one result as a line and flush it to the file at once.

        Raises:
            ValueError: The record has no valid ``id``, or its id is already in the file.
        """
        if self._file is None:
            raise ValueError('the results file is not open')
        task_id = check_task_id(record.get('id'), 'a result')
        if task_id in self._done:
            raise ValueError(f'{self.path} already holds a result for id {json.dumps(task_id)}')
        self._file.write((json.dumps(record, ensure_ascii=False) + '\n').encode('utf-8'))
        self._file.flush()
        self._done.add(task_id)

    def close(self) -> None:
        """Flush and close the file (which releases the lock)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _read_ids(self, file: IO[bytes]) -> set[TaskId]:
        data = file.read()
        lines = data.split(b'\n')
        tail = lines.pop()  # after the last newline: b'' for a whole file
        done: set[TaskId] = set()
        for number, line in enumerate(lines, 1):
            if line.strip():
                self._add_id(done, _parse(line), f'{self.path}:{number}')
        if tail.strip():
            record = _parse(tail)
            where = f'{self.path}:{len(lines) + 1}'
            if record is None:
                logger.warning('%s: removing a last line cut off mid-write; that task runs again', where)
                file.truncate(len(data) - len(tail))
            else:
                self._add_id(done, record, where)
                file.write(b'\n')  # a whole last line without its newline: complete it before appending
                file.flush()
        return done

    @staticmethod
    def _add_id(done: set[TaskId], record: Any, where: str) -> None:
        if not isinstance(record, dict) or 'id' not in record:
            raise ValueError(f'{where}: not a result line (a JSON object with an "id"); fix or remove it')
        task_id = check_task_id(record['id'], where)
        if task_id in done:
            raise ValueError(f'{where}: id {json.dumps(task_id)} appears twice')
        done.add(task_id)


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None
