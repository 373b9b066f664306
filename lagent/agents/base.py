"""``BaseAgent``: the loop every agent shares — ask the model, run the tools it
calls, show it the results, until it answers or runs out of turns.

The loop is written once, as a generator that *yields* what it needs done
(ask the model, run a tool) and receives the outcome; the sync methods
(:meth:`BaseAgent.chat`, :meth:`BaseAgent.stream_chat`) and their async twins
drive the same generator and differ only in how they do the I/O. An agent
subclass supplies the protocol: the system messages, how a request is sent,
how a reply is parsed into tool calls, and how calls and results are written
into the conversation.

Errors: a reply that cannot be parsed and a tool that fails are shown to the
model as observations, never raised; errors of the LLM itself (a dead server,
a bad generation parameter) are raised.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union, cast

from lagent.actions import ActionExecutor
from lagent.agents.events import (
    AgentEvent,
    AgentResult,
    FinalAnswer,
    ModelReply,
    TextDelta,
    ToolCallStep,
    ToolResultStep,
)
from lagent.agents.memory import AgentMemory
from lagent.llms.base import BaseLLM
from lagent.llms.streaming import ChunkAccumulator
from lagent.schema import (
    ActionReturn,
    ActionStatusCode,
    ActionValidCode,
    AgentStatusCode,
    FunctionCall,
    Message,
    Response,
    ToolCall,
)

__all__ = ['BaseAgent', 'ModelRequest', 'ParsedReply', 'ToolRequest', 'ToolsLike', 'UserMessage']

ToolsLike = Union[ActionExecutor, Iterable[Any], None]
"""Tools for an agent: an :class:`~lagent.actions.ActionExecutor`, or a list of
tools, actions and typed functions to build one from."""

UserMessage = Union[str, Message, Mapping[str, Any]]
"""What ``chat`` takes: the user's text, or a whole message."""


@dataclass
class ToolRequest:
    """A tool call found in a model reply, or the reason one could not be read."""

    call: ToolCall | None
    """The call to run; ``None`` when the reply asked for a tool but could not be parsed."""
    kind: Literal['plugin', 'interpreter'] = 'plugin'
    """``'interpreter'`` for code sent to a code interpreter, else ``'plugin'``."""
    error: str | None = None
    """Why the call could not be parsed (shown to the model instead of a result)."""
    name: str | None = None
    """The tool name, if the reply named one."""


@dataclass
class ParsedReply:
    """What an agent made of one model reply."""

    text: str
    """The prose of the reply: the thought before a tool call, or the answer."""
    requests: list[ToolRequest] = field(default_factory=list)
    """The tool calls to run; none means the reply is the final answer."""


@dataclass(frozen=True)
class ModelRequest:
    """An instruction of the loop: get a reply from the model."""

    turn: int
    """Which reply of the run this is (1 for the first)."""
    inputs: str | list[Message]
    """A rendered prompt, or the conversation for the LLM to render or send."""
    tools: list[dict[str, Any]] | None = None
    """Tool schemas sent natively."""
    tool_choice: str | dict[str, Any] | None = None
    """The native tool choice."""
    stream: bool = True
    """Stream the reply (``False``: request it whole)."""


@dataclass(frozen=True)
class _RunTool:
    """An instruction of the loop: run a tool call."""

    executor: ActionExecutor
    call: ToolCall


_Instruction = Union[ModelRequest, _RunTool]
_Loop = Generator[Union[_Instruction, AgentEvent], Union[Response, ActionReturn, None], None]


