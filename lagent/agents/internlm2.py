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
Requests stop at ``<|action_end|>`` and ``<|im_end|>``.

Prompts are rendered with the LLM's own meta_template when it has an
``environment`` role (e.g. ``meta_template='internlm2'``); an LLM without a
template gets a prompt rendered here with
:data:`~lagent.prompts.INTERNLM2_META`, sent as raw text.
"""

from __future__ import annotations

import json
import re
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
from lagent.schema import ActionReturn, Message, Response

__all__ = ['Internlm2Agent']

ACTION_START = '<|action_start|>'
ACTION_END = '<|action_end|>'
_ACTION = re.compile(r'(?:<\|action_start\|>\s*)?<\|(plugin|interpreter)\|>')

DEFAULT_PLUGIN_PROMPT = """\
You can use the following tools:
{tools}
Call a tool only when you need it, and only the tools listed here. When you have enough information, answer directly."""

DEFAULT_INTERPRETER_PROMPT = """\
You can run Python code. Code you send to the interpreter runs in a sandboxed Python process and you are shown \
its output and the value of its last expression. Use it for calculations, data processing and checking facts with code."""


class Internlm2Agent(BaseAgent):
    """An agent speaking InternLM2's plugin / interpreter protocol.

    Args:
        llm: Any LLM engine (see the module docstring for how prompts are rendered).
        tools: The plugins: an :class:`~lagent.actions.ActionExecutor` or the tools to build one from.
        interpreter: The tool that runs code from ``<|interpreter|>`` blocks
            (e.g. :class:`~lagent.actions.PythonInterpreter`); it receives the
            code in its first parameter. ``None``: no interpreter.
        system_prompt: Instructions opening the conversation.
        plugin_prompt: Introduces the plugins; ``{tools}`` becomes their JSON list.
        interpreter_prompt: Introduces the interpreter.
        max_turn: Most model replies in one run.
        memory: A conversation to continue.
        tool_timeout: Seconds a tool call may take, when executors are built here.
        **gen_params: Generation settings for every request.

    Raises:
        ValueError: The LLM's meta_template has no ``environment`` role, the
            interpreter is not exactly one tool, or a setting is invalid.
    """

    default_system_prompt = 'When tools or the code interpreter help, use them; otherwise answer directly.'
    stop_words = (ACTION_END, '<|im_end|>')

    def __init__(
        self,
        llm: BaseLLM,
        tools: ToolsLike = None,
        *,
        interpreter: Any = None,
        system_prompt: str | None = None,
        plugin_prompt: str = DEFAULT_PLUGIN_PROMPT,
        interpreter_prompt: str = DEFAULT_INTERPRETER_PROMPT,
        max_turn: int = 5,
        memory: AgentMemory | None = None,
        tool_timeout: float | None = 30.0,
        **gen_params: Any,
    ):
        super().__init__(
            llm,
            tools,
            system_prompt=system_prompt,
            max_turn=max_turn,
            memory=memory,
            tool_timeout=tool_timeout,
            **gen_params,
        )
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
        self.plugin_prompt = plugin_prompt
        self.interpreter_prompt = interpreter_prompt
        self._prompt_template = _own_template(llm)

    # ------------------------------------------------------------------ protocol

    def _system_messages(self) -> list[Message]:
        messages = super()._system_messages()
        if self.interpreter is not None and self.interpreter_prompt:
            messages.append(Message(role='system', name='interpreter', content=self.interpreter_prompt))
        schemas = self.executor.tool_schemas()
        if schemas and self.plugin_prompt:
            tools = json.dumps([schema['function'] for schema in schemas], ensure_ascii=False, indent=2)
            messages.append(Message(role='system', name='plugin', content=self.plugin_prompt.format(tools=tools)))
        return messages

    def _model_request(self, turn: int) -> ModelRequest:
        conversation = self._conversation()
        if self._prompt_template is None:
            return ModelRequest(turn=turn, inputs=conversation)
        return ModelRequest(turn=turn, inputs=self._prompt_template.render(conversation))

    def _parse_reply(self, response: Response, turn: int) -> ParsedReply:
        text = response.text
        action = _ACTION.search(text)
        if action is None:
            return ParsedReply(text=text.split(ACTION_START)[0].strip())
        thought = text[: action.start()].strip()
        body = text[action.end() :].split(ACTION_END)[0].strip()
        if action.group(1) == 'interpreter':
            return ParsedReply(text=thought, requests=[self._interpreter_request(body, turn)])
        return ParsedReply(text=thought, requests=[_plugin_request(body, turn)])

    def _interpreter_request(self, body: str, turn: int) -> ToolRequest:
        if self.interpreter is None:
            return ToolRequest(call=None, kind='interpreter', error='No code interpreter is available; use a plugin.')
        name = self.interpreter.names[0]
        parameters = parameter_names(self.interpreter)[name]
        code = strip_fence(body)
        arguments = {parameters[0]: code} if parameters else {}
        return ToolRequest(call=make_call(name, arguments, turn=turn, index=0), kind='interpreter', name=name)

    def _reply_message(self, response: Response, parsed: ParsedReply) -> Message:
        request = parsed.requests[0] if parsed.requests else None
        if request is None or request.call is None:
            return Message(role='assistant', content=response.text.strip())
        prefix = f'{parsed.text}\n' if parsed.text else ''
        try:
            arguments: Any = request.call.function.parsed_arguments()
        except ValueError:
            arguments = request.call.function.arguments
        if request.kind == 'interpreter':
            code = next(iter(arguments.values()), '')
            action = f'{ACTION_START}<|interpreter|>\n```python\n{code}\n```{ACTION_END}\n'
        else:
            call = {'name': request.call.function.name, 'parameters': arguments}
            action = f'{ACTION_START}<|plugin|>\n{json.dumps(call, ensure_ascii=False)}{ACTION_END}\n'
        return Message(role='assistant', content=prefix + action)

    def _result_message(self, request: ToolRequest, result: ActionReturn, observation: str) -> Message:
        return Message(role='environment', name=request.kind, content=observation)

    def _executor_for(self, request: ToolRequest) -> ActionExecutor:
        if request.kind == 'interpreter' and self.interpreter is not None:
            return self.interpreter
        return self.executor


def _own_template(llm: BaseLLM) -> MetaTemplate | None:
    """The template to render prompts with here, or ``None`` when the LLM renders them.

    Raises:
        ValueError: The LLM's meta_template cannot render the ``environment`` role.
    """
    template = llm.template
    if template is None:
        return MetaTemplate(INTERNLM2_META)
    if isinstance(template, MetaTemplate) and 'environment' not in template.roles:
        raise ValueError(
            "the LLM's meta_template has no 'environment' role for tool results; "
            "use meta_template='internlm2' (or no template)"
        )
    return None


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
