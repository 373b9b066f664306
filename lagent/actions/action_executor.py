"""lagent 0.2's module path of :class:`~lagent.actions.ActionExecutor`."""

from lagent.actions.executor import ActionExecutor

__all__ = ['ActionExecutor']
