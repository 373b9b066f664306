"""Tools by name, for command lines and config files: the built-in ones by a
short name, any other as ``'package.module:attribute'``."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from typing import Any

from lagent.actions.base_action import BaseAction

__all__ = ['BUILTIN_TOOLS', 'tools_by_name']

BUILTIN_TOOLS = {
    'calculator': 'lagent.actions.calculator:Calculator',
    'python': 'lagent.actions.python_interpreter:PythonInterpreter',
}
"""Short names of the built-in tools, and the classes they build."""


def tools_by_name(names: Iterable[str]) -> list[Any]:
    """Build the tools ``names`` name.

    Args:
        names: Built-in short names (``'calculator'``, ``'python'``) or
            ``'package.module:attribute'``, where the attribute is a typed,
            documented function, a :class:`~lagent.actions.Tool`, an action
            instance, or an action class (built with no arguments).

    Returns:
        The tools, for an :class:`~lagent.actions.ActionExecutor` or an agent.

    Raises:
        ValueError: An unknown short name, or a target that cannot be imported.
    """
    targets = [(name, BUILTIN_TOOLS.get(name, name)) for name in names]
    for name, target in targets:
        if ':' not in target:
            raise ValueError(
                f"unknown tool {name!r}; available: {', '.join(BUILTIN_TOOLS)} (or 'package.module:attribute')"
            )
    found = [_import(target, name) for name, target in targets]  # every name checked before any tool is built
    return [tool() if inspect.isclass(tool) and issubclass(tool, BaseAction) else tool for tool in found]


def _import(target: str, name: str) -> Any:
    module_name, _, attribute = target.partition(':')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise
        raise ValueError(f'tool {name!r}: no module named {exc.name!r}') from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f'tool {name!r}: {module_name!r} has no attribute {attribute!r}') from None
