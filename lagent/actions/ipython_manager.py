"""lagent 0.2's module path of :class:`~lagent.actions.IPythonInteractiveManager`."""

from lagent.actions.ipython_interactive import IPythonInteractiveManager

__all__ = ['IPythonInteractiveManager']
