"""``ActionExecutor``: runs tools by name and turns every outcome into an
:class:`~lagent.schema.ActionReturn` — an agent never crashes on a bad tool call.

========================================  =====================  ===================
What happened                             ``state``              ``valid``
========================================  =====================  ===================
the tool ran and returned                 ``SUCCESS``            ``FINISH``
no tool of that name                      ``INVALID_ACTION``     ``INVALID``
arguments not a JSON object               ``ARGS_ERROR``         ``INVALID``
arguments fail validation                 ``ARGS_ERROR``         ``FINISH``
the tool raised / timed out               ``API_ERROR``          ``FINISH``
========================================  =====================  ===================
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Union

import pydantic_core
from pydantic import BaseModel

from lagent.actions._legacy_description import legacy_description
from lagent.actions.base_action import BaseAction
from lagent.actions.parser import ParseError, read_arguments
from lagent.actions.tool import Tool, ToolArgumentsError
from lagent.schema import ActionReturn, ActionStatusCode, ActionValidCode, ToolCall

__all__ = ['ActionExecutor', 'ActionLike', 'result_text']

logger = logging.getLogger(__name__)

ActionLike = Union[Tool, BaseAction, Callable[..., Any]]
"""What an executor accepts: a :class:`Tool`, a :class:`BaseAction` (all its
tools), or a plain typed, documented function (made a tool with ``@tool``)."""


class ActionExecutor:
    """Looks tools up by name, validates the model's arguments and runs the tool
    under a timeout, sync or async.

    A tool is found by its name; lagent 0.2's ``'Action.method'`` names are
    accepted for ``'Action_method'``.

    lagent 0.2 code runs unchanged: the fallback actions below, :attr:`actions`,
    :meth:`get_actions_info`, :meth:`is_valid`, :meth:`action_names`,
    :meth:`add_action`, :meth:`del_action` and calling the executor
    (:meth:`__call__`).

    Args:
        actions: Tools, actions and plain functions to offer (or one action).
        invalid_action: What :meth:`__call__` runs for an unknown name
            (default :class:`~lagent.actions.builtin_actions.InvalidAction`).
        no_action: What :meth:`__call__` runs when called with its name
            (default :class:`~lagent.actions.builtin_actions.NoAction`).
        finish_action: What :meth:`__call__` runs when called with its name
            (default :class:`~lagent.actions.builtin_actions.FinishAction`).
        finish_in_action: Offer ``finish_action`` as one of the tools.
        timeout: Seconds one call may take; ``None`` for no limit. A sync tool
            that times out is abandoned in its worker thread (Python cannot stop
            a thread), so tools with side effects should enforce their own
            limits, as :class:`~lagent.actions.PythonInterpreter` does.

    Raises:
        ValueError: Two tools share a name, or ``timeout`` is not positive.
    """

    def __init__(
        self,
        actions: Iterable[ActionLike] | BaseAction = (),
        invalid_action: BaseAction | None = None,
        no_action: BaseAction | None = None,
        finish_action: BaseAction | None = None,
        finish_in_action: bool = False,
        *,
        timeout: float | None = 30.0,
    ):
        if timeout is not None and timeout <= 0:
            raise ValueError(f'timeout must be positive or None, got {timeout!r}')
        self.timeout = timeout
        """Seconds one call may take; ``None`` for no limit."""
        self._tools: dict[str, Tool] = {}
        self._actions: list[BaseAction] = []
        self._given: dict[str, ActionLike] = {}
        self._fallbacks = {'invalid': invalid_action, 'no': no_action, 'finish': finish_action}
        for action in [actions] if isinstance(actions, BaseAction) else list(actions):
            self._add(action)
        if finish_in_action:
            self._add(self.finish_action)

    # ------------------------------------------------------------------ registry

    @property
    def names(self) -> list[str]:
        """The tool names, in the order the tools were given."""
        return list(self._tools)

    @property
    def tools(self) -> list[Tool]:
        """The tools, in the order they were given."""
        return list(self._tools.values())

    def get(self, name: str) -> Tool | None:
        """Return the tool called ``name`` (or ``'Action.method'``), or ``None``."""
        if not isinstance(name, str):
            return None
        return self._tools.get(name) or self._tools.get(name.replace('.', '_'))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self._tools)

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The tools in OpenAI's format, for native tool calling (``tools=``)."""
        return [tool.schema for tool in self._tools.values()]

    def describe(self) -> str:
        """The tools as text for a prompt: each tool's name, description and
        JSON schema of its parameters, separated by blank lines."""
        blocks = []
        for tool in self._tools.values():
            parameters = json.dumps(tool.parameters, ensure_ascii=False)
            blocks.append(f'{tool.name}: {tool.description}\nParameters: {parameters}')
        return '\n\n'.join(blocks)

    # ------------------------------------------------------------------ running

    def execute(
        self, name: str, arguments: Mapping[str, Any] | str | None = None, *, tool_call_id: str | None = None
    ) -> ActionReturn:
        """Run tool ``name`` with the model's ``arguments``; never raises.

        Args:
            name: The tool's name.
            arguments: The arguments object, or its JSON text as the model wrote it.
            tool_call_id: The id of the native tool call, copied into the result.

        Returns:
            The result, or the reason it failed (see the module docstring).
        """
        try:
            prepared = self._prepare(name, arguments, tool_call_id)
            if isinstance(prepared, ActionReturn):
                return prepared
            tool, call, args = prepared
            try:
                value = self._run_sync(tool, call)
            except _ToolTimeout:
                return self._failure(tool, args, tool_call_id, f'{tool.name} timed out after {self.timeout:g}s')
            except (Exception, SystemExit) as exc:
                return self._failure(tool, args, tool_call_id, _describe_exception(exc))
            return self._success(tool, value, args, tool_call_id)
        except Exception as exc:  # e.g. a result whose __str__ raises: still an ActionReturn
            return _unexpected(name, tool_call_id, exc)

    async def aexecute(
        self, name: str, arguments: Mapping[str, Any] | str | None = None, *, tool_call_id: str | None = None
    ) -> ActionReturn:
        """Async twin of :meth:`execute`: ``async`` tools are awaited, sync tools
        run in a worker thread of their own, both under the timeout; never raises."""
        try:
            prepared = self._prepare(name, arguments, tool_call_id)
            if isinstance(prepared, ActionReturn):
                return prepared
            tool, call, args = prepared
            try:
                value = await asyncio.wait_for(_capture(tool, call), self.timeout)
            except asyncio.TimeoutError:
                return self._failure(tool, args, tool_call_id, f'{tool.name} timed out after {self.timeout:g}s')
            if isinstance(value, _Raised):
                return self._failure(tool, args, tool_call_id, _describe_exception(value.error))
            return self._success(tool, value, args, tool_call_id)
        except Exception as exc:  # e.g. a result whose __str__ raises: still an ActionReturn
            return _unexpected(name, tool_call_id, exc)

    def execute_call(self, call: ToolCall) -> ActionReturn:
        """Run a native :class:`~lagent.schema.ToolCall`; never raises."""
        return self.execute(call.function.name, call.function.arguments, tool_call_id=call.id)

    async def aexecute_call(self, call: ToolCall) -> ActionReturn:
        """Async twin of :meth:`execute_call`."""
        return await self.aexecute(call.function.name, call.function.arguments, tool_call_id=call.id)

    # ------------------------------------------------------------------ lagent 0.2 API

    @property
    def actions(self) -> dict[str, ActionLike]:
        """The actions and tools given, by name."""
        return dict(self._given)

    @property
    def invalid_action(self) -> BaseAction:
        """What :meth:`__call__` runs for an unknown name."""
        return self._fallback('invalid')

    @property
    def no_action(self) -> BaseAction:
        """What :meth:`__call__` runs when called with its name (a reply without a tool call)."""
        return self._fallback('no')

    @property
    def finish_action(self) -> BaseAction:
        """What :meth:`__call__` runs when called with its name (the final answer)."""
        return self._fallback('finish')

    def get_actions_info(self) -> list[dict[str, Any]]:
        """The enabled tools in lagent 0.2's description format; a toolkit's
        methods are listed one by one as ``'Action.method'``."""
        described = []
        for action in self._given.values():
            if not isinstance(action, BaseAction):
                described.append(legacy_description(action.name, action.description, action.parameters))
            elif action.enable:
                description = action.description
                for api in description.get('api_list', ()):
                    described.append({**api, 'name': f'{action.name}.{api["name"]}'})
                if 'api_list' not in description:
                    described.append(description)
        return described

    def is_valid(self, name: str) -> bool:
        """Whether ``name`` is an enabled action or tool given to this executor."""
        action = self._given.get(name)
        return action is not None and (not isinstance(action, BaseAction) or action.enable)

    def action_names(self, only_enable: bool = True) -> list[str]:
        """The names of the actions and tools given (only the enabled ones by default)."""
        return [name for name in self._given if not only_enable or self.is_valid(name)]

    def add_action(self, action: ActionLike) -> None:
        """Offer one more action or tool, replacing one of the same name.

        Raises:
            ValueError: One of its tools has the name of another action's tool.
        """
        name = action.name if isinstance(action, (BaseAction, Tool)) else getattr(action, '__name__', None)
        if isinstance(name, str):
            self._remove(name)
        self._add(action)

    def del_action(self, name: str) -> None:
        """Stop offering the action or tool called ``name`` (nothing happens if there is none)."""
        self._remove(name)

    def __call__(self, name: str, command: Any = None) -> ActionReturn:
        """Run a tool the lagent 0.2 way; never raises.

        Args:
            name: An action's name, ``'Action.method'`` for a toolkit's method, or
                the name of :attr:`no_action` / :attr:`finish_action`.
            command: The input as the model wrote it, read by the action's parser
                (by default a JSON object of arguments, or the first parameter's value).

        Returns:
            The result; an unknown or disabled name gives :attr:`invalid_action`'s.
        """
        action_name, _, method = str(name).partition('.')
        action = self._given.get(action_name)
        if action is None or not self.is_valid(action_name):
            for fallback in (self.no_action, self.finish_action):
                if name == fallback.name:
                    return fallback(command)
            return self.invalid_action(command)
        if isinstance(action, BaseAction):
            tool = action.tool_for(method or 'run')
            if tool is None:
                return self.invalid_action(f'{action_name} has no API {method!r}')
            try:
                arguments = action.parser.parse_inputs(command, method or 'run')
            except ParseError as exc:
                return ActionReturn(
                    {'inputs': command, 'name': name}, type=name, errmsg=exc.err_msg, state=ActionStatusCode.ARGS_ERROR
                )
            return self.execute(tool.name, arguments)
        return self.execute(action.name, read_arguments(command, list(action.parameters.get('properties') or {})))

    def _fallback(self, kind: str) -> BaseAction:
        action = self._fallbacks[kind]
        if action is None:
            from lagent.actions.builtin_actions import FinishAction, InvalidAction, NoAction

            action = {'invalid': InvalidAction, 'no': NoAction, 'finish': FinishAction}[kind]()
            self._fallbacks[kind] = action
        return action

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close every :class:`BaseAction` given (stopping their child processes)."""
        for action in self._actions:
            action.close()

    def __enter__(self) -> ActionExecutor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f'ActionExecutor(names={self.names!r}, timeout={self.timeout!r})'

    # ------------------------------------------------------------------ internals

    def _add(self, action: ActionLike) -> None:
        if isinstance(action, BaseAction):
            tools = action.tools
        elif isinstance(action, Tool):
            tools = [action]
        elif callable(action):
            action = Tool(action)
            tools = [action]
        else:
            raise TypeError(f'expected a Tool, a BaseAction or a function, got {type(action).__name__}')
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f'two tools are named {tool.name!r}; give one another name')
        if isinstance(action, BaseAction):
            self._actions.append(action)
        self._tools.update((tool.name, tool) for tool in tools)
        self._given[action.name] = action

    def _remove(self, name: str) -> None:
        action = self._given.pop(name, None)
        if action is None:
            return
        tools = action.tools if isinstance(action, BaseAction) else [action]
        for tool in tools:
            self._tools.pop(tool.name, None)
        if isinstance(action, BaseAction):
            self._actions.remove(action)

    def _prepare(
        self, name: str, arguments: Mapping[str, Any] | str | None, tool_call_id: str | None
    ) -> ActionReturn | tuple[Tool, Callable[[], Any], dict[str, Any]]:
        tool = self.get(name)
        if tool is None:
            available = ', '.join(self._tools) or '(none)'
            return ActionReturn(
                type=str(name),
                errmsg=f'Unknown tool {name!r}. Available tools: {available}.',
                state=ActionStatusCode.INVALID_ACTION,
                valid=ActionValidCode.INVALID,
                tool_call_id=tool_call_id,
            )
        decoded = _decode_arguments(arguments)
        if isinstance(decoded, str):
            return ActionReturn(
                type=name,
                errmsg=f'Arguments of tool {name!r} {decoded}. {tool.describe_arguments()}',
                state=ActionStatusCode.ARGS_ERROR,
                valid=ActionValidCode.INVALID,
                tool_call_id=tool_call_id,
            )
        try:
            call, args = tool.bind(decoded)
        except Exception as exc:  # ToolArgumentsError, or whatever a custom validator raised
            errmsg = str(exc)
            if not isinstance(exc, ToolArgumentsError):
                errmsg = f'Invalid arguments for tool {name!r}: {_describe_exception(exc)}. {tool.describe_arguments()}'
            return ActionReturn(
                type=name,
                args={str(key): value for key, value in decoded.items()},
                errmsg=errmsg,
                state=ActionStatusCode.ARGS_ERROR,
                valid=ActionValidCode.FINISH,
                tool_call_id=tool_call_id,
            )
        return tool, call, args

    def _run_sync(self, tool: Tool, call: Callable[[], Any]) -> Any:
        if tool.is_async:
            inner_timeout = None if self.timeout is None else self.timeout + 1.0  # the outer limit fires first
            return _call_in_thread(lambda: asyncio.run(asyncio.wait_for(call(), inner_timeout)), self.timeout)
        if self.timeout is None:
            return call()
        return _call_in_thread(call, self.timeout)

    @staticmethod
    def _success(tool: Tool, value: Any, args: dict[str, Any], tool_call_id: str | None) -> ActionReturn:
        if isinstance(value, ActionReturn):
            defaults = {'type': tool.name, 'args': args, 'tool_call_id': tool_call_id}
            update = {key: given for key, given in defaults.items() if getattr(value, key) is None}
            if value.valid == ActionValidCode.OPEN:
                update['valid'] = ActionValidCode.FINISH
            return dataclasses.replace(value, **update)
        return ActionReturn(
            type=tool.name,
            args=args,
            result=[{'type': 'text', 'content': result_text(value)}],
            state=ActionStatusCode.SUCCESS,
            valid=ActionValidCode.FINISH,
            tool_call_id=tool_call_id,
        )

    @staticmethod
    def _failure(tool: Tool, args: dict[str, Any], tool_call_id: str | None, errmsg: str) -> ActionReturn:
        return ActionReturn(
            type=tool.name,
            args=args,
            errmsg=errmsg,
            state=ActionStatusCode.API_ERROR,
            valid=ActionValidCode.FINISH,
            tool_call_id=tool_call_id,
        )


def result_text(value: Any) -> str:
    """The text a model sees for a tool's return value: strings as they are,
    pydantic models, dicts and lists as JSON, anything else via ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (BaseModel, dict, list, tuple)):
        return pydantic_core.to_json(value, fallback=str).decode()
    return str(value)


