"""``FunctionCallAgent``: tool calling the OpenAI way, or from text where the engine has no native tools.

Two paths, chosen from the LLM's declared capabilities:

* **native** — the engine has ``native_tools`` and sends conversations to its
  messages path (no prompt template of lagent's): the request carries
  ``tools=`` and ``tool_choice=``, the model answers with ``tool_calls``, and the
  conversation grows by an assistant message with those calls and one ``tool``
  message per result, exactly as in the OpenAI protocol;
* **text** — otherwise: the tools are described in the system prompt as JSON,
  the model writes ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
  (the Hermes / Qwen convention), and each result comes back as a user message
  ``<tool_response>...</tool_response>``.

Which tool choice each reply gets (native path), on top of the finishing
policy of :mod:`lagent.agents.base`:

* the first reply: ``tool_choice``;
* later replies: ``next_tool_choice``;
* by default, an agent with exactly one tool calls it in its first reply and
  answers from the result in the next (``tool_choice`` = that tool,
  ``next_tool_choice='none'``): a small model rarely decides to call a tool
  on its own, and once it has a result it tends to call again instead of
  answering. With several tools both default to ``'auto'``;
* the last allowed reply: ``'none'``.

Every native reply asked for with ``'none'`` also gets the request to answer,
with the question and the run's tool results again (see the finishing policy).

Streaming on the native path: a reply in which the model may choose a tool
(``tool_choice`` ``'auto'`` or ``'required'``) is requested whole by default,
because some servers refuse to stream it (llama.cpp's
``chatml-function-calling`` answers HTTP 500); its text then arrives as one
delta. Pass ``stream_auto_tools=True`` for servers that stream it. Replies
with a forced tool, ``'none'`` or no tools always stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lagent.actions import ActionExecutor
from lagent.agents._text import arguments_object, first_json_object, strip_fence
from lagent.agents.base import BaseAgent, ModelRequest, ParsedReply, ToolRequest, ToolsLike, make_call
from lagent.agents.memory import AgentMemory
from lagent.llms.base import BaseLLM
from lagent.schema import ActionReturn, Message, Response

__all__ = ['FunctionCallAgent', 'text_tool_call', 'text_tool_result', 'text_tools_prompt']

_TOOL_CALL = re.compile(r'<tool_call>(.*?)(?:</tool_call>|$)', re.S)

_TEXT_TOOLS_PROMPT = """\
You can call the following tools. Each is described by a JSON object:
<tools>
{tools}
</tools>

To call a tool, write its name and arguments as a JSON object between <tool_call> and </tool_call>:
<tool_call>
{{"name": "<tool name>", "arguments": {{"<parameter>": <value>}}}}
</tool_call>
Each result comes back between <tool_response> and </tool_response>. When you know the answer, reply to the user in plain text."""


class FunctionCallAgent(BaseAgent):
    """An agent that calls tools through the engine's native function calling,
    or through ``<tool_call>`` JSON in the text where there is none.

    Args:
        llm: Any LLM engine.
        tools: An :class:`~lagent.actions.ActionExecutor`, or the tools to build one from.
        system_prompt: Instructions replacing the default ones (the text path
            appends the tool descriptions to them).
        max_turn: Most model replies in one run.
        memory: A conversation to continue.
        tool_timeout: Seconds a tool call may take, when the executor is built here.
        native: Force the native (``True``) or text (``False``) path; ``None``
            picks native where the engine supports it.
        tool_choice: For the first reply of each run (native path): ``'auto'``,
            ``'none'``, ``'required'``, a tool's name, or an OpenAI
            ``{"type": "function", "function": {"name": ...}}``; ``None``
            forces the only tool when there is exactly one, else ``'auto'``.
        next_tool_choice: For the later replies of each run: ``'auto'`` lets
            the model call more tools or answer, ``'none'`` makes it answer;
            ``None``: ``'none'`` when there is exactly one tool, else ``'auto'``.
        stream_auto_tools: Stream native replies in which the model may choose
            a tool (see the module docstring).
        action_executor: lagent 0.2's name for ``tools``.
        **gen_params: Generation settings for every request.

    Raises:
        ValueError: ``native=True`` but the engine cannot send tools natively,
            ``tool_choice`` names no tool, or a setting is invalid.
    """

    default_system_prompt = 'You are a helpful assistant. Call a tool whenever it helps to answer the user.'

    def __init__(
        self,
        llm: BaseLLM,
        tools: ToolsLike = None,
        *,
        system_prompt: str | None = None,
        max_turn: int = 5,
        memory: AgentMemory | None = None,
        tool_timeout: float | None = 30.0,
        native: bool | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        next_tool_choice: str | Mapping[str, Any] | None = None,
        stream_auto_tools: bool = False,
        action_executor: ActionExecutor | None = None,
        **gen_params: Any,
    ):
        super().__init__(
            llm,
            tools,
            system_prompt=system_prompt,
            max_turn=max_turn,
            memory=memory,
            tool_timeout=tool_timeout,
            action_executor=action_executor,
            **gen_params,
        )
        can_go_native = llm.tool_calling == 'native'
        if native and not can_go_native:
            raise ValueError(
                f'{type(llm).__name__} cannot send tools natively here (no native_tools, or a prompt template '
                'renders its conversations); use native=False'
            )
        self.native = can_go_native if native is None else native
        """Whether tool calls go through the engine's native function calling."""
        only_tool = self.executor.names[0] if len(self.executor.names) == 1 else None
        if tool_choice is None:
            tool_choice = only_tool or 'auto'
        if next_tool_choice is None:
            next_tool_choice = 'none' if only_tool else 'auto'
        self.tool_choice = _normalize_tool_choice(tool_choice, self.executor.names)
        """The tool choice of the first reply of each run."""
        self.next_tool_choice = _normalize_tool_choice(next_tool_choice, self.executor.names)
        """The tool choice of the later replies of each run."""
        self.stream_auto_tools = stream_auto_tools
        self.stop_words = () if self.native else ('<tool_response>',)

    # ------------------------------------------------------------------ protocol

    def _system_messages(self) -> list[Message]:
        if self.native or not self.executor.names:
            return super()._system_messages()
        return [Message(role='system', content=text_tools_prompt(self.system_prompt, self.executor.tool_schemas()))]

    def _model_request(self, turn: int, final: bool) -> ModelRequest:
        tools = self.executor.tool_schemas()
        if not self.native or not tools:
            return ModelRequest(turn=turn, inputs=self._conversation(final))
        if final:
            choice: str | dict[str, Any] = 'none'
        else:
            choice = self.tool_choice if turn == 1 else self.next_tool_choice
        # a reply without tools is asked for the answer, with the question and the results again
        conversation = self._conversation(choice == 'none')
        stream = self.stream_auto_tools or not isinstance(choice, str) or choice == 'none'
        return ModelRequest(turn=turn, inputs=conversation, tools=tools, tool_choice=choice, stream=stream)

    def _parse_reply(self, response: Response, turn: int) -> ParsedReply:
        if self.native:
            requests = [ToolRequest(call=call, name=call.function.name) for call in response.tool_calls]
            return ParsedReply(text=response.text.strip(), requests=requests)
        text = response.text
        blocks = list(_TOOL_CALL.finditer(text))
        if not blocks:
            return ParsedReply(text=text.strip())
        requests = [_parse_tool_call(block.group(1), turn, index) for index, block in enumerate(blocks)]
        return ParsedReply(text=text[: blocks[0].start()].strip(), requests=requests)

    def _reply_message(self, response: Response, parsed: ParsedReply) -> Message:
        if self.native and response.tool_calls:
            # content '' rather than None: some servers' templates read it unconditionally
            return Message(role='assistant', content=response.text, tool_calls=response.tool_calls)
        return Message(role='assistant', content=response.text.strip())

    def _result_message(self, request: ToolRequest, result: ActionReturn, observation: str) -> Message:
        if self.native and request.call is not None:
            return Message(role='tool', tool_call_id=request.call.id, content=observation)
        return Message(role='user', content=text_tool_result(observation))


