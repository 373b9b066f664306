"""Read a tool's description and its parameters' descriptions from a docstring.

Google style (``Args:`` sections with ``name (type): text`` entries) and NumPy
style (``Parameters`` over a ``----------`` underline, ``name : type`` entries
with indented text) are understood. Only what a JSON schema needs is kept: the
text before the first section, and one line of text per parameter.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

__all__ = ['ParsedDocstring', 'parse_docstring']

_PARAMETER_SECTIONS = frozenset(
    {'args', 'arguments', 'parameters', 'params', 'keyword args', 'keyword arguments', 'other parameters'}
)
_GOOGLE_SECTIONS = _PARAMETER_SECTIONS | frozenset(
    {
        'attributes',
        'example',
        'examples',
        'note',
        'notes',
        'raises',
        'references',
        'return',
        'returns',
        'see also',
        'todo',
        'warning',
        'warnings',
        'yield',
        'yields',
    }
)
_GOOGLE_HEADER = re.compile(r'^(?P<title>[A-Za-z][A-Za-z ]*):\s*$')
_GOOGLE_ENTRY = re.compile(r'^\*{0,2}(?P<name>\w+)\s*(?:\((?P<type>(?:[^()]|\([^()]*\))*)\))?\s*:(?P<text>.*)$')
_NUMPY_UNDERLINE = re.compile(r'^-{3,}\s*$')
_NUMPY_ENTRY = re.compile(r'^(?P<names>\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)*)\s*(?::(?P<type>.*))?$')


@dataclass(frozen=True)
class ParsedDocstring:
    """What a docstring says about a function, for its tool schema."""

    description: str = ''
    """The text before the first section (summary and extended description)."""
    parameters: dict[str, str] = field(default_factory=dict)
    """Parameter name -> its description, whitespace collapsed to single spaces."""
    types: dict[str, str] = field(default_factory=dict)
    """Parameter name -> the type the docstring gives it (``'int'``, ``'list[str]'``...), when it gives one."""


def parse_docstring(docstring: str | None) -> ParsedDocstring:
    """Parse a Google- or NumPy-style docstring.

    Args:
        docstring: The raw docstring (indentation is removed here), or ``None``.

    Returns:
        The description and the parameter descriptions found.
    """
    if not docstring:
        return ParsedDocstring()
    lines = inspect.cleandoc(docstring).splitlines()
    description_end = len(lines)
    parameters: dict[str, str] = {}
    types: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        if _is_numpy_header(lines, index):
            description_end = min(description_end, index)
            body_end = _numpy_section_end(lines, index + 2)
            if line.strip().lower() in _PARAMETER_SECTIONS:
                parameters.update(_numpy_parameters(lines[index + 2 : body_end], types))
            index = body_end
            continue
        header = _GOOGLE_HEADER.match(line)
        if header and header['title'].strip().lower() in _GOOGLE_SECTIONS:
            description_end = min(description_end, index)
            body_end = _google_section_end(lines, index + 1)
            if header['title'].strip().lower() in _PARAMETER_SECTIONS:
                parameters.update(_google_parameters(lines[index + 1 : body_end], types))
            index = body_end
            continue
        index += 1
    description = '\n'.join(lines[:description_end]).strip()
    return ParsedDocstring(description=description, parameters=parameters, types=types)


def _is_numpy_header(lines: list[str], index: int) -> bool:
    line = lines[index]
    return (
        bool(line.strip())
        and not line[0].isspace()
        and index + 1 < len(lines)
        and bool(_NUMPY_UNDERLINE.match(lines[index + 1].strip()))
    )


def _numpy_section_end(lines: list[str], start: int) -> int:
    for index in range(start, len(lines)):
        if _is_numpy_header(lines, index):
            return index
    return len(lines)


def _google_section_end(lines: list[str], start: int) -> int:
    for index in range(start, len(lines)):
        line = lines[index]
        if line.strip() and not line[0].isspace():
            return index
    return len(lines)


def _google_parameters(body: list[str], types: dict[str, str]) -> dict[str, str]:
    indents = [len(line) - len(line.lstrip()) for line in body if line.strip()]
    if not indents:
        return {}
    entry_indent = min(indents)
    parameters: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in body:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        entry = _GOOGLE_ENTRY.match(line.strip()) if indent == entry_indent else None
        if entry:
            current = parameters.setdefault(entry['name'], [])
            current.append(entry['text'])
            if entry['type'] and entry['type'].strip():
                types[entry['name']] = entry['type'].strip()
        elif current is not None:
            current.append(line)
    return {name: _collapse(parts) for name, parts in parameters.items()}


def _numpy_parameters(body: list[str], types: dict[str, str]) -> dict[str, str]:
    parameters: dict[str, list[str]] = {}
    current: list[list[str]] = []
    for line in body:
        if not line.strip():
            continue
        entry = _NUMPY_ENTRY.match(line) if not line[0].isspace() else None
        if entry:
            names = [name.strip().lstrip('*') for name in entry['names'].split(',')]
            current = [parameters.setdefault(name, []) for name in names]
            if entry['type'] and entry['type'].strip():
                types.update(dict.fromkeys(names, entry['type'].strip()))
        else:
            for parts in current:
                parts.append(line)
    return {name: _collapse(parts) for name, parts in parameters.items()}


def _collapse(parts: list[str]) -> str:
    return ' '.join(' '.join(parts).split())
