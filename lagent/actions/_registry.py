"""Every :class:`~lagent.actions.BaseAction` subclass by name, as lagent 0.2's
``TOOL_REGISTRY``, ``list_tools()`` and ``get_tool()`` offered them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lagent.actions.base_action import BaseAction

__all__ = ['TOOL_REGISTRY', 'ToolRegistry', 'get_tool', 'get_tool_cls', 'list_tools']

logger = logging.getLogger(__name__)


class ToolRegistry(dict):
    """Action classes by name (a class's ``__tool_name__``, else its class name).

    A class defined again under a name already taken replaces the earlier one.
    """

    def register(self, cls: type[BaseAction]) -> None:
        """Add ``cls`` under its name."""
        name = getattr(cls, '__tool_name__', None) or cls.__name__
        if name in self and self[name] is not cls:
            logger.debug('tool %r re-registered by %s.%s', name, cls.__module__, cls.__qualname__)
        self[name] = cls

    def get_class(self, name: str) -> type[BaseAction]:
        """The action class called ``name``.

        Raises:
            KeyError: No action class has that name (the message lists the names).
        """
        try:
            return self[name]
        except KeyError:
            raise KeyError(f'no tool class {name!r}; registered: {", ".join(sorted(self))}') from None

    def get(self, name: str, *args: Any, **kwargs: Any) -> BaseAction:  # type: ignore[override]
        """A new instance of the action class called ``name``, built with ``args`` and ``kwargs``.

        Raises:
            KeyError: No action class has that name.
        """
        return self.get_class(name)(*args, **kwargs)


TOOL_REGISTRY = ToolRegistry()
"""Every ``BaseAction`` subclass defined so far, by name."""


def list_tools(with_class: bool = False) -> list[Any]:
    """The names of the registered action classes, or ``(name, class)`` pairs with ``with_class``."""
    return list(TOOL_REGISTRY.items()) if with_class else list(TOOL_REGISTRY)


def get_tool_cls(specifier: str) -> type[BaseAction]:
    """The registered action class called ``specifier``.

    Raises:
        KeyError: No action class has that name.
    """
    return TOOL_REGISTRY.get_class(specifier)


def get_tool(specifier: str, *args: Any, **kwargs: Any) -> BaseAction:
    """A new instance of the registered action class ``specifier``, built with ``args`` and ``kwargs``.

    Raises:
        KeyError: No action class has that name.
    """
    return TOOL_REGISTRY.get(specifier, *args, **kwargs)