# ---------------------------------------------------------------------- the text protocol


def text_tools_prompt(system_prompt: str | None, tool_schemas: Sequence[Mapping[str, Any]]) -> str:
    """The system prompt of the text path: the instructions, then the tools and how to call them.

    Args:
        system_prompt: Instructions that come first (``None`` or ``''``: none).
        tool_schemas: Tools in the OpenAI format (``{"type": "function", "function": {...}}``).
    """
    tools = '\n'.join(json.dumps(schema['function'], ensure_ascii=False) for schema in tool_schemas)
    prompt = _TEXT_TOOLS_PROMPT.format(tools=tools)
    return f'{system_prompt}\n\n{prompt}' if system_prompt else prompt


def text_tool_call(name: str, arguments: str | Mapping[str, Any]) -> str:
    """A tool call written the way the text path asks the model to write one.

    Args:
        name: The tool's name.
        arguments: The arguments, as an object or as the JSON text of a native call
            (JSON that does not decode to an object is kept as a string).
    """
    value = arguments_object(arguments) if isinstance(arguments, str) else dict(arguments)
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": value}, ensure_ascii=False)}\n</tool_call>'


def text_tool_result(observation: str) -> str:
    """A tool's result as the text path shows it to the model (in a user message)."""
    return f'<tool_response>\n{observation}\n</tool_response>'


def _normalize_tool_choice(choice: str | Mapping[str, Any], names: list[str]) -> str | dict[str, Any]:
    if isinstance(choice, Mapping):
        name = (choice.get('function') or {}).get('name')
        if name not in names:
            raise ValueError(f'tool_choice names {name!r}, which is not a tool; tools: {", ".join(names) or "(none)"}')
        return {'type': 'function', 'function': {'name': name}}
    if choice in ('auto', 'none', 'required'):
        return choice
    if choice in names:
        return {'type': 'function', 'function': {'name': choice}}
    raise ValueError(
        f'tool_choice must be "auto", "none", "required" or a tool name, got {choice!r}; '
        f'tools: {", ".join(names) or "(none)"}'
    )


def _parse_tool_call(body: str, turn: int, index: int) -> ToolRequest:
    try:
        data = first_json_object(strip_fence(body))
    except ValueError as exc:
        return ToolRequest(call=None, error=f'Could not read the tool call: {exc}. {_CALL_FORMAT}')
    name = data.get('name')
    if not isinstance(name, str) or not name:
        return ToolRequest(call=None, error=f'The tool call has no "name". {_CALL_FORMAT}')
    arguments = arguments_object(data.get('arguments', data.get('parameters')))
    return ToolRequest(call=make_call(name, arguments, turn=turn, index=index), name=name)


_CALL_FORMAT = 'Write <tool_call>{"name": "<tool name>", "arguments": {...}}</tool_call>.'
