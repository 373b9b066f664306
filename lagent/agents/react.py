"""``ReAct``: reason and act in plain text (https://arxiv.org/abs/2210.03629).

The model writes ``Thought:`` / ``Action:`` / ``Action Input:`` to call a tool,
is shown ``Observation: <result>``, and ends with ``Final Answer:``. Everything
is text, so it works with every engine. Requests carry the observation keyword
as a stop word so the model stops before inventing a result. The keywords and
the instructions come from a :class:`ReActProtocol` (lagent 0.2's, whose
prompts and keywords may be changed).

The parser is lenient: case and spacing of the keywords do not matter, the
Action Input may be a JSON object, a fenced JSON block or plain text (given to
the tool's first parameter), and a reply with neither an Action nor a Final
Answer is taken as the answer. The last allowed reply is asked for with the
protocol's ``force_stop`` prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from lagent.actions import ActionExecutor
from lagent.agents._text import first_json_object, strip_fence
from lagent.agents.base import BaseAgent, ParsedReply, ToolRequest, ToolsLike, make_call, parameter_names
from lagent.agents.memory import AgentMemory
from lagent.llms.base import BaseLLM
from lagent.schema import ActionReturn, Message, Response

__all__ = [
    'CALL_PROTOCOL_CN',
    'CALL_PROTOCOL_EN',
    'FORCE_STOP_PROMPT_CN',
    'FORCE_STOP_PROMPT_EN',
    'ReAct',
    'ReActProtocol',
]

CALL_PROTOCOL_EN = """\
You can use these tools:

{tool_description}

To use a tool, reply in exactly this format:
{thought} what you need to find out
{action} the tool name, one of [{action_names}]
{action_input} the arguments as a JSON object

You are then shown:
{response} the tool's result

When you know the answer, reply:
{thought} why this is the answer
{finish} the answer"""
"""The English instructions; ``{tool_description}``, ``{action_names}`` and the keywords are filled in."""

FORCE_STOP_PROMPT_EN = 'Give your final answer now, from the observations above, without calling a tool.'
"""The English request for the answer in the last allowed reply."""

CALL_PROTOCOL_CN = """\
你可以使用以下工具：

{tool_description}

需要调用工具时，请严格按以下格式回复：
{thought} 你需要弄清楚什么
{action} 工具名称，从 [{action_names}] 中选择
{action_input} 以 JSON 对象给出的参数

随后你会看到：
{response} 工具返回的结果