class BaseAgent:
    """The tool-calling loop shared by every agent; subclasses define the protocol.

    An agent keeps one conversation in :attr:`memory`; each :meth:`chat` adds
    the user's message, the model's replies and the tool results to it. Agents
    share nothing with each other except what they were given (the LLM, an
    executor); use one agent per conversation, or :meth:`reset` between them.
    One agent runs one chat at a time.

    Args:
        llm: Any LLM engine.
        tools: An :class:`~lagent.actions.ActionExecutor`, or the tools to build one from.
        system_prompt: Instructions replacing the agent's default ones.
        max_turn: Most model replies in one run; when used up the run ends with
            status ``SESSION_OUT_OF_LIMIT``.
        memory: A conversation to continue (e.g. one loaded with :meth:`AgentMemory.load`).
        tool_timeout: Seconds a tool call may take, when the executor is built here.
        **gen_params: Generation settings for every request (``temperature``,
            ``max_new_tokens``...); the agent adds its protocol's stop words.

    Raises:
        TypeError: ``llm`` is not a :class:`~lagent.llms.BaseLLM`.
        ValueError: ``max_turn`` is below 1, or a generation setting is invalid.
    """

    default_system_prompt: ClassVar[str] = ''
    """Instructions used when no ``system_prompt`` is given."""
    stop_words: tuple[str, ...] = ()
    """Stop words of the protocol, added to the LLM's own."""

    def __init__(
        self,
        llm: BaseLLM,
        tools: ToolsLike = None,
        *,
        system_prompt: str | None = None,
        max_turn: int = 5,
        memory: AgentMemory | None = None,
        tool_timeout: float | None = 30.0,
        **gen_params: Any,
    ):
        if not isinstance(llm, BaseLLM):
            raise TypeError(f'llm must be a lagent.llms.BaseLLM, got {type(llm).__name__}')
        if max_turn < 1:
            raise ValueError(f'max_turn must be at least 1, got {max_turn}')
        self.llm = llm
        self.executor = _as_executor(tools, tool_timeout)
        self.system_prompt = self.default_system_prompt if system_prompt is None else system_prompt
        self.max_turn = max_turn
        self.memory = AgentMemory() if memory is None else memory
        self.gen_params = dict(gen_params)
        llm.params(**self.gen_params)  # fail now, naming the bad setting, not at the first chat

    def __repr__(self) -> str:
        return f'{type(self).__name__}(llm={self.llm!r}, tools={self.executor.names!r}, max_turn={self.max_turn})'

    def reset(self) -> None:
        """Forget the conversation."""
        self.memory.reset()

    # ------------------------------------------------------------------ public API

    def chat(self, message: UserMessage) -> AgentResult:
        """Run the loop on a user message until the model answers or ``max_turn`` replies are used.

        Args:
            message: The user's text, or a whole message.

        Returns:
            The answer and every inner step (model replies, tool calls, tool results).

        Raises:
            LLMError: The LLM failed (tool failures and unparsable replies are
                shown to the model instead).
        """
        return AgentResult.from_events(list(self.stream_chat(message)))

    async def achat(self, message: UserMessage) -> AgentResult:
        """Async twin of :meth:`chat`."""
        return AgentResult.from_events([event async for event in self.astream_chat(message)])

    def stream_chat(self, message: UserMessage) -> Iterator[AgentEvent]:
        """Run the loop, yielding its events as they happen (see :mod:`lagent.agents.events`).

        Yields:
            Text deltas, model replies, tool calls and results; the last event
            is always a :class:`~lagent.agents.events.FinalAnswer`. Closing the
            stream early stops the model's generation; the memory keeps the
            steps completed so far.

        Raises:
            LLMError: The LLM failed.
        """
        loop = self._loop(message)
        outcome: Response | ActionReturn | None = None
        while True:
            try:
                item = loop.send(outcome)
            except StopIteration:
                return
            outcome = None
            if isinstance(item, ModelRequest):
                for piece in self._ask_model(item):
                    if isinstance(piece, Response):
                        outcome = piece
                    else:
                        yield piece
            elif isinstance(item, _RunTool):
                outcome = item.executor.execute_call(item.call)
            else:
                yield item

    async def astream_chat(self, message: UserMessage) -> AsyncIterator[AgentEvent]:
        """Async twin of :meth:`stream_chat`."""
        loop = self._loop(message)
        outcome: Response | ActionReturn | None = None
        while True:
            try:
                item = loop.send(outcome)
            except StopIteration:
                return
            outcome = None
            if isinstance(item, ModelRequest):
                async for piece in self._aask_model(item):
                    if isinstance(piece, Response):
                        outcome = piece
                    else:
                        yield piece
            elif isinstance(item, _RunTool):
                outcome = await item.executor.aexecute_call(item.call)
            else:
                yield item

    # ------------------------------------------------------------------ the loop

    def _loop(self, message: UserMessage) -> _Loop:
        """The decision logic of a run, shared by the sync and async drivers."""
        self.memory.add(_user_message(message))
        last_text = ''
        for turn in range(1, self.max_turn + 1):
            response = cast(Response, (yield self._model_request(turn)))
            parsed = self._parse_reply(response, turn)
            last_text = parsed.text
            yield ModelReply(turn=turn, status=_reply_status(parsed), text=response.text, response=response)
            self.memory.add(self._reply_message(response, parsed))
            if not parsed.requests:
                yield FinalAnswer(turn=turn, status=AgentStatusCode.END, text=parsed.text)
                return
            for request in parsed.requests:
                coding = request.kind == 'interpreter'
                if request.call is None:
                    result = _unparsed_call(request)
                else:
                    status = AgentStatusCode.CODING if coding else AgentStatusCode.PLUGIN_START
                    yield ToolCallStep(turn=turn, status=status, call=request.call)
                    result = cast(ActionReturn, (yield _RunTool(self._executor_for(request), request.call)))
                observation = self._observation(result)
                yield ToolResultStep(
                    turn=turn,
                    status=AgentStatusCode.CODE_RETURN if coding else AgentStatusCode.PLUGIN_RETURN,
                    call_id=request.call.id if request.call else None,
                    result=result,
                    observation=observation,
                )
                self.memory.add(self._result_message(request, result, observation))
        yield FinalAnswer(turn=self.max_turn, status=AgentStatusCode.SESSION_OUT_OF_LIMIT, text=last_text)

    # ------------------------------------------------------------------ protocol hooks

    def _system_messages(self) -> list[Message]:
        """The messages that open every request (instructions, tool descriptions)."""
        return [Message(role='system', content=self.system_prompt)] if self.system_prompt else []

    def _conversation(self) -> list[Message]:
        """The whole conversation to send: system messages, then the memory."""
        return [*self._system_messages(), *self.memory.messages]

    def _model_request(self, turn: int) -> ModelRequest:
        """What to ask the model for reply ``turn`` of a run."""
        return ModelRequest(turn=turn, inputs=self._conversation())

    def _parse_reply(self, response: Response, turn: int) -> ParsedReply:
        """Find the tool calls in a reply; never raises (problems become requests with an ``error``)."""
        raise NotImplementedError

    def _reply_message(self, response: Response, parsed: ParsedReply) -> Message:
        """The message that records a reply in the memory."""
        return Message(role='assistant', content=response.text)

    def _result_message(self, request: ToolRequest, result: ActionReturn, observation: str) -> Message:
        """The message that shows the model a tool's result."""
        raise NotImplementedError

    def _executor_for(self, request: ToolRequest) -> ActionExecutor:
        """The executor that runs a request."""
        return self.executor

    def _observation(self, result: ActionReturn) -> str:
        """The text the model is shown for a result (the error message on failure)."""
        return result.format_result()

    # ------------------------------------------------------------------ I/O

    def _generation_kwargs(self) -> dict[str, Any]:
        """The agent's generation settings, with the protocol's stop words added."""
        if not self.stop_words:
            return self.gen_params
        own = self.llm.params(**self.gen_params).stop_words
        return {**self.gen_params, 'stop_words': tuple(dict.fromkeys((*own, *self.stop_words)))}

    def _ask_model(self, ask: ModelRequest) -> Iterator[TextDelta | Response]:
        """Get a reply: text deltas as they stream, then the whole :class:`Response`."""
        kwargs = self._generation_kwargs()
        if not ask.stream:
            response = self.llm.complete(ask.inputs, tools=ask.tools, tool_choice=ask.tool_choice, **kwargs)
            yield from _whole_reply(ask.turn, response)
            return
        accumulator = ChunkAccumulator()
        with self.llm.stream(ask.inputs, tools=ask.tools, tool_choice=ask.tool_choice, **kwargs) as chunks:
            for chunk in chunks:
                accumulator.add(chunk)
                if chunk.text:
                    yield TextDelta(turn=ask.turn, text=chunk.text)
        yield accumulator.response()

    async def _aask_model(self, ask: ModelRequest) -> AsyncIterator[TextDelta | Response]:
        """Async twin of :meth:`_ask_model`."""
        kwargs = self._generation_kwargs()
        if not ask.stream:
            response = await self.llm.acomplete(ask.inputs, tools=ask.tools, tool_choice=ask.tool_choice, **kwargs)
            for piece in _whole_reply(ask.turn, response):
                yield piece
            return
        accumulator = ChunkAccumulator()
        async with self.llm.astream(ask.inputs, tools=ask.tools, tool_choice=ask.tool_choice, **kwargs) as chunks:
            async for chunk in chunks:
                accumulator.add(chunk)
                if chunk.text:
                    yield TextDelta(turn=ask.turn, text=chunk.text)
        yield accumulator.response()


