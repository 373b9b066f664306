"""Tools a model can call: ``@tool`` functions, ``BaseAction`` classes, the
``ActionExecutor`` that runs them, and built-in tools (a calculator, Python
interpreters, slide decks, and web tools that need the internet: arXiv,
Google, Google Scholar, Bing Maps and a web browser).

Every outcome of a tool call, failures included, is an
:class:`~lagent.schema.ActionReturn`: an agent never crashes on a bad call.
"""

from lagent.actions._registry import TOOL_REGISTRY, get_tool, get_tool_cls, list_tools
from lagent.actions.arxiv_search import ArxivSearch
from lagent.actions.base_action import BaseAction
from lagent.actions.bing_browser import BingBrowser
from lagent.actions.bing_map import BINGMap
from lagent.actions.builtin_actions import FinishAction, InvalidAction, NoAction
from lagent.actions.calculator import Calculator, CalculatorError
from lagent.actions.executor import ActionExecutor, ActionLike
from lagent.actions.google_scholar_search import GoogleScholar
from lagent.actions.google_search import GoogleSearch
from lagent.actions.ipython_interactive import IPythonInteractive, IPythonInteractiveManager
from lagent.actions.ipython_interpreter import IPythonInterpreter
from lagent.actions.parser import BaseParser, JsonParser, ParseError, TupleParser
from lagent.actions.ppt import PPT
from lagent.actions.python_interpreter import PythonInterpreter
from lagent.actions.tool import Tool, ToolArgumentsError, tool, tool_api

__all__ = [
    'PPT',
    'TOOL_REGISTRY',
    'ActionExecutor',
    'ActionLike',
    'ArxivSearch',
    'BINGMap',
    'BaseAction',
    'BaseParser',
    'BingBrowser',
    'Calculator',
    'CalculatorError',
    'FinishAction',
    'GoogleScholar',
    'GoogleSearch',
    'IPythonInteractive',
    'IPythonInteractiveManager',
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
