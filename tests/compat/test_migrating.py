"""The table of lagent 0.2's public names in docs/migrating.md is true: every
name it says resolves imports from where it says, every name it says is gone
has a reason and is indeed gone, and the counts in the text are the table's."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / 'docs' / 'migrating.md'
_ROW = re.compile(r'^\| `(?P<name>[^`]+)` \| `(?P<module>[^`]+)` \| (?P<now>[^|]+) \| (?P<notes>.*) \|$', re.M)


def rows() -> list[dict[str, str]]:
    return [match.groupdict() for match in _ROW.finditer(PAGE.read_text(encoding='utf-8'))]


def test_the_table_lists_every_name_once_and_the_counts_match() -> None:
    found = rows()
    names = [row['name'] for row in found]
    assert len(names) == len(set(names)) == 101
    resolved = sum(row['now'].strip() != 'gone' for row in found)
    text = PAGE.read_text(encoding='utf-8')
    assert f'101\nnames. {resolved} resolve' in text and f'{101 - resolved} are gone' in text
    assert resolved >= 90


@pytest.mark.parametrize('row', rows(), ids=lambda row: row['name'])
def test_each_name_resolves_or_is_gone_for_a_reason(row: dict[str, str]) -> None:
    now = row['now'].strip()
    if now == 'gone':
        assert len(row['notes'].strip()) > 20, 'a gone name needs its reason'
        try:
            module = importlib.import_module(row['module'])
        except ModuleNotFoundError:
            return
        assert not hasattr(module, row['name']), f'{row["name"]} is not gone: the table is out of date'
        return
    module_name, _, name = now.strip('`').rpartition('.')
    assert name == row['name']
    assert hasattr(importlib.import_module(module_name), name)
