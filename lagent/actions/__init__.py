"""Tools a model can call: ``@tool`` functions, ``BaseAction`` classes, the
``ActionExecutor`` that runs them, and built-in tools.

Every outcome of a tool call, failures included, is an
:class:`~lagent.schema.ActionReturn`: an agent never crashes on a bad call.
"""

from lagent.actions._registry import TOOL_REGISTRY, get_tool, get_tool_cls, list_tools
from lagent.actions.base_action import BaseAction
from lagent.actions.builtin_actions import FinishAction, InvalidAction, NoAction
from lagent.actions.calculator import Calculator, CalculatorError
from lagent.actions.executor import ActionExecutor, ActionLike
from lagent.actions.ipython_interpreter import IPythonInterpreter
from lagent.actions.parser import BaseParser, JsonParser, ParseError, TupleParser
from lagent.actions.python_interpreter import PythonInterpreter
from lagent.actions.tool import Tool, ToolArgumentsError, tool, tool_api

__all__ = [
    'TOOL_REGISTRY',
    'ActionExecutor',
    'ActionLike',
    'BaseAction',
    'BaseParser',
    'Calculator',
    'CalculatorError',
    'FinishAction',
    'IPythonInterpreter',
    'InvalidAction',
    'JsonParser',
    'NoAction',
    'ParseError',
    'PythonInterpreter',
    'Tool',
    'ToolArgumentsError',
    'TupleParser',
    'get_tool',
    'get_tool_cls',
    'list_tools',
    'tool',
    'tool_api',
]
