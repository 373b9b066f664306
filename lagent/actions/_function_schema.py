"""Turn a Python signature into a pydantic model and a JSON schema, and
validate a model's arguments against it.

Every parameter needs a type hint; descriptions come, in this order of
precedence, from ``Field(description=...)`` (as the default or inside
``Annotated``), a plain string inside ``Annotated``, and the docstring.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic.fields import FieldInfo

from lagent.actions._docstring import ParsedDocstring

__all__ = ['FunctionSchema', 'ToolArgumentsError', 'build_function_schema', 'underlying_function']

_SCHEMA_CHILDREN = ('items', 'additionalProperties', 'not', 'contains', 'propertyNames')
_SCHEMA_LISTS = ('anyOf', 'allOf', 'oneOf', 'prefixItems')
_SCHEMA_MAPS = ('properties', '$defs', 'patternProperties')


class ToolArgumentsError(ValueError):
    """The arguments given to a tool do not match its parameters.

    The message says which argument is wrong and what was expected, so that a
    model reading it can correct its call.
    """


@dataclass(frozen=True)
class FunctionSchema:
    """The parameters of one function: a pydantic model that validates them and
    the JSON schema a model sees."""

    parameters: dict[str, Any]
    """JSON schema of the arguments object (titles removed)."""
    model: type[BaseModel]
    """Validates an arguments object; field ``p<i>`` holds parameter ``i`` (aliased to its name)."""
    field_names: dict[str, str]
    """Parameter name -> field name in :attr:`model`."""
    positional_only: tuple[str, ...]
    """Parameters that must be passed by position."""

    def validate(
        self, tool_name: str, arguments: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """Validate ``arguments`` and split them for the call.

        Args:
            tool_name: Name used in error messages.
            arguments: The arguments object the model produced.

        Returns:
            ``(args, kwargs, plain)``: what to call the function with, and the
            validated arguments as JSON-compatible data.

        Raises:
            ToolArgumentsError: The arguments are not valid; the message is meant for the model.
        """
        if not isinstance(arguments, Mapping):
            raise ToolArgumentsError(
                f'Arguments of tool {tool_name!r} must be a JSON object, got {type(arguments).__name__}. '
                f'{self.describe_expected()}'
            )
        try:
            instance = self.model.model_validate(dict(arguments))
        except ValidationError as exc:
            raise ToolArgumentsError(self._explain(tool_name, exc)) from None
        values = {name: getattr(instance, field) for name, field in self.field_names.items()}
        args = tuple(values.pop(name) for name in self.positional_only)
        plain = instance.model_dump(mode='json', by_alias=True, fallback=str)
        return args, values, plain

    def describe_expected(self) -> str:
        """One sentence listing the parameters with their JSON types, e.g.
        ``'Expected arguments: a (integer, required), b (integer, default 1).'``."""
        properties = self.parameters.get('properties', {})
        if not properties:
            return 'Expected no arguments: pass {}.'
        required = set(self.parameters.get('required', ()))
        parts = []
        for name, schema in properties.items():
            detail = _type_label(schema)
            if name in required:
                detail += ', required'
            elif 'default' in schema:
                detail += f', default {schema["default"]!r}'
            parts.append(f'{name} ({detail})')
        return 'Expected arguments: ' + ', '.join(parts) + '.'

    def _explain(self, tool_name: str, exc: ValidationError) -> str:
        problems = []
        for error in exc.errors(include_url=False):
            where = '.'.join(str(part) for part in error['loc']) or '(arguments)'
            if error['type'] == 'missing':
                problems.append(f'missing required argument {where!r}')
            elif error['type'] == 'extra_forbidden':
                problems.append(f'unexpected argument {where!r}')
            else:
                given = repr(error.get('input'))
                if len(given) > 80:
                    given = given[:77] + '...'
                problems.append(f'argument {where!r}: {error["msg"]} (got {given})')
        return f'Invalid arguments for tool {tool_name!r}: ' + '; '.join(problems) + '. ' + self.describe_expected()


def build_function_schema(
    function: Callable[..., Any],
    tool_name: str,
    docstring: ParsedDocstring,
    namespace: Mapping[str, Any] | None = None,
    *,
    untyped_as_str: bool = False,
) -> FunctionSchema:
    """Build the schema of ``function``'s parameters.

    A parameter without a type hint takes the type its docstring entry gives
    (``name (int): ...``); one with neither is an error, or a string when
    ``untyped_as_str`` (lagent's ``@tool_api``).

    Args:
        function: A plain function, a bound method or a coroutine function.
        tool_name: The tool's name, for error messages and the model's title.
        docstring: The parsed docstring, for parameter descriptions and types.
        namespace: Extra names for resolving string annotations.
        untyped_as_str: Treat parameters without any type as strings.

    Raises:
        TypeError: A parameter has no type hint, is ``*args``/``**kwargs``, or
            has a type pydantic cannot express in JSON schema; the message names it.
    """
    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(underlying_function(function), localns=dict(namespace or {}), include_extras=True)
    except Exception as exc:  # NameError for an unresolvable forward reference, and others
        raise TypeError(f'cannot resolve the type hints of tool {tool_name!r}: {exc}') from exc
    fields: dict[str, Any] = {}
    field_names: dict[str, str] = {}
    positional_only = []
    for index, parameter in enumerate(signature.parameters.values()):
        name = parameter.name
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(
                f'tool {tool_name!r} takes *{name}/**{name}: a tool needs named, typed parameters '
                'so that its JSON schema says what to pass'
            )
        hinted = hints.get(name, _docstring_type(docstring.types.get(name)))
        if hinted is None and untyped_as_str:
            hinted = str
        if hinted is None:
            hint = ' (decorate methods by subclassing BaseAction)' if name in ('self', 'cls') and index == 0 else ''
            raise TypeError(f'parameter {name!r} of tool {tool_name!r} has no type hint{hint}')
        annotation = _annotation_with_description(hinted, parameter, docstring.parameters.get(name))
        _check_expressible(annotation, name, tool_name)
        if parameter.kind == parameter.POSITIONAL_ONLY:
            positional_only.append(name)
        field = f'p{index}'
        field_names[name] = field
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[field] = (Annotated[annotation, Field(alias=name)], default)
    config = ConfigDict(extra='forbid', protected_namespaces=(), arbitrary_types_allowed=False)
    try:
        model = create_model(_model_name(tool_name), __config__=config, **fields)
        parameters = _strip_titles(model.model_json_schema())
        parameters.setdefault('required', [])  # always present: one shape for every tool
    except (PydanticSchemaGenerationError, PydanticUserError) as exc:
        raise TypeError(f'cannot build the JSON schema of tool {tool_name!r}: {exc}') from exc
    return FunctionSchema(parameters, model, field_names, tuple(positional_only))


def underlying_function(function: Callable[..., Any]) -> Callable[..., Any]:
    """The function whose annotations and docstring describe ``function``
    (the wrapped function of a ``functools.partial``, ``__call__`` of a callable object)."""
    while isinstance(function, functools.partial):
        function = function.func
    if not (inspect.isfunction(function) or inspect.ismethod(function) or inspect.isbuiltin(function)):
        function = type(function).__call__
    return function


_DOCSTRING_TYPES: tuple[tuple[str, type], ...] = (
    ('list', list),
    ('tuple', list),
    ('dict', dict),
    ('bool', bool),
    ('float', float),
    ('int', int),
    ('str', str),
)


def _docstring_type(text: str | None) -> Any:
    """The Python type a docstring names (``'int'``, ``':class:`str`'``, ``'List[str]'``, ``'float, optional'``),
    or ``None`` when it names none of str, int, float, bool, list, tuple and dict."""
    if not text:
        return None
    plain = re.sub(r':\w+:`~?([^`]+)`', r'\1', text).lower()
    optional = 'optional' in plain or 'none' in plain
    for word, kind in _DOCSTRING_TYPES:
        if re.search(rf'\b{word}\b', plain):
            return kind | None if optional else kind
    return None


def _annotation_with_description(annotation: Any, parameter: inspect.Parameter, from_docstring: str | None) -> Any:
    """Return the annotation without plain-string metadata and with the winning
    description attached as ``Field(description=...)``."""
    described: str | None = None
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        kept = []
        for item in metadata:
            if isinstance(item, str):
                described = described or item
                continue
            if isinstance(item, FieldInfo) and item.description:
                described = item.description
            kept.append(item)
        annotation = Annotated[(base, *kept)] if kept else base
    default = parameter.default
    if isinstance(default, FieldInfo) and default.description:
        described = default.description
    description = described or from_docstring
    if description:
        annotation = Annotated[annotation, Field(description=description)]
    return annotation


def _check_expressible(annotation: Any, name: str, tool_name: str) -> None:
    try:
        TypeAdapter(annotation).json_schema()
    except (PydanticSchemaGenerationError, PydanticUserError) as exc:
        raise TypeError(
            f'parameter {name!r} of tool {tool_name!r} has a type without a JSON schema ({annotation!r}): '
            'use str, int, float, bool, list, dict, Literal, Optional or a pydantic model'
        ) from exc


def _model_name(tool_name: str) -> str:
    return ''.join(part[:1].upper() + part[1:] for part in tool_name.replace('-', '_').split('_')) + 'Arguments'


def _strip_titles(schema: Any) -> Any:
    """Remove pydantic's generated ``title`` keys from a JSON schema (not
    properties that happen to be named ``title``)."""
    if not isinstance(schema, dict):
        return schema
    cleaned = {key: value for key, value in schema.items() if key != 'title'}
    for key in _SCHEMA_CHILDREN:
        if isinstance(cleaned.get(key), dict):
            cleaned[key] = _strip_titles(cleaned[key])
    for key in _SCHEMA_LISTS:
        if isinstance(cleaned.get(key), list):
            cleaned[key] = [_strip_titles(item) for item in cleaned[key]]
    for key in _SCHEMA_MAPS:
        if isinstance(cleaned.get(key), dict):
            cleaned[key] = {name: _strip_titles(item) for name, item in cleaned[key].items()}
    return cleaned


def _type_label(schema: dict[str, Any]) -> str:
    if 'enum' in schema:
        return 'one of ' + ', '.join(repr(value) for value in schema['enum'])
    if 'const' in schema:
        return repr(schema['const'])
    if 'anyOf' in schema:
        return ' or '.join(_type_label(option) for option in schema['anyOf'])
    if '$ref' in schema:
        return 'object ' + schema['$ref'].rsplit('/', 1)[-1]
    kind = schema.get('type', 'any')
    if kind == 'array' and isinstance(schema.get('items'), dict):
        return f'array of {_type_label(schema["items"])}'
    return str(kind)
