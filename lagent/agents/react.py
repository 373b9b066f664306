"""``ReAct``: reason and act in plain text (https://arxiv.org/abs/2210.03629).

The model writes ``Thought:`` / ``Action:`` / ``Action Input:`` to call a tool,
is shown ``Observation: <result>``, and ends with ``Final Answer:``. Everything
is text, so it works with every engine. Requests carry the stop word
``Observation:`` so the model stops before inventing a result.

The parser is lenient: case and spacing of the keywords do not matter, the
Action Input may be a JSON object, a fenced JSON block or plain text (given to
the tool's first parameter), and a reply with neither an Action nor a Final
Answer is taken as the answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lagent.agents._text import first_json_object, strip_fence
from lagent.agents.base import BaseAgent, ParsedReply, ToolRequest, make_call, parameter_names
from lagent.schema import ActionReturn, Message, Response

__all__ = ['ReAct']

_THOUGHT = re.compile(r'^\s*thought\s*:\s*', re.I)
_ACTION = re.compile(r'^[ \t]*action[ \t]*:[ \t]*(.*)$', re.I | re.M)
_ACTION_INPUT = re.compile(r'action[ \t]*input[ \t]*:', re.I)
_FINAL_ANSWER = re.compile(r'final[ \t]*answer[ \t]*:', re.I)
_INPUT_END = re.compile(r'^[ \t]*(?:observation|thought|final[ \t]*answer)[ \t]*:', re.I | re.M)

_PROTOCOL = """\
You can use these tools:

{tools}

To use a tool, reply in exactly this format:
Thought: what you need to find out
Action: the tool name, one of [{names}]
Action Input: the arguments as a JSON object

You are then shown:
Observation: the tool's result

When you know the answer, reply:
Thought: why this is the answer
Final Answer: the answer"""


class ReAct(BaseAgent):
    """A prompt-based agent using the Thought / Action / Observation / Final Answer format.

    Takes the same arguments as :class:`~lagent.agents.BaseAgent`; ``system_prompt``
    replaces the opening instructions, and the tool list and format follow them.
    """

    default_system_prompt = 'You are a helpful assistant who answers by thinking step by step and using tools.'
    stop_words = ('Observation:',)

    def _system_messages(self) -> list[Message]:
        protocol = _PROTOCOL.format(tools=self.executor.describe() or '(none)', names=', '.join(self.executor.names))
        content = f'{self.system_prompt}\n\n{protocol}' if self.system_prompt else protocol
        return [Message(role='system', content=content)]

    def _parse_reply(self, response: Response, turn: int) -> ParsedReply:
        text = response.text
        action = _ACTION.search(text)
        final = _FINAL_ANSWER.search(text)
        if final is not None and (action is None or final.start() < action.start()):
            return ParsedReply(text=text[final.end() :].strip())
        if action is None:
            return ParsedReply(text=_THOUGHT.sub('', text, count=1).strip())
        thought = _THOUGHT.sub('', text[: action.start()], count=1).strip()
        name = action.group(1).strip().strip('`"\'[]').strip()
        if not name:
            error = 'The Action line names no tool. Write "Action: <tool name>" and "Action Input: {...}".'
            return ParsedReply(text=thought, requests=[ToolRequest(call=None, error=error)])
        raw_input = _action_input(text, action.end())
        arguments = _arguments(raw_input, parameter_names(self.executor).get(name, []))
        return ParsedReply(
            text=thought, requests=[ToolRequest(call=make_call(name, arguments, turn=turn, index=0), name=name)]
        )

    def _reply_message(self, response: Response, parsed: ParsedReply) -> Message:
        return Message(role='assistant', content=response.text.strip())

    def _result_message(self, request: ToolRequest, result: ActionReturn, observation: str) -> Message:
        return Message(role='user', content=f'Observation: {observation}')


def _action_input(text: str, start: int) -> str:
    """The text after ``Action Input:`` up to the next keyword line (``''`` if absent)."""
    found = _ACTION_INPUT.search(text, start)
    if found is None:
        return ''
    rest = text[found.end() :]
    end = _INPUT_END.search(rest)
    return strip_fence(rest[: end.start()] if end else rest)


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