def _decode_arguments(arguments: Mapping[str, Any] | str | None) -> Mapping[str, Any] | str:
    """Return the arguments object, or why there is none (a phrase for the error message)."""
    if arguments is None:
        return {}
    if isinstance(arguments, (str, bytes)):
        if not arguments.strip():
            return {}
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            return f'are not valid JSON ({exc})'
    if not isinstance(arguments, Mapping):
        return f'must be a JSON object, got {type(arguments).__name__}'
    return arguments


def _unexpected(name: Any, tool_call_id: Any, error: Exception) -> ActionReturn:
    logger.exception('tool call %r failed outside the tool', name)
    return ActionReturn(
        type=str(name),
        errmsg=_describe_exception(error),
        state=ActionStatusCode.API_ERROR,
        valid=ActionValidCode.FINISH,
        tool_call_id=tool_call_id if isinstance(tool_call_id, str) else None,
    )


def _describe_exception(error: BaseException) -> str:
    message = str(error)
    return f'{type(error).__name__}: {message}' if message else type(error).__name__


class _ToolTimeout(Exception):
    """A sync tool did not return within the executor's timeout."""


class _Raised:
    """An exception a tool raised, carried out of ``asyncio.wait_for`` so that the
    tool's own ``TimeoutError`` is not mistaken for the executor's."""

    __slots__ = ('error',)

    def __init__(self, error: BaseException):
        self.error = error


