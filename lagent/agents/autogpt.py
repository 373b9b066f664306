"""``AutoGPT``: an autonomous agent that answers every step with one JSON
command (after https://github.com/Significant-Gravitas/AutoGPT).

Each reply is a JSON object::

    {"thoughts": {"text": ..., "reasoning": ..., "plan": ..., "criticism": ..., "speak": ...},
     "command": {"name": "<tool or finish>", "args": {...}}}

A tool command runs the tool and the model is shown ``Command <name>
returned: <result>``; the ``finish`` command ends the run with its
``response`` argument as the answer. A reply that is not such an object is
shown to the model with what is wrong. The last allowed reply is asked to
``finish``.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from lagent.actions import ActionExecutor
from lagent.agents._text import strip_fence
from lagent.agents.base import BaseAgent, ParsedReply, ToolRequest, ToolsLike, make_call
from lagent.agents.memory import AgentMemory
from lagent.llms.base import BaseLLM
from lagent.schema import ActionReturn, Message, Response

__all__ = [
    'DEFAULT_CALL_PROTOCOL',
    'DEFAULT_PREFIX',
    'DEFAULT_SCHEMA',
    'DEFAULT_TRIGGERING_PROMPT',
    'AutoGPT',
    'AutoGPTProtocol',
]

FINISH = 'finish'
"""The command that ends a run."""

DEFAULT_PREFIX = """\
You are {ai_name}{role_description}. You decide on your own, without asking the user for help, and prefer simple strategies.
The OS you are running on is: {os_info}
## Commands
You can use these commands:
{tool_description}
{finish}: Give the final answer and stop. Args: {{"response": "<the answer>"}}
## Goal
{ai_goals}"""
"""The agent's instructions (``{ai_name}``, ``{role_description}``, ``{os_info}``,
``{tool_description}``, ``{finish}``, ``{ai_goals}``)."""

DEFAULT_CALL_PROTOCOL = """\
Reply with exactly one JSON object and nothing else:
{"thoughts": {"text": "thought", "reasoning": "why", "plan": "- short bulleted plan", "criticism": "self-criticism", "speak": "summary for the user"},
 "command": {"name": "command name", "args": {"arg name": "value"}}}"""
"""The reply format."""

DEFAULT_SCHEMA = {
    'type': 'object',
    'properties': {
        'thoughts': {
            'type': 'object',
            'properties': {
                'text': {'type': 'string'},
                'reasoning': {'type': 'string'},
                'plan': {'type': 'string'},
                'criticism': {'type': 'string'},
                'speak': {'type': 'string'},
            },
        },
        'command': {
            'type': 'object',
            'properties': {'name': {'type': 'string'}, 'args': {'type': 'object'}},
            'required': ['name'],
        },
    },
    'required': ['command'],
}
"""The JSON schema of a reply."""

DEFAULT_TRIGGERING_PROMPT = (
    'Choose exactly one command from the goal and the progress so far, and reply with the JSON object described above.'
)
"""Ends every request."""


class AutoGPTProtocol:
    """The prompts of AutoGPT (lagent 0.2's protocol object).

    Args:
        ai_name: The agent's name.
        role_description: What the agent is (appended to its name).
        prefix: The instructions (see :data:`DEFAULT_PREFIX`).
        call_protocol: The reply format.
        valid_schema: The JSON schema of a reply, kept for reference (replies are
            checked for what the agent needs: a ``command`` with a ``name``).
        triggering_prompt: Ends every request.
    """

    def __init__(
        self,
        ai_name: str = 'AutoGPT',
        role_description: str = '',
        prefix: str = DEFAULT_PREFIX,
        call_protocol: str = DEFAULT_CALL_PROTOCOL,
        valid_schema: dict[str, Any] | None = None,
        triggering_prompt: str = DEFAULT_TRIGGERING_PROMPT,
    ):
        self.ai_name = ai_name
        self.role_description = role_description
        self.prefix = prefix
        self.call_protocol = call_protocol
        self.valid_schema = valid_schema or DEFAULT_SCHEMA
        self.triggering_prompt = triggering_prompt


class AutoGPT(BaseAgent):
    """An agent that answers each step with one JSON command; ``finish`` ends the run.

    Args:
        llm: Any LLM engine.
        tools: An :class:`~lagent.actions.ActionExecutor`, or the tools to build one from.
        protocol: The prompts (default :class:`AutoGPTProtocol`).
        max_turn: Most replies in one run.
        memory: A conversation to continue.
        action_executor: lagent 0.2's name for ``tools``.
        **kwargs: The other arguments of :class:`~lagent.agents.BaseAgent`.
    """

    def __init__(
        self,
        llm: BaseLLM,
        tools: ToolsLike = None,
        protocol: AutoGPTProtocol | None = None,
        *,
        max_turn: int = 5,
        memory: AgentMemory | None = None,
        action_executor: ActionExecutor | None = None,
        **kwargs: Any,
    ):
        super().__init__(llm, tools, max_turn=max_turn, memory=memory, action_executor=action_executor, **kwargs)
        if protocol is not None and not self.agent_returns:
            self._speaks_lagent_02('protocol', 'the prompt attributes of AutoGPTProtocol on agent.protocol')
        self.protocol = protocol or AutoGPTProtocol()
        """The prompts."""
        self.final_prompt = f'Use the "{FINISH}" command now to give the final answer.'

    def _system_messages(self) -> list[Message]:
        import platform

        protocol = self.protocol
        goals = [message.text for message in self.memory.messages if message.role == 'user'][:1]
        role = f', {protocol.role_description}' if protocol.role_description else ''
        prefix = (
            protocol.prefix.replace('{ai_name}', protocol.ai_name)
            .replace('{role_description}', role)
            .replace('{os_info}', platform.platform(terse=True))
            .replace('{tool_description}', self.executor.describe() or '(none)')
            .replace('{finish}', FINISH)
            .replace('{ai_goals}', goals[0] if goals else '')
        )
        system = f'{self.system_prompt}\n\n{prefix}' if self.system_prompt else prefix
        return [Message(role='system', content=system), Message(role='system', content=protocol.call_protocol)]

    def _conversation(self, final: bool = False) -> list[Message]:
        conversation = super()._conversation(final)
        if not final:
            conversation.append(Message(role='user', content=self.protocol.triggering_prompt))
        return conversation

    def _parse_reply(self, response: Response, turn: int) -> ParsedReply:
        try:
            reply = _json_reply(response.text)
        except ValueError as exc:
            return ParsedReply(text='', requests=[ToolRequest(call=None, error=f'{exc}. {_FORMAT}')])
        problems = _schema_problems(reply)
        if problems:
            return ParsedReply(text='', requests=[ToolRequest(call=None, error=f'{problems}. {_FORMAT}')])
        thought = str((reply.get('thoughts') or {}).get('text') or '')
        command = reply['command']
        name, arguments = command['name'], command.get('args') or {}
        if name == FINISH:
            answer = arguments.get('response') if isinstance(arguments, dict) else arguments
            return ParsedReply(text=str(answer if answer is not None else '').strip())
        return ParsedReply(
            text=thought, requests=[ToolRequest(call=make_call(name, arguments, turn=turn, index=0), name=name)]
        )

    def _reply_message(self, response: Response, parsed: ParsedReply) -> Message:
        return Message(role='assistant', content=response.text.strip())

    def _result_message(self, request: ToolRequest, result: ActionReturn, observation: str) -> Message:
        name = request.name or 'the command'
        return Message(role='user', content=f'Command {name} returned: {observation}')


_FORMAT = 'Reply with one JSON object: {"thoughts": {...}, "command": {"name": ..., "args": {...}}}'


def _json_reply(text: str) -> dict[str, Any]:
    """The JSON object of a reply (Python-literal dicts are accepted too).

    Raises:
        ValueError: The reply is not one object.
    """
    body = strip_fence(text)
    start, end = body.find('{'), body.rfind('}')
    if start < 0 or end < start:
        raise ValueError('the reply holds no JSON object')
    body = body[start : end + 1]
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        try:
            value = ast.literal_eval(body)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(f'the reply is not valid JSON ({exc.msg} at character {exc.pos})') from None
    if not isinstance(value, dict):
        raise ValueError('the reply is not a JSON object')
    return value


def _schema_problems(reply: dict[str, Any]) -> str:
    """What keeps a reply from being a command (``''`` when nothing does)."""
    command = reply.get('command')
    if not isinstance(command, dict):
        return 'the reply has no "command" object'
    if not isinstance(command.get('name'), str) or not command['name']:
        return 'the command has no "name"'
    if not isinstance(command.get('args', {}), (dict, str)):
        return 'the command\'s "args" is not an object'
    if not isinstance(reply.get('thoughts', {}), dict):
        return '"thoughts" is not an object'
    return ''
