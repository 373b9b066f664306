"""Tools described in lagent 0.2's format, for ``api_description``,
``BaseAction.description`` and ``ActionExecutor.get_actions_info()``.

The format::

    {'name': 'bold', 'description': 'Make text bold.',
     'parameters': [{'name': 'text', 'type': 'STRING', 'description': 'The text.'}],
     'required': ['text']}

It is derived from the same JSON schema that native tool calling sends, so
both descriptions of a tool always agree.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any

from lagent.actions._docstring import parse_docstring

__all__ = ['TYPE_LABELS', 'api_description_of', 'legacy_description']

TYPE_LABELS = {
    'string': 'STRING',
    'integer': 'NUMBER',
    'number': 'FLOAT',
    'boolean': 'BOOLEAN',
    'array': 'Array',
    'object': 'OBJECT',
}
"""JSON schema types and the words lagent 0.2 used for them."""

_RETURN_ENTRY = re.compile(r'^[-*+#.\s]*(?P<name>\w+)\s*(?:\((?P<type>[^()]*)\))?\s*:\s*(?P<text>.*)$')


def legacy_description(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool in lagent 0.2's format.

    Args:
        name: The name the model calls the tool by.
        description: What the tool does.
        parameters: The JSON schema of its arguments object.
    """
    listed = []
    for parameter, schema in (parameters.get('properties') or {}).items():
        listed.append(
            {
                'name': parameter,
                'type': TYPE_LABELS.get(_json_type(schema), 'STRING'),
                'description': schema.get('description', ''),
            }
        )
    return {
        'name': name,
        'description': description,
        'parameters': listed,
        'required': list(parameters.get('required') or []),
    }


def api_description_of(
    function: Callable[..., Any], *, explode_return: bool = False, returns_named_value: bool = False
) -> dict[str, Any]:
    """The lagent 0.2 description of a function or method (its ``self`` left out).

    Raises:
        TypeError: A parameter's type has no JSON schema.
    """
    from lagent.actions.tool import Tool

    parameters = list(inspect.signature(function).parameters)
    target: Callable[..., Any] = function
    if parameters and parameters[0] in ('self', 'cls'):
        target = functools.partial(function, None)
    docstring = inspect.getdoc(function)
    summary = parse_docstring(docstring).description
    tool = Tool(target, name=function.__name__, description=summary or function.__name__, untyped_as_str=True)
    described = legacy_description(function.__name__, summary, tool.parameters)
    returns = _return_data(docstring, explode=explode_return) if explode_return or returns_named_value else []
    if returns:
        described['return_data'] = returns
    return described


def _json_type(schema: dict[str, Any]) -> str:
    if 'type' in schema:
        return str(schema['type'])
    for option in schema.get('anyOf', ()):
        if option.get('type') not in (None, 'null'):
            return str(option['type'])
    return 'string'


def _return_data(docstring: str | None, *, explode: bool) -> list[dict[str, str]]:
    """The entries of the ``Returns:`` section: each ``name (type): text`` line,
    or with ``explode`` the bullet lines under its first entry."""
    lines = _section(docstring, 'returns')
    if explode:
        lines = [line for line in lines[1:] if line.strip()]
    else:
        indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
        lines = [line for line in lines if line.strip() and len(line) - len(line.lstrip()) == min(indents, default=0)]
    entries = []
    for line in lines:
        match = _RETURN_ENTRY.match(line.strip())
        if not match:
            continue
        entry = {'name': match['name'], 'description': match['text'].strip()}
        if match['type']:
            entry['type'] = _type_label(match['type'])
        entries.append(entry)
    return entries


def _section(docstring: str | None, title: str) -> list[str]:
    lines = inspect.cleandoc(docstring or '').splitlines()
    for index, line in enumerate(lines):
        if line.strip().lower() == f'{title}:':
            body = []
            for following in lines[index + 1 :]:
                if following.strip() and not following[0].isspace():
                    break
                body.append(following)
            return body
    return []


def _type_label(text: str) -> str:
    plain = text.lower()
    if 'list' in plain:
        return 'Array'
    for word, label in (('float', 'FLOAT'), ('int', 'NUMBER'), ('bool', 'BOOLEAN'), ('dict', 'OBJECT')):
        if word in plain:
            return label
    return 'STRING'
