"""lagent 0.2's module path of :class:`~lagent.agents.BaseAgent`."""

from lagent.agents.base import BaseAgent

__all__ = ['BaseAgent']
