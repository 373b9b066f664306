"""``Internlm2Agent``: the plugin and code-interpreter protocol of InternLM2 chat models.

The model calls a tool by writing, after its thought::

    <|action_start|><|plugin|>
    {"name": "calculator", "parameters": {"expression": "37 * 12"}}<|action_end|>

and sends code to the interpreter with::

    <|action_start|><|interpreter|>
    ```python
    print(37 * 12)
    ```<|action_end|>

Results come back in the ``environment`` role with the name ``plugin`` or
``interpreter``. The tools are listed as JSON in a system message named
``plugin``, the interpreter is introduced in one named ``interpreter``.
Requests stop at ``<|action_end|>`` and ``<|im_end|>``. These tokens, roles
and prompts are the vocabulary of an :class:`Internlm2Protocol` (lagent
0.2's protocol object, whose parts may be changed).

Prompts are rendered by the LLM when its meta_template renders the
``environment`` role (e.g. ``meta_template='internlm2'``, see
:attr:`~lagent.llms.BaseLLM.template_roles`); an LLM without a meta_template
gets a prompt rendered here with :data:`~lagent.prompts.INTERNLM2_META`, sent
as raw text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lagent.actions import ActionExecutor
from lagent.agents._text import arguments_object, first_json_object, strip_fence
from lagent.agents.base import (
    BaseAgent,
    ModelRequest,
    ParsedReply,
    ToolRequest,
    ToolsLike,
    make_call,
    parameter_names,
)
from lagent.agents.memory import AgentMemory
from lagent.llms.base import BaseLLM
from lagent.prompts import INTERNLM2_META, MetaTemplate
from lagent.schema import ActionReturn, AgentStatusCode, Message, Response

__all__ = ['DEFAULT_INTERPRETER_PROMPT', 'DEFAULT_PLUGIN_PROMPT', 'Internlm2Agent', 'Internlm2Protocol']

DEFAULT_PLUGIN_PROMPT = """\
You can use the following tools:
{tools}
Call a tool only when you need it, and only the tools listed here. When you have enough information, answer directly."""
"""Introduces the plugins; ``{tools}`` (or lagent 0.2's ``{prompt}``) becomes their JSON list."""

DEFAULT_INTERPRETER_PROMPT = """\
You can run Python code. Code you send to the interpreter runs in a sandboxed Python process and you are shown \
its output and the value of its last expression. Use it for calculations, data processing and checking facts with code."""
"""Introduces the code interpreter (``{code_prompt}``, if present, becomes the interpreter's description)."""

DEFAULT_SYSTEM_PROMPT = 'When tools or the code interpreter help, use them; otherwise answer directly.'


class Internlm2Protocol:
    """The vocabulary of InternLM2's tool protocol: prompts, action tokens and
    the role of tool results (lagent 0.2's protocol object).

    Args:
        meta_prompt: The opening system message (``None``: the agent's default).
        interpreter_prompt: Introduces the code interpreter.
        plugin_prompt: Introduces the plugins (``{tools}`` or ``{prompt}`` becomes their JSON list).
        few_shot: Example conversations (lists of message dicts) placed after the system messages.
        language: Accepted for lagent 0.2 compatibility (prose needs no markers).
        tool: The action syntax: ``start_token``, ``name_map`` (``plugin`` and
            ``interpreter`` tokens) and ``end`` (its stripped text ends an action).
        execute: Where results go: ``fallback_role`` (or ``role``) is their role.
    """

    def __init__(
        self,
        meta_prompt: str | None = None,
        interpreter_prompt: str = DEFAULT_INTERPRETER_PROMPT,
        plugin_prompt: str = DEFAULT_PLUGIN_PROMPT,
        few_shot: Sequence[Sequence[Mapping[str, Any]]] | None = None,
        language: Mapping[str, Any] | None = None,
        tool: Mapping[str, Any] | None = None,
        execute: Mapping[str, Any] | None = None,
    ):
        self.meta_prompt = meta_prompt
        self.interpreter_prompt = interpreter_prompt
        self.plugin_prompt = plugin_prompt
        self.few_shot = [list(conversation) for conversation in few_shot or ()]
        self.language = dict(language or {'begin': '', 'end': '', 'belong': 'assistant'})
        self.tool = dict(
            tool
            or {
                'begin': '{start_token}{name}\n',
                'start_token': '<|action_start|>',
                'name_map': {'plugin': '<|plugin|>', 'interpreter': '<|interpreter|>'},
                'belong': 'assistant',
                'end': '<|action_end|>\n',
            }
        )
        self.execute = dict(execute or {'role': 'execute', 'begin': '', 'end': '', 'fallback_role': 'environment'})
        names = self.tool.get('name_map') or {}
        self.start_token: str = self.tool.get('start_token', '<|action_start|>')
        """Opens an action."""
        self.plugin_token: str = names.get('plugin', '<|plugin|>')
        """Names a plugin call."""
        self.interpreter_token: str = names.get('interpreter', '<|interpreter|>')
        """Names code for the interpreter."""
        self.end_token: str = self.tool.get('end', '<|action_end|>\n').strip()
        """Closes an action (a stop word)."""
        self.result_role: str = self.execute.get('fallback_role') or self.execute.get('role') or 'environment'
        """The role of tool results."""
        self.action = re.compile(
            rf'(?:{re.escape(self.start_token)}\s*)?({re.escape(self.plugin_token)}|{re.escape(self.interpreter_token)})'
        )
        """Finds the start of an action; group 1 is its name token."""

    def action_text(self, name_token: str, body: str) -> str:
        """An action as the model writes it."""
        return f'{self.start_token}{name_token}\n{body}{self.end_token}\n'


class Internlm2Agent(BaseAgent):
    """An agent speaking InternLM2's plugin / interpreter protocol.

    lagent 0.2's ``Internlm2Agent(llm, plugin_executor, interpreter_executor,
    protocol, max_turn)`` runs unchanged (see :class:`~lagent.agents.BaseAgent`).

    Args:
        llm: Any LLM engine (see the module docstring for how prompts are rendered).
        tools: The plugins: an :class:`~lagent.actions.ActionExecutor` or the tools to build one from.
        interpreter: The tool that runs code from interpreter blocks (e.g.
            :class:`~lagent.actions.PythonInterpreter`, or an executor holding
            one); it receives the code in its first parameter. ``None``: no interpreter.
        protocol: The protocol's tokens and prompts (default :class:`Internlm2Protocol`).
        system_prompt: Instructions opening the conversation (default: the protocol's ``meta_prompt``).
        plugin_prompt: Introduces the plugins (default: the protocol's).
        interpreter_prompt: Introduces the interpreter (default: the protocol's).
        max_turn: Most model replies in one run.
        memory: A conversation to continue.
        tool_timeout: Seconds a tool call may take, when executors are built here.
        plugin_executor: lagent 0.2's name for ``tools``.
        interpreter_executor: lagent 0.2's name for ``interpreter``.
        **gen_params: Generation settings for every request.

    Raises:
        ValueError: The LLM's meta_template cannot render the protocol's result
            role, the interpreter is not exactly one tool, or a setting is invalid.
    """

    default_system_prompt = DEFAULT_SYSTEM_PROMPT

    def __init__(
        self,
        llm: BaseLLM,
        tools: ToolsLike = None,
        interpreter: Any = None,
        protocol: Internlm2Protocol | None = None,
        *,
        system_prompt: str | None = None,
        plugin_prompt: str | None = None,
        interpreter_prompt: str | None = None,
        max_turn: int = 5,
        memory: AgentMemory | None = None,
        tool_timeout: float | None = 30.0,
        plugin_executor: ActionExecutor | None = None,
        interpreter_executor: ActionExecutor | None = None,
        **gen_params: Any,
    ):
        given = {'plugin_executor': plugin_executor, 'interpreter_executor': interpreter_executor, 'protocol': protocol}
        legacy = [name for name, value in given.items() if value is not None]
        tools = plugin_executor if plugin_executor is not None else tools
        interpreter = interpreter_executor if interpreter_executor is not None else interpreter
        self.protocol = protocol or Internlm2Protocol()
        """The protocol's tokens and prompts."""
        if system_prompt is None:
            system_prompt = self.protocol.meta_prompt
        super().__init__(
            llm,
            tools,
            system_prompt=system_prompt,
            max_turn=max_turn,
            memory=memory,
            tool_timeout=tool_timeout,
            **gen_params,
        )
        if legacy:
            self._speaks_lagent_02(legacy[0], 'tools=, interpreter= and the prompt arguments')
        self.interpreter: ActionExecutor | None = None
        """The executor of the code interpreter, if any."""
        if interpreter is not None:
            self.interpreter = (
                interpreter
                if isinstance(interpreter, ActionExecutor)
                else ActionExecutor([interpreter], timeout=tool_timeout)
            )
            if len(self.interpreter.names) != 1:
                raise ValueError(f'the interpreter must be one tool, got {self.interpreter.names}')
        self.plugin_prompt = self.protocol.plugin_prompt if plugin_prompt is None else plugin_prompt
        self.interpreter_prompt = self.protocol.interpreter_prompt if interpreter_prompt is None else interpreter_prompt
        self.stop_words = (self.protocol.end_token, '<|im_end|>')
        self._prompt_template = _own_template(llm, self.protocol.result_role)

    # ------------------------------------------------------------------ protocol

    def _system_messages(self) -> list[Message]:
        messages = super()._system_messages()
        if self.interpreter is not None and self.interpreter_prompt:
            description = self.interpreter.tools[0].description
            content = self.interpreter_prompt.replace('{code_prompt}', description)
            messages.append(Message(role='system', name='interpreter', content=content))
        schemas = self.executor.tool_schemas()
        if schemas and self.plugin_prompt:
            tools = json.dumps([schema['function'] for schema in schemas], ensure_ascii=False, indent=2)
            content = self.plugin_prompt.replace('{tools}', tools).replace('{prompt}', tools)
            messages.append(Message(role='system', name='plugin', content=content))
        for conversation in self.protocol.few_shot:
            messages.extend(Message.model_validate(dict(message)) for message in conversation)
        return messages

    def _model_request(self, turn: int, final: bool) -> ModelRequest:
        conversation = self._conversation(final)
        if self._prompt_template is None:
            return ModelRequest(turn=turn, inputs=conversation)
        return ModelRequest(turn=turn, inputs=self._prompt_template.render(conversation))

    def _parse_reply(self, response: Response, turn: int) -> ParsedReply:
        protocol = self.protocol
        text = response.text
        action = protocol.action.search(text)
        if action is None:
            return ParsedReply(text=text.split(protocol.start_token)[0].strip())
        thought = text[: action.start()].strip()
        body = text[action.end() :].split(protocol.end_token)[0].strip()
        if action.group(1) == protocol.interpreter_token:
            return ParsedReply(text=thought, requests=[self._interpreter_request(body, turn)])
        return ParsedReply(text=thought, requests=[_plugin_request(body, turn)])

    def _interpreter_request(self, body: str, turn: int) -> ToolRequest:
        if self.interpreter is None:
            return ToolRequest(call=None, code=True, error='No code interpreter is available; use a plugin.')
        name = self.interpreter.names[0]
        parameters = parameter_names(self.interpreter)[name]
        code = strip_fence(body)
        arguments = {parameters[0]: code} if parameters else {}
        return ToolRequest(call=make_call(name, arguments, turn=turn, index=0), code=True, name=name)

    def _reply_message(self, response: Response, parsed: ParsedReply) -> Message:
        request = parsed.requests[0] if parsed.requests else None
        if request is None or request.call is None:
            return Message(role='assistant', content=response.text.strip())
        prefix = f'{parsed.text}\n' if parsed.text else ''
        try:
            arguments: Any = request.call.function.parsed_arguments()
        except ValueError:
            arguments = request.call.function.arguments
        protocol = self.protocol
        if request.code:
            code = next(iter(arguments.values()), '')
            action = protocol.action_text(protocol.interpreter_token, f'```python\n{code}\n```')
        else:
            call = {'name': request.call.function.name, 'parameters': arguments}
            action = protocol.action_text(protocol.plugin_token, json.dumps(call, ensure_ascii=False))
        return Message(role='assistant', content=prefix + action)

    def _result_message(self, request: ToolRequest, result: ActionReturn, observation: str) -> Message:
        return Message(
            role=self.protocol.result_role, name='interpreter' if request.code else 'plugin', content=observation
        )

    def _executor_for(self, request: ToolRequest) -> ActionExecutor:
        if request.code and self.interpreter is not None:
            return self.interpreter
        return self.executor

    def _stream_view(self, text: str) -> tuple[str, AgentStatusCode, Any]:
        protocol = self.protocol
        action = protocol.action.search(text)
        if action is None:
            prose = _without_partial_token(text.split(protocol.start_token)[0], protocol.start_token)
            return prose, AgentStatusCode.STREAM_ING, prose
        prose = text[: action.start()]
        body = text[action.end() :].split(protocol.end_token)[0]
        if action.group(1) == protocol.plugin_token:
            return prose, AgentStatusCode.PLUGIN_START, body.strip()
        name = self.interpreter.names[0] if self.interpreter is not None else 'IPythonInterpreter'
        code = body.strip()
        for fence in ('```python', '```'):
            if fence.startswith(code):  # the opening fence is still arriving
                code = ''
            code = code.removeprefix(fence)
        code = code.rstrip('`').strip()
        return prose, AgentStatusCode.CODING, {'name': name, 'parameters': {'command': code}}


def _own_template(llm: BaseLLM, result_role: str) -> MetaTemplate | None:
    """The template to render prompts with here, or ``None`` when the LLM renders them.

    Raises:
        ValueError: The LLM's meta_template cannot render the role of tool results.
    """
    roles = llm.template_roles
    if roles is None:
        return MetaTemplate(INTERNLM2_META)
    if result_role not in roles:
        raise ValueError(
            f"the LLM's meta_template has no {result_role!r} role for tool results (roles: {', '.join(sorted(roles))}); "
            "use meta_template='internlm2' (or no template)"
        )
    return None


def _without_partial_token(text: str, token: str) -> str:
    """``text`` without an unfinished ``token`` at its end (``'...<|action_st'``)."""
    for length in range(min(len(token) - 1, len(text)), 0, -1):
        if text.endswith(token[:length]):
            return text[:-length]
    return text


def _plugin_request(body: str, turn: int) -> ToolRequest:
    try:
        data = first_json_object(body)
    except ValueError as exc:
        return ToolRequest(call=None, error=f'Could not read the plugin call: {exc}. {_PLUGIN_FORMAT}')
    name = data.get('name')
    if not isinstance(name, str) or not name:
        return ToolRequest(call=None, error=f'The plugin call has no "name". {_PLUGIN_FORMAT}')
    arguments = arguments_object(data.get('parameters', data.get('arguments')))
    return ToolRequest(call=make_call(name, arguments, turn=turn, index=0), name=name)


_PLUGIN_FORMAT = 'Write {"name": "<tool name>", "parameters": {...}} after <|action_start|><|plugin|>.'