async def _capture(tool: Tool, call: Callable[[], Any]) -> Any:
    try:
        if tool.is_async:
            return await call()
        return await _in_daemon_thread(call)
    except (Exception, SystemExit) as exc:
        return _Raised(exc)


async def _in_daemon_thread(call: Callable[[], Any]) -> Any:
    """Await ``call()`` run in a daemon thread of its own.

    Unlike ``asyncio.to_thread``, an abandoned (timed-out) call does not hold
    up the event loop's shutdown, which waits for the default executor.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        value, error = None, None
        try:
            value = context.run(call)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while the tool ran
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=target, name='lagent-tool-call', daemon=True).start()
    return await future


def _call_in_thread(call: Callable[[], Any], timeout: float | None) -> Any:
    """Run ``call`` in a daemon thread; raise :class:`_ToolTimeout` if it takes
    longer than ``timeout`` seconds, else return or raise what it did."""
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def target() -> None:
        try:
            outcome['value'] = call()
        except BaseException as exc:  # handed to the calling thread below
            outcome['error'] = exc
        finally:
            finished.set()

    threading.Thread(target=target, name='lagent-tool-call', daemon=True).start()
    if not finished.wait(timeout):
        raise _ToolTimeout
    if 'error' in outcome:
        raise outcome['error']
    return outcome['value']