# ---------------------------------------------------------------------- helpers shared by the agents


def call_id(turn: int, index: int) -> str:
    """The id given to a tool call parsed from text (reply ``turn``, call ``index``)."""
    return f'call_{turn}_{index}'


def make_call(name: str, arguments: Mapping[str, Any] | str, *, turn: int, index: int) -> ToolCall:
    """A :class:`~lagent.schema.ToolCall` for a call parsed from text."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return ToolCall(id=call_id(turn, index), function=FunctionCall(name=name, arguments=text))


def parameter_names(executor: ActionExecutor) -> dict[str, list[str]]:
    """For each tool: its parameter names, required ones first."""
    names = {}
    for schema in executor.tool_schemas():
        function = schema['function']
        parameters = function.get('parameters') or {}
        required = list(parameters.get('required') or [])
        others = [name for name in parameters.get('properties') or {} if name not in required]
        names[function['name']] = required + others
    return names


def _as_executor(tools: ToolsLike, timeout: float | None) -> ActionExecutor:
    if isinstance(tools, ActionExecutor):
        return tools
    if isinstance(tools, (str, bytes, Mapping)):
        raise TypeError('tools must be an ActionExecutor or a list of tools')
    return ActionExecutor(list(tools or ()), timeout=timeout)


def _user_message(message: UserMessage) -> Message:
    if isinstance(message, str):
        return Message(role='user', content=message)
    if isinstance(message, Message):
        return message
    if isinstance(message, Mapping):
        return Message.model_validate(dict(message))
    raise TypeError(f'chat takes a str or a message, got {type(message).__name__}')


def _reply_status(parsed: ParsedReply) -> AgentStatusCode:
    if any(request.kind == 'interpreter' for request in parsed.requests):
        return AgentStatusCode.CODE_END
    if parsed.requests:
        return AgentStatusCode.PLUGIN_END
    return AgentStatusCode.STREAM_ING


def _unparsed_call(request: ToolRequest) -> ActionReturn:
    return ActionReturn(
        type=request.name,
        errmsg=request.error,
        state=ActionStatusCode.ARGS_ERROR,
        valid=ActionValidCode.INVALID,
    )


def _whole_reply(turn: int, response: Response) -> Iterator[TextDelta | Response]:
    if response.text:
        yield TextDelta(turn=turn, text=response.text)
    yield response
