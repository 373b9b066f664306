"""Tools a model can call: ``@tool`` functions, ``BaseAction`` classes, the
``ActionExecutor`` that runs them, and built-in tools.

Every outcome of a tool call, failures included, is an
:class:`~lagent.schema.ActionReturn`: an agent never crashes on a bad call.
"""

from lagent.actions.base_action import BaseAction
from lagent.actions.calculator import Calculator, CalculatorError
from lagent.actions.executor import ActionExecutor, ActionLike
from lagent.actions.ipython_interpreter import IPythonInterpreter
from lagent.actions.python_interpreter import PythonInterpreter
from lagent.actions.tool import Tool, ToolArgumentsError, tool

__all__ = [
    'ActionExecutor',
    'ActionLike',
    'BaseAction',
    'Calculator',
    'CalculatorError',
    'IPythonInterpreter',
    'PythonInterpreter',
    'Tool',
    'ToolArgumentsError',
    'tool',
]