当你知道答案时，请回复：
{thought} 得出答案的理由
{finish} 答案"""
"""The Chinese instructions (same placeholders as :data:`CALL_PROTOCOL_EN`)."""

FORCE_STOP_PROMPT_CN = '请根据以上观察结果直接给出最终答案，不要再调用工具。'
"""The Chinese request for the answer in the last allowed reply."""


class ReActProtocol:
    """The keywords and instructions of the ReAct format (lagent 0.2's protocol object).

    Each keyword is a dict whose ``begin`` is the text that starts its line
    (the other keys of lagent 0.2 are accepted and ignored).

    Args:
        thought: Starts the reasoning (``'Thought:'``).
        action: Starts the tool name (``'Action:'``).
        action_input: Starts the arguments (``'Action Input:'``).
        response: Starts a tool's result shown to the model (``'Observation:'``).
        finish: Starts the answer (``'Final Answer:'``).
        call_protocol: The instructions, with ``{tool_description}``,
            ``{action_names}`` and a placeholder per keyword.
        force_stop: The request for the answer in the last allowed reply.
    """

    def __init__(
        self,
        thought: Mapping[str, Any] | None = None,
        action: Mapping[str, Any] | None = None,
        action_input: Mapping[str, Any] | None = None,
        response: Mapping[str, Any] | None = None,
        finish: Mapping[str, Any] | None = None,
        call_protocol: str = CALL_PROTOCOL_EN,
        force_stop: str = FORCE_STOP_PROMPT_EN,
    ):
        self.thought = dict(thought or {'role': 'THOUGHT', 'begin': 'Thought:', 'end': '\n', 'belong': 'assistant'})
        self.action = dict(action or {'role': 'ACTION', 'begin': 'Action:', 'end': '\n'})
        self.action_input = dict(action_input or {'role': 'ARGS', 'begin': 'Action Input:', 'end': '\n'})
        self.response = dict(response or {'role': 'RESPONSE', 'begin': 'Observation:', 'end': '\n'})
        self.finish = dict(finish or {'role': 'FINISH', 'begin': 'Final Answer:', 'end': '\n'})
        self.call_protocol = call_protocol
        self.force_stop = force_stop
        self._thought = _keyword(self.thought['begin'], line_start=True)
        self._action = re.compile(r'^[ \t]*' + _keyword(self.action['begin']).pattern + r'[ \t]*(.*)$', re.I | re.M)
        self._action_input = _keyword(self.action_input['begin'])
        self._finish = _keyword(self.finish['begin'])
        ends = '|'.join(_keyword(getattr(self, name)['begin']).pattern for name in ('response', 'thought', 'finish'))
        self._input_end = re.compile(rf'^[ \t]*(?:{ends})', re.I | re.M)

    def instructions(self, tool_description: str, action_names: list[str]) -> str:
        """The instructions with the tools and keywords filled in."""
        return self.call_protocol.format(
            tool_description=tool_description,
            action_names=', '.join(action_names),
            thought=self.thought['begin'],
            action=self.action['begin'],
            action_input=self.action_input['begin'],
            response=self.response['begin'],
            finish=self.finish['begin'],
        )


class ReAct(BaseAgent):
    """A prompt-based agent using the Thought / Action / Observation / Final Answer format.

    Takes the arguments of :class:`~lagent.agents.BaseAgent`; ``system_prompt``
    opens the instructions, the protocol's instructions follow.

    Args:
        llm: Any LLM engine.
        tools: An :class:`~lagent.actions.ActionExecutor`, or the tools to build one from.
        protocol: The keywords and instructions (lagent 0.2); the default uses
            ``Observation:`` for results.
        **kwargs: The other arguments of :class:`~lagent.agents.BaseAgent`
            (``system_prompt``, ``max_turn``, ``memory``, ``tool_timeout``,
            ``action_executor``, generation settings).
    """

    default_system_prompt = 'You are a helpful assistant who answers by thinking step by step and using tools.'

    def __init__(
        self,
        llm: BaseLLM,
        tools: ToolsLike = None,
        protocol: ReActProtocol | None = None,
        *,
        max_turn: int = 5,
        memory: AgentMemory | None = None,
        action_executor: ActionExecutor | None = None,
        **kwargs: Any,
    ):
        super().__init__(llm, tools, max_turn=max_turn, memory=memory, action_executor=action_executor, **kwargs)
        if protocol is not None and not self.agent_returns:
            self._speaks_lagent_02('protocol', 'system_prompt')
        self.protocol = protocol or ReActProtocol()
        """The keywords and instructions."""
        self.stop_words = (self.protocol.response['begin'],)
        self.final_prompt = self.protocol.force_stop

    def _system_messages(self) -> list[Message]:
        instructions = self.protocol.instructions(self.executor.describe() or '(none)', self.executor.names)
        content = f'{self.system_prompt}\n\n{instructions}' if self.system_prompt else instructions
        return [Message(role='system', content=content)]

    def _parse_reply(self, response: Response, turn: int) -> ParsedReply:
        protocol = self.protocol
        text = response.text
        action = protocol._action.search(text)
        final = protocol._finish.search(text)
        if final is not None and (action is None or final.start() < action.start()):
            return ParsedReply(text=text[final.end() :].strip())
        if action is None:
            return ParsedReply(text=protocol._thought.sub('', text, count=1).strip())
        thought = protocol._thought.sub('', text[: action.start()], count=1).strip()
        name = action.group(1).strip().strip('`"\'[]').strip()
        if not name:
            error = (
                f'The {protocol.action["begin"]} line names no tool. Write "{protocol.action["begin"]} <tool name>" '
                f'and "{protocol.action_input["begin"]} {{...}}".'
            )
            return ParsedReply(text=thought, requests=[ToolRequest(call=None, error=error)])
        raw_input = self._action_input(text, action.end())
        arguments = _arguments(raw_input, parameter_names(self.executor).get(name, []))
        return ParsedReply(
            text=thought, requests=[ToolRequest(call=make_call(name, arguments, turn=turn, index=0), name=name)]
        )

    def _reply_message(self, response: Response, parsed: ParsedReply) -> Message:
        return Message(role='assistant', content=response.text.strip())

    def _result_message(self, request: ToolRequest, result: ActionReturn, observation: str) -> Message:
        return Message(role='user', content=f'{self.protocol.response["begin"]} {observation}')

    def _action_input(self, text: str, start: int) -> str:
        """The text after the Action Input keyword up to the next keyword line (``''`` if absent)."""
        found = self.protocol._action_input.search(text, start)
        if found is None:
            return ''
        rest = text[found.end() :]
        end = self.protocol._input_end.search(rest)
        return strip_fence(rest[: end.start()] if end else rest)


def _keyword(begin: str, *, line_start: bool = False) -> re.Pattern[str]:
    """A pattern for a keyword such as ``'Action Input:'``: any case, any spacing, the colon optional."""
    words = begin.strip().rstrip(':：').split()
    pattern = r'[ \t]*'.join(re.escape(word) for word in words) + r'[ \t]*[:：]'
    if line_start:
        return re.compile(r'^\s*' + pattern + r'\s*', re.I)
    return re.compile(pattern, re.I | re.M)


def _arguments(raw: str, parameters: list[str]) -> dict[str, Any] | str:
    """Arguments from an Action Input: a JSON object as it is; a JSON scalar or
    plain text for the tool's first parameter; text the executor will reject otherwise."""
    if not raw:
        return {}
    if raw.startswith('{'):
        try:
            return first_json_object(raw)
        except ValueError:
            return raw  # the executor reports the malformed JSON to the model
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip('"\'')
    if isinstance(value, dict):
        return value
    if parameters:
        return {parameters[0]: value}
    return raw
