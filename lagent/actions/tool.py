"""``@tool``: a typed, documented function becomes a tool a model can call.

Example:
    >>> @tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two integers.
    ...
    ...     Args:
    ...         a: The first number.
    ...         b: The second number.
    ...     '''
    ...     return a + b
    >>> add.name, add.description
    ('add', 'Add two integers.')
    >>> add(1, 2)
    3
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, overload

from lagent.actions._docstring import parse_docstring
from lagent.actions._function_schema import (
    FunctionSchema,
    ToolArgumentsError,
    build_function_schema,
    underlying_function,
)

__all__ = ['TOOL_NAME_PATTERN', 'Tool', 'ToolArgumentsError', 'is_tool_api', 'tool', 'tool_api']

TOOL_NAME_PATTERN = re.compile(r'^[a-zA-Z0-9_-]{1,64}$')
"""Names OpenAI's function-calling API accepts; every tool name must match it."""


class Tool:
    """A callable with a name, a description and a JSON schema of its parameters.

    Calling the tool calls the function unchanged, without validation. Calls
    from a model go through :meth:`bind` (or :meth:`invoke`), which validate
    the arguments first; :class:`~lagent.actions.ActionExecutor` does that.

    Args:
        function: A function or bound method (sync or ``async``) with a type
            hint on every parameter.
        name: The tool's name; defaults to the function's ``__name__`` (so it is
            required for callables without one). Must match ``^[a-zA-Z0-9_-]{1,64}$``.
        description: What the tool does; defaults to the docstring's text before
            its first section (``Args:``, ``Returns:``...).
        namespace: Extra names for resolving string annotations (those of
            ``from __future__ import annotations``) besides the function's
            module; :func:`tool` passes its caller's local names.
        untyped_as_str: Take parameters that have neither a type hint nor a
            type in the docstring as strings (``None``: only for functions
            marked with :func:`tool_api`, as lagent 0.2 did).

    Raises:
        TypeError: A parameter has no type hint, is ``*args``/``**kwargs``, or
            its type has no JSON schema.
        ValueError: The name is not a valid tool name, or there is no description.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        namespace: Mapping[str, Any] | None = None,
        untyped_as_str: bool | None = None,
    ):
        if not callable(function):
            raise TypeError(f'a tool wraps a function, got {type(function).__name__}')
        self.function = function
        """The wrapped function."""
        self.name: str = name if name is not None else getattr(function, '__name__', '')
        """The name the model calls the tool by."""
        if not self.name:
            raise ValueError(f'{function!r} has no __name__: pass name=')
        if not TOOL_NAME_PATTERN.match(self.name):
            raise ValueError(f'invalid tool name {self.name!r}: use 1 to 64 letters, digits, "_" or "-"')
        docstring = parse_docstring(_docstring_of(function))
        self.description: str = (description if description is not None else docstring.description).strip()
        """What the tool does, for the model."""
        if not self.description:
            raise ValueError(
                f'tool {self.name!r} has no description: give the function a docstring or pass description='
            )
        self.is_async: bool = inspect.iscoroutinefunction(function)
        """Whether calling the function returns a coroutine."""
        if untyped_as_str is None:
            untyped_as_str = is_tool_api(function)
        self._schema: FunctionSchema = build_function_schema(
            function, self.name, docstring, namespace, untyped_as_str=untyped_as_str
        )
        functools.update_wrapper(self, function)

    @property
    def parameters(self) -> dict[str, Any]:
        """JSON schema of the arguments object (a fresh copy)."""
        return json.loads(json.dumps(self._schema.parameters))

    @property
    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI's format: ``{'type': 'function', 'function': {'name', 'description', 'parameters'}}``."""
        return {
            'type': 'function',
            'function': {'name': self.name, 'description': self.description, 'parameters': self.parameters},
        }

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validate the arguments a model produced.

        Args:
            arguments: The decoded JSON arguments object.

        Returns:
            The validated arguments as JSON-compatible data (values coerced to
            their declared types, defaults filled in).

        Raises:
            ToolArgumentsError: An argument is missing, unexpected or of the
                wrong type; the message names it and lists what is expected.
        """
        return self._schema.validate(self.name, arguments)[2]

    def invoke(self, arguments: Mapping[str, Any]) -> Any:
        """Validate ``arguments`` and call the function with them.

        Returns:
            What the function returns (a coroutine for an ``async`` tool).

        Raises:
            ToolArgumentsError: The arguments are not valid.
        """
        call, _ = self.bind(arguments)
        return call()

    def bind(self, arguments: Mapping[str, Any]) -> tuple[Callable[[], Any], dict[str, Any]]:
        """Validate ``arguments`` without calling the function yet.

        Returns:
            ``(call, validated)``: a zero-argument callable that runs the tool
            (returning a coroutine for an ``async`` tool), and the validated
            arguments as JSON-compatible data.

        Raises:
            ToolArgumentsError: The arguments are not valid.
        """
        args, kwargs, plain = self._schema.validate(self.name, arguments)
        return functools.partial(self.function, *args, **kwargs), plain

    def describe_arguments(self) -> str:
        """One sentence listing the parameters with their JSON types, for error
        messages: ``'Expected arguments: a (integer, required), b (integer, default 1).'``."""
        return self._schema.describe_expected()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f'Tool(name={self.name!r})'


def _docstring_of(function: Callable[..., Any]) -> str | None:
    """The docstring of the function behind ``function``; for a callable object
    without a documented ``__call__``, its class's."""
    docstring = inspect.getdoc(underlying_function(function))
    if docstring is None and not isinstance(function, functools.partial):
        docstring = inspect.getdoc(function)
    return docstring


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed, documented function into a :class:`Tool`.

    Use it bare (``@tool``) or with overrides (``@tool(name='search', description='...')``).
    The JSON schema comes from the type hints (``str``, ``int``, ``float``,
    ``bool``, ``list[...]``, ``dict[...]``, ``Literal``, ``Optional``/``X | None``,
    pydantic models, ``Annotated[T, 'description']`` or
    ``Annotated[T, Field(description=...)]``) and from the ``Args:`` (Google) or
    ``Parameters`` (NumPy) section of the docstring.

    Args:
        function: The function, when used as ``@tool``.
        name: Overrides the tool's name (default: the function's name).
        description: Overrides the description (default: from the docstring).

    Returns:
        The tool, or a decorator that makes one.

    Raises:
        TypeError: When decorating: a parameter has no type hint or an unsupported type.
        ValueError: When decorating: an invalid name, or no description.
    """
    namespace = sys._getframe(1).f_locals  # so that hints may name classes local to the caller
    if function is not None:
        return Tool(function, name=name, description=description, namespace=namespace)
    return functools.partial(Tool, name=name, description=description, namespace=namespace)


_TOOL_API_MARK = '__lagent_tool_api__'


def tool_api(
    function: Callable[..., Any] | None = None,
    /,
    *,
    explode_return: bool = False,
    returns_named_value: bool = False,
    **docstring_options: Any,
) -> Any:
    """Mark a function or a :class:`~lagent.actions.BaseAction` method as a tool,
    the lagent 0.2 way; :func:`tool` is the way of this package.

    The function is returned unchanged, with an ``api_description`` attribute in
    lagent 0.2's description format (``name``, ``description``, ``parameters``
    as a list of ``{'name', 'type', 'description'}``, ``required``, and
    ``return_data`` when asked for). In a ``BaseAction`` subclass that marks
    methods this way, exactly the marked methods (and ``run``) are tools.
    Parameters without a type hint take the type their docstring gives, else
    ``str``.

    Args:
        function: The function, when used as ``@tool_api``.
        explode_return: Describe the members of a dict return, listed under the
            first ``Returns:`` entry, in ``return_data``.
        returns_named_value: Read ``Returns:`` entries as ``name (type): description``
            into ``return_data``.
        **docstring_options: Accepted for compatibility and ignored.

    Returns:
        The function, or a decorator that marks one.
    """

    def mark(target: Callable[..., Any]) -> Callable[..., Any]:
        from lagent.actions._legacy_description import api_description_of

        setattr(target, _TOOL_API_MARK, True)
        target.api_description = api_description_of(  # type: ignore[attr-defined]
            target, explode_return=explode_return, returns_named_value=returns_named_value
        )
        return target

    if function is not None:
        return mark(function)
    return mark


def is_tool_api(function: Callable[..., Any]) -> bool:
    """Whether ``function`` (or the function behind a bound method or partial) was marked with :func:`tool_api`."""
    return bool(getattr(underlying_function(function), _TOOL_API_MARK, False))
