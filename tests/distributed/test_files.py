"""The tasks file and the results file of a batch: checking, resuming, exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lagent.distributed import ResultsFile, Task, load_tasks


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text(''.join(line + '\n' for line in lines), encoding='utf-8')
    return path


# ---------------------------------------------------------------------- tasks


def test_tasks_are_read_in_order_with_string_and_integer_ids(tmp_path: Path) -> None:
    path = write_lines(tmp_path / 't.jsonl', '{"id": 1, "question": "a"}', '', '{"id": "b", "question": "b", "x": 1}')
    assert load_tasks(path) == [Task(id=1, question='a'), Task(id='b', question='b')]
    assert load_tasks([{'id': 2, 'question': 'q'}, Task(id=3, question='r')]) == [Task(2, 'q'), Task(3, 'r')]


@pytest.mark.parametrize(
    ('line', 'message'),
    [
        ('not json', 'not valid JSON'),
        ('[1, 2]', 'a task must be a JSON object'),
        ('{"question": "q"}', 'the task has no "id"'),
        ('{"id": true, "question": "q"}', '"id" must be a string or an integer, got true'),
        ('{"id": 1.5, "question": "q"}', '"id" must be a string or an integer, got 1.5'),
        ('{"id": 2}', '"question" must be a string, got null'),
        ('{"id": 2, "question": ["q"]}', '"question" must be a string'),
        ('{"id": 1, "question": "again"}', 'id 1 is used twice (first at t.jsonl:1)'),
    ],
)
def test_bad_task_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path / 't.jsonl', '{"id": 1, "question": "q"}', line)
    with pytest.raises(ValueError) as info:
        load_tasks(path)
    assert str(info.value).startswith(f'{path}:2: '), info.value
    assert message in str(info.value).replace(str(tmp_path) + '/', '')


def test_integer_and_string_ids_are_different_tasks() -> None:
    assert len(load_tasks([{'id': 1, 'question': 'a'}, {'id': '1', 'question': 'b'}])) == 2


# ---------------------------------------------------------------------- results


def test_results_are_appended_one_line_each_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / 'out.jsonl'
    with ResultsFile(path) as results:
        assert results.done_ids == frozenset()
        results.write({'id': 1, 'answer': 'é'})
        results.write({'id': 'two', 'answer': 'b'})
        assert path.read_text(encoding='utf-8').count('\n') == 2  # flushed at once, before close
        with pytest.raises(ValueError, match='already holds a result for id 1'):
            results.write({'id': 1, 'answer': 'again'})
        with pytest.raises(ValueError, match='"id" must be a string or an integer'):
            results.write({'answer': 'no id'})
    with ResultsFile(path) as results:
        assert results.done_ids == {1, 'two'}
    assert [json.loads(line)['answer'] for line in path.read_text(encoding='utf-8').splitlines()] == ['é', 'b']


def test_a_last_line_cut_off_mid_write_is_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / 'out.jsonl'
    path.write_bytes(b'{"id": 1, "answer": "a"}\n{"id": 2, "answ')
    with ResultsFile(path) as results:
        assert results.done_ids == {1}
        results.write({'id': 2, 'answer': 'b'})
    assert path.read_text().splitlines() == ['{"id": 1, "answer": "a"}', '{"id": 2, "answer": "b"}']
    assert 'cut off mid-write' in caplog.text


def test_a_whole_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / 'out.jsonl'
    path.write_bytes(b'{"id": 1, "answer": "a"}')
    with ResultsFile(path) as results:
        assert results.done_ids == {1}
        results.write({'id': 2, 'answer': 'b'})
    assert path.read_text().splitlines() == ['{"id": 1, "answer": "a"}', '{"id": 2, "answer": "b"}']


@pytest.mark.parametrize(
    ('content', 'message'),
    [
        (b'garbage\n{"id": 1}\n', 'out.jsonl:1: not a result line'),
        (b'{"id": 1}\n{"answer": "x"}\n', 'out.jsonl:2: not a result line'),
        (b'{"id": 1}\n{"id": 1}\n', 'out.jsonl:2: id 1 appears twice'),
        (b'{"id": [1]}\n', 'out.jsonl:1: "id" must be a string or an integer'),
    ],
)
def test_a_results_file_with_other_lines_is_refused_untouched(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / 'out.jsonl'
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        ResultsFile(path).open()
    assert message in str(info.value).replace(str(tmp_path) + '/', '')
    assert path.read_bytes() == content


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / 'out.jsonl'
    with ResultsFile(path):
        other = subprocess.run(
            [sys.executable, '-c', 'import sys; from lagent.distributed import ResultsFile; ResultsFile(sys.argv[1]).open()',
             str(path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode != 0
        assert 'is being written by another batch' in other.stderr
    ResultsFile(path).open()  # the lock went with the first writer
