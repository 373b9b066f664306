"""How a :class:`~lagent.actions.BaseAction` called the lagent 0.2 way
(``action(inputs, name)``) reads ``inputs`` into arguments.

* :class:`AutoParser` (the default): a JSON object (or a dict) holds the
  arguments; any other text is the value of the tool's first parameter, as
  in lagent 0.1 (``PythonInterpreter()('print(1)')``).
* :class:`JsonParser`: a JSON object or dict only.
* :class:`TupleParser`: a Python tuple literal (or a tuple), by position.
* :class:`BaseParser`: the whole input is the first parameter's value.

Arguments are then validated against the tool's schema like any other call.
"""

from __future__ import annotations

import ast
import json
import re
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from lagent.actions.base_action import BaseAction

__all__ = ['AutoParser', 'BaseParser', 'JsonParser', 'ParseError', 'TupleParser', 'read_arguments']

_JSON_FENCE = re.compile(r'^\s*```(?:json)?\s*\n(?P<body>.*?)\n?\s*```\s*$', re.S)


class ParseError(Exception):
    """The input cannot be read into arguments.

    Args:
        err_msg: What is wrong with it, worded for the model.
    """

    def __init__(self, err_msg: str):
        super().__init__(err_msg)
        self.err_msg = err_msg


class BaseParser:
    """Reads an action's input into the arguments of one of its tools.

    Args:
        action: The action whose tools' parameters the input is read for.
    """

    PARAMETER_DESCRIPTION: ClassVar[str] = ''
    """How to pass arguments, added to the tool descriptions as ``parameter_description``."""

    def __init__(self, action: BaseAction):
        self.action = action

    def parameters(self, name: str = 'run') -> tuple[list[str], list[str]]:
        """The parameter names of tool method ``name`` (all of them, and the required ones).

        Raises:
            ParseError: The action has no such tool.
        """
        tool = self.action.tool_for(name)
        if tool is None:
            raise ParseError(f'invalid API: {name}')
        schema = tool.parameters
        return list(schema.get('properties') or {}), list(schema.get('required') or [])

    def parse_inputs(self, inputs: Any, name: str = 'run') -> dict[str, Any]:
        """Return the arguments for tool method ``name``.

        Raises:
            ParseError: The input cannot be read.
        """
        names, _ = self.parameters(name)
        if not names:
            return {}
        return {names[0]: inputs}

    def parse_outputs(self, outputs: Any) -> list[dict[str, Any]]:
        """Return a tool's output as result items (``[{'type': 'text', 'content': ...}]``)."""
        from lagent.actions.executor import result_text

        return [{'type': 'text', 'content': result_text(outputs)}]


class JsonParser(BaseParser):
    """Arguments as a JSON object (optionally in a ```json fence) or a dict."""

    PARAMETER_DESCRIPTION = 'Pass the arguments as a JSON object {"parameter name": value}.'

    def parse_inputs(self, inputs: Any, name: str = 'run') -> dict[str, Any]:
        if isinstance(inputs, dict):
            arguments = inputs
        else:
            arguments = _json_object(inputs)
            if arguments is None:
                raise ParseError(f'invalid json format: {inputs}')
        names, required = self.parameters(name)
        unknown = set(arguments) - set(names)
        if unknown:
            raise ParseError(f'unknown arguments: {sorted(unknown)}')
        missing = set(required) - set(arguments)
        if missing:
            raise ParseError(f'missing required arguments: {sorted(missing)}')
        return dict(arguments)


class AutoParser(BaseParser):
    """A JSON object or dict holds the arguments; anything else is the first parameter's value."""

    def parse_inputs(self, inputs: Any, name: str = 'run') -> dict[str, Any]:
        return read_arguments(inputs, self.parameters(name)[0])


class TupleParser(BaseParser):
    """Arguments by position, as a Python tuple literal (``("text", 2)``) or a tuple."""

    PARAMETER_DESCRIPTION = 'Pass the arguments by position as a tuple (arg1, arg2, ...).'

    def parse_inputs(self, inputs: Any, name: str = 'run') -> dict[str, Any]:
        if not isinstance(inputs, tuple):
            try:
                inputs = ast.literal_eval(inputs)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                raise ParseError(f'invalid tuple format: {inputs}') from exc
            if not isinstance(inputs, tuple):
                inputs = (inputs,)
        names, required = self.parameters(name)
        if len(inputs) < len(required):
            raise ParseError(f'the API takes {len(required)} required arguments, {len(inputs)} given')
        if len(inputs) > len(names):
            raise ParseError(f'the API takes at most {len(names)} arguments, {len(inputs)} given')
        return dict(zip(names, inputs, strict=False))


def read_arguments(inputs: Any, parameters: list[str]) -> dict[str, Any]:
    """Arguments from a model's input: a dict or a JSON object as they are (checked
    later, against the tool's schema); ``None`` as none; anything else as the
    value of the first of ``parameters``."""
    if inputs is None:
        return {}
    if isinstance(inputs, dict):
        return dict(inputs)
    arguments = _json_object(inputs)
    if arguments is not None:
        return arguments
    return {parameters[0]: inputs} if parameters else {}


def _json_object(text: Any) -> dict[str, Any] | None:
    """The JSON object ``text`` holds (inside a ```json fence or not), or ``None``."""
    if not isinstance(text, (str, bytes)):
        return None
    if isinstance(text, bytes):
        text = text.decode('utf-8', 'replace')
    fenced = _JSON_FENCE.match(text)
    if fenced:
        text = fenced['body']
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
