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

import inspect
from types import FunctionType, TracebackType
from typing import ClassVar

from lagent.actions.tool import TOOL_NAME_PATTERN, Tool

__all__ = ['BaseAction']


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
    the methods of ``BaseAction`` itself (``close``...) are not tools. Set the
    class attribute :attr:`tool_methods` to choose the tool methods explicitly.

    Args:
        name: The action's name, used to name its tools (see the module
            docstring); defaults to the class name.

    Raises:
        ValueError: ``name`` is not a valid tool name.
    """

    tool_methods: ClassVar[tuple[str, ...] | None] = None
    """Names of the methods that are tools; ``None``: every public documented method."""

    def __init__(self, name: str | None = None):
        if name is not None and not TOOL_NAME_PATTERN.match(name):
            raise ValueError(f'invalid action name {name!r}: use 1 to 64 letters, digits, "_" or "-"')
        self._name = name
        self._tools: list[Tool] | None = None

    @property
    def name(self) -> str:
        """The action's name (the class name unless given)."""
        return getattr(self, '_name', None) or type(self).__name__

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
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            if not issubclass(klass, BaseAction) or klass is BaseAction:
                continue
            for method, value in vars(klass).items():
                if (
                    isinstance(value, FunctionType)
                    and not method.startswith('_')
                    and not hasattr(BaseAction, method)
                    and (getattr(cls, method).__doc__ or '').strip()
                    and method not in names
                ):
                    names.append(method)
        return names

    def _make_tool(self, method: str) -> Tool:
        tool_name = self.name if method == 'run' else f'{self.name}_{method}'
        if not TOOL_NAME_PATTERN.match(tool_name):
            raise ValueError(
                f'tool name {tool_name!r} of {type(self).__name__}.{method} is invalid: '
                'use 1 to 64 letters, digits, "_" or "-" (pass a shorter name=)'
            )
        bound = getattr(self, method)
        description = None
        if method == 'run' and not (bound.__doc__ or '').strip():
            description = inspect.getdoc(type(self)) or None
        return Tool(bound, name=tool_name, description=description)
