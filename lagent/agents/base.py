"""``BaseAgent``: the loop every agent shares — ask the model, run the tools it
calls, show it the results, until it answers or runs out of turns.

The loop is written once, as a generator that *yields* what it needs done
(ask the model, run a tool) and receives the outcome; the sync methods
(:meth:`BaseAgent.chat`, :meth:`BaseAgent.stream_chat`) and their async twins
drive the same generator and differ only in how they do the I/O. An agent
subclass supplies the protocol: the system messages, how a request is sent,
how a reply is parsed into tool calls, and how calls and results are written
into the conversation.

Finishing policy — a run ends with an answer or with a stated reason:

* A reply without a tool call is the answer (status ``END``).
* The last allowed reply (reply ``max_turn``) is asked for without tools: the
  request ends with a message that repeats the run's tool results and asks for
  the answer from them (native tool calling also gets ``tool_choice='none'``),
  and a tool call in that reply is not run.
* An empty reply is not an answer, and a call the run already made (same tool,
  same arguments) brings nothing new: after either, the next reply is asked
  for as the last one.
* If the last reply still calls a tool or is empty, the run ends with status
  ``SESSION_OUT_OF_LIMIT`` and ``errmsg`` says which.

Agents may add their own rules before these (e.g. ``FunctionCallAgent``'s
first-reply tool choice). Agents decode greedily (``temperature=0``) unless
given a temperature: tool calls need exact names and arguments, and a run
should be repeatable.

Errors: a reply that cannot be parsed and a tool that fails are shown to the
model as observations, never raised; errors of the LLM itself (a dead server,
a bad generation parameter) are raised.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union, cast

from lagent.actions import ActionExecutor
from lagent.agents._agent_return import asnapshots as _asnapshots
from lagent.agents._agent_return import snapshots as _snapshots
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

UserMessage = Union[str, Message, Mapping[str, Any], Sequence[Union[Message, Mapping[str, Any]]]]
"""What ``chat`` takes: the user's text or message, or a whole conversation
ending with it (which then replaces the agent's memory)."""

FINAL_PROMPT = 'Now write the final answer to the question in one sentence.'
"""What the last allowed reply is asked for with (see the finishing policy)."""


@dataclass
class ToolRequest:
    """A tool call found in a model reply, or the reason one could not be read."""

    call: ToolCall | None
    """The call to run; ``None`` when the reply asked for a tool but could not be parsed."""
    code: bool = False
    """Whether the call sends code to a code interpreter (reported as ``CODING`` /
    ``CODE_END`` / ``CODE_RETURN`` instead of ``PLUGIN_*``)."""
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


@dataclass
class _Run:
    """Where a run's own messages start in the memory."""

    start: int = 0


_Instruction = Union[ModelRequest, _RunTool]
_Loop = Generator[Union[_Instruction, AgentEvent], Union[Response, ActionReturn, None], None]


class BaseAgent:
    """The tool-calling loop shared by every agent; subclasses define the protocol.

    An agent keeps one conversation in :attr:`memory`; each :meth:`chat` adds
    the user's message, the model's replies and the tool results to it. Agents
    share nothing with each other except what they were given (the LLM, an
    executor); use one agent per conversation, or :meth:`reset` between them.
    One agent runs one chat at a time.

    lagent 0.2 code runs unchanged: ``action_executor=`` for ``tools``;
    :class:`~lagent.agents.AgentResult` reads like ``AgentReturn``; an agent
    built with lagent 0.2 keywords starts each ``chat`` afresh (unless given a
    history) and its ``stream_chat`` yields ``AgentReturn`` snapshots.

    Args:
        llm: Any LLM engine.
        tools: An :class:`~lagent.actions.ActionExecutor`, or the tools to build one from.
        system_prompt: Instructions replacing the agent's default ones.
        max_turn: Most model replies in one run (see the finishing policy in
            the module docstring).
        memory: A conversation to continue (e.g. one loaded with :meth:`AgentMemory.load`).
        tool_timeout: Seconds a tool call may take, when the executor is built here.
        action_executor: lagent 0.2's name for ``tools``.
        **gen_params: Generation settings for every request (``temperature``,
            ``max_new_tokens``...) over :attr:`default_gen_params` and the
            LLM's own; the agent adds its protocol's stop words.

    Raises:
        TypeError: ``llm`` is not a :class:`~lagent.llms.BaseLLM`, or both
            ``tools`` and ``action_executor`` are given.
        ValueError: ``max_turn`` is below 1, or a generation setting is invalid.
    """

    default_system_prompt: ClassVar[str] = ''
    """Instructions used when no ``system_prompt`` is given."""
    stop_words: tuple[str, ...] = ()
    """Stop words of the protocol, added to the LLM's own."""
    final_prompt: str = FINAL_PROMPT
    """What the last allowed reply is asked for with."""
    default_gen_params: ClassVar[dict[str, Any]] = {'temperature': 0}
    """Generation settings of the agent's requests unless given (over the LLM's own)."""

    def __init__(
        self,
        llm: BaseLLM,
        tools: ToolsLike = None,
        *,
        system_prompt: str | None = None,
        max_turn: int = 5,
        memory: AgentMemory | None = None,
        tool_timeout: float | None = 30.0,
        action_executor: ActionExecutor | None = None,
        **gen_params: Any,
    ):
        if not isinstance(llm, BaseLLM):
            raise TypeError(f'llm must be a lagent.llms.BaseLLM, got {type(llm).__name__}')
        if max_turn < 1:
            raise ValueError(f'max_turn must be at least 1, got {max_turn}')
        self._results: list[tuple[ToolRequest, str]] = []  # of the run in progress
        self._question = ''  # the user message of the run in progress
        self.agent_returns = False
        """Whether :meth:`stream_chat` yields lagent 0.2 ``AgentReturn`` snapshots (and
        each :meth:`chat` starts afresh): set when built with lagent 0.2 keywords."""
        if action_executor is not None:
            if tools is not None:
                raise TypeError('pass tools or action_executor (its lagent 0.2 name), not both')
            tools = action_executor
            self._speaks_lagent_02('action_executor', 'tools')
        self.llm = llm
        self.executor = _as_executor(tools, tool_timeout)
        self.system_prompt = self.default_system_prompt if system_prompt is None else system_prompt
        self.max_turn = max_turn
        self.memory = AgentMemory() if memory is None else memory
        self.gen_params = {**self.default_gen_params, **gen_params}
        llm.params(**self.gen_params)  # fail now, naming the bad setting, not at the first chat

    def __repr__(self) -> str:
        return f'{type(self).__name__}(llm={self.llm!r}, tools={self.executor.names!r}, max_turn={self.max_turn})'

    def reset(self) -> None:
        """Forget the conversation."""
        self.memory.reset()

    def add_action(self, action: Any) -> None:
        """Offer one more tool (lagent 0.2)."""
        self.executor.add_action(action)

    def del_action(self, name: str) -> None:
        """Stop offering the tool or action called ``name`` (lagent 0.2)."""
        self.executor.del_action(name)

    # ------------------------------------------------------------------ public API

    def chat(self, message: UserMessage, **gen_params: Any) -> AgentResult:
        """Run the loop on a user message until the model answers or ``max_turn`` replies are used.

        Args:
            message: The user's text or message; or the conversation so far,
                ending with the user's message, which replaces the memory.
            **gen_params: Generation settings for this run only.

        Returns:
            The answer and every inner step (model replies, tool calls, tool results).

        Raises:
            LLMError: The LLM failed (tool failures and unparsable replies are
                shown to the model instead).
            ValueError: A generation setting is invalid.
        """
        run = _Run()
        events = list(self._events(message, gen_params, run))
        return AgentResult.from_events(events, self.memory.messages[run.start :])

    async def achat(self, message: UserMessage, **gen_params: Any) -> AgentResult:
        """Async twin of :meth:`chat`."""
        run = _Run()
        events = [event async for event in self._aevents(message, gen_params, run)]
        return AgentResult.from_events(events, self.memory.messages[run.start :])

    def stream_chat(self, message: UserMessage, **gen_params: Any) -> Iterator[Any]:
        """Run the loop, yielding its events as they happen (see :mod:`lagent.agents.events`).

        Args:
            message: As for :meth:`chat`.
            **gen_params: Generation settings for this run only.

        Yields:
            Text deltas, model replies, tool calls and results; the last event
            is always a :class:`~lagent.agents.events.FinalAnswer`. (An agent
            built with lagent 0.2 keywords yields ``AgentReturn`` snapshots
            instead, see :attr:`agent_returns`.) Closing the stream early stops
            the model's generation; the memory keeps the steps completed so far.

        Raises:
            LLMError: The LLM failed.
        """
        run = _Run()
        events = self._events(message, gen_params, run)
        return _snapshots(self, events, run) if self.agent_returns else events

    def astream_chat(self, message: UserMessage, **gen_params: Any) -> AsyncIterator[Any]:
        """Async twin of :meth:`stream_chat`."""
        run = _Run()
        events = self._aevents(message, gen_params, run)
        return _asnapshots(self, events, run) if self.agent_returns else events

    # ------------------------------------------------------------------ drivers

    def _events(self, message: UserMessage, gen_params: Mapping[str, Any], run: _Run) -> Iterator[AgentEvent]:
        settings = self._settings(gen_params)
        run.start = self._begin(message)
        loop = self._loop()
        outcome: Response | ActionReturn | None = None
        while True:
            try:
                item = loop.send(outcome)
            except StopIteration:
                return
            outcome = None
            if isinstance(item, ModelRequest):
                for piece in self._ask_model(item, settings):
                    if isinstance(piece, Response):
                        outcome = piece
                    else:
                        yield piece
            elif isinstance(item, _RunTool):
                outcome = item.executor.execute_call(item.call)
            else:
                yield item

    async def _aevents(
        self, message: UserMessage, gen_params: Mapping[str, Any], run: _Run
    ) -> AsyncIterator[AgentEvent]:
        settings = self._settings(gen_params)
        run.start = self._begin(message)
        loop = self._loop()
        outcome: Response | ActionReturn | None = None
        while True:
            try:
                item = loop.send(outcome)
            except StopIteration:
                return
            outcome = None
            if isinstance(item, ModelRequest):
                async for piece in self._aask_model(item, settings):
                    if isinstance(piece, Response):
                        outcome = piece
                    else:
                        yield piece
            elif isinstance(item, _RunTool):
                outcome = await item.executor.aexecute_call(item.call)
            else:
                yield item

    def _settings(self, gen_params: Mapping[str, Any]) -> dict[str, Any]:
        """The generation settings of a run, validated now (the protocol's stop words added)."""
        settings = {**self.gen_params, **gen_params}
        own = self.llm.params(**settings).stop_words
        if self.stop_words:
            settings['stop_words'] = tuple(dict.fromkeys((*own, *self.stop_words)))
        return settings

    def _begin(self, message: UserMessage) -> int:
        """Put the run's user message (or history) into the memory; return where the run's own messages start."""
        if isinstance(message, Sequence) and not isinstance(message, (str, bytes)):
            history = [_user_message(item) for item in message]
            if not history:
                raise ValueError('chat takes a message or a non-empty conversation')
            self.memory.reset()
            self.memory.extend(history)
        else:
            if self.agent_returns:
                self.memory.reset()
            self.memory.add(_user_message(message))
        self._question = self.memory.messages[-1].text
        return len(self.memory)

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> _Loop:
        """The decision logic of a run (see the finishing policy), shared by the sync and async drivers."""
        answer_now = False
        last_text = ''
        self._results = []
        made: set[tuple[str, str]] = set()
        for turn in range(1, self.max_turn + 1):
            final = answer_now or turn == self.max_turn
            response = cast(Response, (yield self._model_request(turn, final)))
            parsed = self._parse_reply(response, turn)
            last_text = parsed.text
            yield ModelReply(
                turn=turn, status=_reply_status(parsed), text=response.text, thought=parsed.text, response=response
            )
            if final and parsed.requests:
                self.memory.add(Message(role='assistant', content=parsed.text))
                errmsg = (
                    f'no answer: the model still called a tool in its last allowed reply '
                    f'(reply {turn} of max_turn={self.max_turn})'
                )
                yield FinalAnswer(
                    turn=turn, status=AgentStatusCode.SESSION_OUT_OF_LIMIT, text=parsed.text, errmsg=errmsg
                )
                return
            self.memory.add(self._reply_message(response, parsed))
            if not parsed.requests:
                if parsed.text:
                    yield FinalAnswer(turn=turn, status=AgentStatusCode.END, text=parsed.text)
                    return
                if final:
                    break
                answer_now = True
                continue
            for request in parsed.requests:
                if request.call is None:
                    result = _unparsed_call(request)
                else:
                    signature = _signature(request.call)
                    answer_now = answer_now or signature in made
                    made.add(signature)
                    status = AgentStatusCode.CODING if request.code else AgentStatusCode.PLUGIN_START
                    yield ToolCallStep(turn=turn, status=status, call=request.call)
                    result = cast(ActionReturn, (yield _RunTool(self._executor_for(request), request.call)))
                observation = self._observation(result)
                self._results.append((request, observation))
                self.memory.add(self._result_message(request, result, observation))
                yield ToolResultStep(
                    turn=turn,
                    status=AgentStatusCode.CODE_RETURN if request.code else AgentStatusCode.PLUGIN_RETURN,
                    call_id=request.call.id if request.call else None,
                    result=result,
                    observation=observation,
                )
        yield FinalAnswer(
            turn=turn,
            status=AgentStatusCode.SESSION_OUT_OF_LIMIT,
            text=last_text,
            errmsg=f'no answer: the model gave an empty reply (reply {turn} of max_turn={self.max_turn})',
        )

    # ------------------------------------------------------------------ protocol hooks

    def _system_messages(self) -> list[Message]:
        """The messages that open every request (instructions, tool descriptions)."""
        return [Message(role='system', content=self.system_prompt)] if self.system_prompt else []

    def _conversation(self, final: bool = False) -> list[Message]:
        """The whole conversation to send: system messages, the memory, and
        for the last allowed reply the request to answer."""
        conversation = [*self._system_messages(), *self.memory.messages]
        if final:
            conversation.append(self._final_message())
        return conversation

    def _final_message(self) -> Message:
        """The message asking for the answer in the last allowed reply: the run's
        question and tool results again (some templates drop tool turns, and
        small models answer best with both next to the request), then :attr:`final_prompt`."""
        results = [
            f'- {request.call.function.name}({request.call.function.arguments}): {observation}'
            for request, observation in getattr(self, '_results', ())
            if request.call is not None
        ]
        if not results:
            return Message(role='user', content=self.final_prompt)
        question = getattr(self, '_question', '')
        asked = f'The question: {question}\n' if question else ''
        listed = '\n'.join(results)
        return Message(role='user', content=f'{asked}Results of the tools you called:\n{listed}\n\n{self.final_prompt}')

    def _model_request(self, turn: int, final: bool) -> ModelRequest:
        """What to ask the model for reply ``turn`` of a run (``final``: the last allowed one)."""
        return ModelRequest(turn=turn, inputs=self._conversation(final))

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

    def _stream_view(self, text: str) -> tuple[str, AgentStatusCode, Any]:
        """How a reply streaming in looks in an ``AgentReturn`` snapshot:
        ``(prose so far, status, response)``; by default all of it is prose."""
        return text, AgentStatusCode.STREAM_ING, text

    def _speaks_lagent_02(self, keyword: str, instead: str) -> None:
        """Note that the agent was built with a lagent 0.2 keyword (see :attr:`agent_returns`)."""
        self.agent_returns = True
        warnings.warn(
            f'{type(self).__name__}({keyword}=...) is the lagent 0.2 API: pass {instead} instead '
            '(stream_chat then yields typed events instead of AgentReturn snapshots)',
            DeprecationWarning,
            stacklevel=3,
        )

    # ------------------------------------------------------------------ I/O

    def _ask_model(self, ask: ModelRequest, settings: dict[str, Any]) -> Iterator[TextDelta | Response]:
        """Get a reply: text deltas as they stream, then the whole :class:`Response`."""
        if not ask.stream:
            response = self.llm.complete(ask.inputs, tools=ask.tools, tool_choice=ask.tool_choice, **settings)
            yield from _whole_reply(ask.turn, response)
            return
        accumulator = ChunkAccumulator()
        with self.llm.stream(ask.inputs, tools=ask.tools, tool_choice=ask.tool_choice, **settings) as chunks:
            for chunk in chunks:
                accumulator.add(chunk)
                if chunk.text:
                    yield TextDelta(turn=ask.turn, text=chunk.text)
        yield accumulator.response()

    async def _aask_model(self, ask: ModelRequest, settings: dict[str, Any]) -> AsyncIterator[TextDelta | Response]:
        """Async twin of :meth:`_ask_model`."""
        if not ask.stream:
            response = await self.llm.acomplete(ask.inputs, tools=ask.tools, tool_choice=ask.tool_choice, **settings)
            for piece in _whole_reply(ask.turn, response):
                yield piece
            return
        accumulator = ChunkAccumulator()
        async with self.llm.astream(ask.inputs, tools=ask.tools, tool_choice=ask.tool_choice, **settings) as chunks:
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


def _user_message(message: str | Message | Mapping[str, Any]) -> Message:
    if isinstance(message, str):
        return Message(role='user', content=message)
    if isinstance(message, Message):
        return message
    if isinstance(message, Mapping):
        return Message.model_validate(dict(message))
    raise TypeError(f'chat takes a str or a message, got {type(message).__name__}')


def _signature(call: ToolCall) -> tuple[str, str]:
    """What makes two calls the same: the tool and the arguments (as parsed, when they parse)."""
    try:
        arguments = json.dumps(call.function.parsed_arguments(), sort_keys=True)
    except ValueError:
        arguments = call.function.arguments
    return call.function.name, arguments


def _reply_status(parsed: ParsedReply) -> AgentStatusCode:
    if any(request.code for request in parsed.requests):
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
