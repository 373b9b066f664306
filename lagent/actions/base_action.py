"""``BaseAction``: a class whose documented public methods are tools.

Tool names:

* a method named ``run`` is called by the action's name (the class name
  unless ``name=`` is given): ``Calculator().run`` -> ``'Calculator'``;
* any other method is ``'<action name>_<method>'``:
  ``Weather().forecast`` -> ``'Weather_forecast'``.

The rule depends only on the method, so adding a method to a class never
renames the tools it already had.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from types import FunctionType, TracebackType
from typing import Any, ClassVar

from lagent.actions._legacy_description import legacy_description
from lagent.actions._registry import TOOL_REGISTRY
from lagent.actions.parser import AutoParser, BaseParser, ParseError
from lagent.actions.tool import TOOL_NAME_PATTERN, Tool, is_tool_api, tool_api
from lagent.schema import ActionReturn, ActionStatusCode

__all__ = ['TOOL_REGISTRY', 'BaseAction', 'tool_api']


class BaseAction:
    """A group of tools sharing state: each public method with a docstring is a tool.

    Subclass it and write typed, documented methods::

        class Weather(BaseAction):
            '''Weather reports.'''

            def forecast(self, city: str, days: int = 1) -> str:
                '''Forecast the weather.

                Args:
                    city: The city name.
                    days: How many days ahead.
                '''
                ...

    Methods whose names start with ``_``, methods without a docstring, and
    the methods of ``BaseAction`` itself (``close``...) are not tools. Set the class
    attribute :attr:`tool_methods` to choose the tool methods explicitly; in a
    class that marks methods with :func:`~lagent.actions.tool_api` (lagent
    0.2), the marked methods are the tools. Every subclass is registered by
    name (see :func:`~lagent.actions.get_tool`).

    lagent 0.2 code runs unchanged: ``BaseAction(description, parser, enable)``,
    :attr:`description` in the 0.2 format, :attr:`is_toolkit`, :attr:`enable`,
    and calling the action (see :meth:`__call__`).

    Args:
        description: A lagent 0.2 description dict to report instead of the one
            derived from the methods; a string is taken as ``name``.
        parser: How :meth:`__call__` reads its input (a
            :class:`~lagent.actions.parser.BaseParser` subclass; default
            :class:`~lagent.actions.parser.AutoParser`).
        enable: Whether the action is offered (``ActionExecutor.get_actions_info``
            and the lagent 0.2 call path skip disabled actions).
        name: The action's name, used to name its tools (see the module
            docstring); defaults to the class name.

    Raises:
        ValueError: ``name`` is not a valid tool name.
    """

    tool_methods: ClassVar[tuple[str, ...] | None] = None
    """Names of the methods that are tools; ``None``: every public documented method."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        TOOL_REGISTRY.register(cls)

    def __init__(
        self,
        description: Mapping[str, Any] | str | None = None,
        parser: type[BaseParser] | None = None,
        enable: bool = True,
        *,
        name: str | None = None,
    ):
        if isinstance(description, str):
            name, description = name or description, None
        if name is None and description is not None:
            name = description.get('name')
        if name is not None and not TOOL_NAME_PATTERN.match(name):
            raise ValueError(f'invalid action name {name!r}: use 1 to 64 letters, digits, "_" or "-"')
        self._name = name
        self._given_description = copy.deepcopy(dict(description)) if description is not None else None
        self._parser_class = parser or AutoParser
        self._parser: BaseParser | None = None
        self._enable = enable
        self._tools: list[Tool] | None = None

    @property
    def name(self) -> str:
        """The action's name (the class name unless given)."""
        return getattr(self, '_name', None) or type(self).__name__

    @property
    def enable(self) -> bool:
        """Whether the action is offered to models."""
        return getattr(self, '_enable', True)

    @property
    def tools(self) -> list[Tool]:
        """The action's tools, bound to this instance (built once, on first use).

        Raises:
            TypeError: A tool method lacks a type hint or has an unsupported type.
            ValueError: A tool name is invalid.
        """
        if getattr(self, '_tools', None) is None:
            self._tools = [self._make_tool(method) for method in self._tool_method_names()]
        return list(self._tools)

    def tool_for(self, method: str) -> Tool | None:
        """The tool made from method ``method`` (``'run'``: the action's own tool), or ``None``."""
        wanted = self._tool_name(method)
        return next((tool for tool in self.tools if tool.name == wanted), None)

    @property
    def is_toolkit(self) -> bool:
        """Whether the action offers tools other than ``run`` (lagent 0.2's "toolkit")."""
        return any(tool.name != self.name for tool in self.tools)

    @property
    def parser(self) -> BaseParser:
        """The parser :meth:`__call__` reads its input with."""
        if getattr(self, '_parser', None) is None:
            self._parser = getattr(self, '_parser_class', AutoParser)(self)
        return self._parser

    @property
    def description(self) -> dict[str, Any]:
        """The action in lagent 0.2's description format: ``name``, ``description``,
        ``parameters`` and ``required``, or for a toolkit ``api_list`` with one such
        entry per tool method; each with the parser's ``parameter_description``."""
        given = getattr(self, '_given_description', None)
        if given is not None:
            return copy.deepcopy(given)
        extra = (
            {'parameter_description': self.parser.PARAMETER_DESCRIPTION} if self.parser.PARAMETER_DESCRIPTION else {}
        )
        if not self.is_toolkit:
            [tool] = self.tools or [None]
            if tool is None:
                return {
                    'name': self.name,
                    'description': inspect.getdoc(type(self)) or '',
                    'parameters': [],
                    'required': [],
                }
            return {**_described(tool, self.name), **extra}
        apis = [{**_described(tool, tool.name[len(self.name) + 1 :]), **extra} for tool in self.tools]
        return {'name': self.name, 'description': inspect.getdoc(type(self)) or '', 'api_list': apis}

    def __call__(self, inputs: Any = None, name: str = 'run') -> ActionReturn:
        """Run tool method ``name`` on ``inputs``, the lagent 0.2 way; never raises.

        Args:
            inputs: The input as the model wrote it, read by :attr:`parser` (by
                default a JSON object of arguments, or the first parameter's value).
            name: The tool method (``'run'``: the action's own tool).

        Returns:
            The result, or why the call failed (see :class:`~lagent.actions.ActionExecutor`).
        """
        from lagent.actions.executor import ActionExecutor

        fallback = {'inputs': inputs, 'name': name}
        tool = self.tool_for(name)
        if tool is None:
            return ActionReturn(
                fallback, type=self.name, errmsg=f'invalid API: {name}', state=ActionStatusCode.API_ERROR
            )
        try:
            arguments = self.parser.parse_inputs(inputs, name)
        except ParseError as exc:
            return ActionReturn(fallback, type=self.name, errmsg=exc.err_msg, state=ActionStatusCode.ARGS_ERROR)
        return ActionExecutor([self], timeout=None).execute(tool.name, arguments)

    def close(self) -> None:
        """Release what the action holds (child processes, connections); the default holds nothing."""

    def __enter__(self) -> BaseAction:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name={self.name!r})'

    def _tool_method_names(self) -> list[str]:
        cls = type(self)
        if cls.tool_methods is not None:
            for method in cls.tool_methods:
                if not callable(getattr(cls, method, None)):
                    raise ValueError(f'{cls.__name__}.tool_methods names {method!r}, which is not a method')
            return list(cls.tool_methods)
        documented: list[str] = []
        marked: list[str] = []
        for klass in reversed(cls.__mro__):
            if not issubclass(klass, BaseAction) or klass is BaseAction:
                continue
            for method, value in vars(klass).items():
                if not isinstance(value, FunctionType) or method.startswith('_') or hasattr(BaseAction, method):
                    continue
                if is_tool_api(getattr(cls, method)) and method not in marked:
                    marked.append(method)
                if (getattr(cls, method).__doc__ or '').strip() and method not in documented:
                    documented.append(method)
        return marked or documented

    def _tool_name(self, method: str) -> str:
        return self.name if method == 'run' else f'{self.name}_{method}'

    def _make_tool(self, method: str) -> Tool:
        tool_name = self._tool_name(method)
        if not TOOL_NAME_PATTERN.match(tool_name):
            raise ValueError(
                f'tool name {tool_name!r} of {type(self).__name__}.{method} is invalid: '
                'use 1 to 64 letters, digits, "_" or "-" (pass a shorter name=)'
            )
        bound = getattr(self, method)
        description = None
        if method == 'run' and not _summary(bound):
            description = inspect.getdoc(type(self)) or None
        return Tool(bound, name=tool_name, description=description, untyped_as_str=method == 'run' or None)


def _summary(function: Any) -> str:
    from lagent.actions._docstring import parse_docstring

    return parse_docstring(inspect.getdoc(function)).description


def _described(tool: Tool, name: str) -> dict[str, Any]:
    described = legacy_description(name, tool.description, tool.parameters)
    return_data = (getattr(tool.function, 'api_description', None) or {}).get('return_data')
    if return_data:
        described['return_data'] = return_data
    return described
