"""``ReWOO``: plan every tool call first, run them, then solve (https://arxiv.org/abs/2305.18323).

Reasoning WithOut Observation takes three steps instead of a loop:

1. **Plan** — one reply lists the steps, each a ``Plan:`` line followed by
   ``#E<n> = <tool>[<input>]``; an input may quote earlier evidence as ``#E<k>``.
   A plan that cannot be read is asked for again with the error (while turns remain).
2. **Work** — the tools run in order, each ``#E<k>`` in an input replaced by
   that step's result (the evidence).
3. **Solve** — one more reply answers from the plan and the evidence.

So a run takes at least two replies (``max_turn`` ≥ 2): up to ``max_turn - 1``
planning attempts and the solver. The solver always answers; an empty answer
is a failure with a reason, as in every agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

from lagent.actions import ActionExecutor
from lagent.actions.parser import read_arguments
from lagent.agents.base import BaseAgent, ModelRequest, ParsedReply, ToolRequest, ToolsLike, _Loop, _RunTool, make_call
from lagent.agents.events import FinalAnswer, ModelReply, ToolCallStep, ToolResultStep
from lagent.agents.memory import AgentMemory
from lagent.llms.base import BaseLLM
from lagent.schema import ActionReturn, AgentStatusCode, Message, Response

__all__ = [
    'PLANNER_PROMPT_CN',
    'PLANNER_PROMPT_EN',
    'REFORMAT_PROMPT_CN',
    'REFORMAT_PROMPT_EN',
    'SOLVER_PROMPT_CN',
    'SOLVER_PROMPT_EN',
    'WORKER_PROMPT_CN',
    'WORKER_PROMPT_EN',
    'ReWOO',
    'ReWOOProtocol',
]

PLANNER_PROMPT_EN = """\
Break the user's question into simple steps that gather what is needed to answer it. Write each step as:
Plan: what this step finds out
#E1 = tool_name[tool input]
Number the evidence #E1, #E2, ... in order. A tool input may be plain text, an earlier #E<n> (its result), or both.
Use exactly one #E line per Plan, and only these tools:
{tool_description}"""
"""Asks for the plan (``{tool_description}`` becomes the tool list)."""

WORKER_PROMPT_EN = 'Plan: {thought}\nEvidence: {action_resp}\n'
"""One step of the work log shown to the solver."""

SOLVER_PROMPT_EN = """\
Answer the question below. The plan and the evidence gathered for it follow; some evidence may be wrong, so use it with care.
Question: {question}
{worker_log}
Answer the question directly, without extra words."""
"""Asks for the answer (``{question}``, ``{worker_log}``)."""

REFORMAT_PROMPT_EN = 'The plan could not be read: {err_msg}. Write it again in the format asked for.'
"""Asks for the plan again (``{err_msg}``)."""

PLANNER_PROMPT_CN = """\
请把用户的问题拆分成若干简单步骤，以收集回答所需的信息。每一步写成：
Plan: 这一步要弄清楚什么
#E1 = 工具名称[工具输入]
证据依次编号为 #E1、#E2……。工具输入可以是普通文本、之前的 #E<n>（它的结果），或两者兼有。
每个 Plan 后面只能有一行 #E，且只能使用以下工具：
{tool_description}"""
"""Asks for the plan (Chinese)."""

WORKER_PROMPT_CN = 'Plan: {thought}\n证据: {action_resp}\n'
"""One step of the work log (Chinese)."""

SOLVER_PROMPT_CN = """\
请回答下面的问题。下面给出了计划以及为它收集的证据；其中有些证据可能有误，请谨慎使用。
问题: {question}
{worker_log}
请直接回答问题，不要添加多余的文字。"""
"""Asks for the answer (Chinese)."""

REFORMAT_PROMPT_CN = '无法读取计划：{err_msg}。请按要求的格式重新给出计划。'
"""Asks for the plan again (Chinese)."""

_PLAN = re.compile(r'^\s*Plan\s*:\s*(.*)$', re.I | re.M)
_STEP = re.compile(r'^\s*#E(\d+)\s*=\s*([\w.-]+)\s*\[(.*)\]\s*$', re.M)
_EVIDENCE = re.compile(r'#E(\d+)')


class ReWOOProtocol:
    """The prompts of ReWOO (lagent 0.2's protocol object).

    Args:
        planner_prompt: Asks for the plan (``{tool_description}``).
        worker_prompt: One step of the work log (``{thought}``, ``{action_resp}``).
        solver_prompt: Asks for the answer (``{question}``, ``{worker_log}``).
        reformat_prompt: Asks for the plan again (``{err_msg}``).
    """

    def __init__(
        self,
        planner_prompt: str = PLANNER_PROMPT_EN,
        worker_prompt: str = WORKER_PROMPT_EN,
        solver_prompt: str = SOLVER_PROMPT_EN,
        reformat_prompt: str = REFORMAT_PROMPT_EN,
    ):
        self.planner_prompt = planner_prompt
        self.worker_prompt = worker_prompt
        self.solver_prompt = solver_prompt
        self.reformat_prompt = reformat_prompt


@dataclass
class _Step:
    thought: str
    evidence: int
    tool: str
    tool_input: str


class ReWOO(BaseAgent):
    """Plans all tool calls in one reply, runs them, and answers in another.

    Args:
        llm: Any LLM engine.
        tools: An :class:`~lagent.actions.ActionExecutor`, or the tools to build one from.
        protocol: The prompts (default :class:`ReWOOProtocol`).
        max_turn: Most replies: planning attempts plus the solver (at least 2).
        memory: A conversation to continue.
        action_executor: lagent 0.2's name for ``tools``.
        **kwargs: The other arguments of :class:`~lagent.agents.BaseAgent`.

    Raises:
        ValueError: ``max_turn`` is below 2.
    """

    def __init__(
        self,
        llm: BaseLLM,
        tools: ToolsLike = None,
        protocol: ReWOOProtocol | None = None,
        *,
        max_turn: int = 3,
        memory: AgentMemory | None = None,
        action_executor: ActionExecutor | None = None,
        **kwargs: Any,
    ):
        if max_turn < 2:
            raise ValueError(f'ReWOO needs max_turn of at least 2 (a plan and an answer), got {max_turn}')
        super().__init__(llm, tools, max_turn=max_turn, memory=memory, action_executor=action_executor, **kwargs)
        if protocol is not None and not self.agent_returns:
            self._speaks_lagent_02('protocol', 'the prompt attributes of ReWOOProtocol on agent.protocol')
        self.protocol = protocol or ReWOOProtocol()
        """The prompts."""

    def _loop(self) -> _Loop:
        question = self.memory.messages[-1].text
        conversation = self.memory.messages
        steps: list[_Step] = []
        error = ''
        turn = 0
        for turn in range(1, self.max_turn):
            response = cast(Response, (yield self._planner_request(turn, conversation, error)))
            try:
                steps = _plan(response.text, self.executor)
                error = ''
            except ValueError as exc:
                error = str(exc)
            yield ModelReply(
                turn=turn,
                status=AgentStatusCode.PLUGIN_END if steps else AgentStatusCode.STREAM_ING,
                text=response.text,
                thought=response.text.strip(),
                response=response,
            )
            if steps:
                break
        self.memory.add(Message(role='assistant', content=response.text.strip()))
        log = []
        evidence: dict[int, str] = {}
        for index, step in enumerate(steps):
            tool_input = _EVIDENCE.sub(lambda match: evidence.get(int(match[1]), match[0]), step.tool_input)
            arguments = read_arguments(tool_input, _parameters(self.executor, step.tool))
            call = make_call(step.tool, arguments, turn=turn, index=index)
            yield ToolCallStep(turn=turn, call=call)
            result = cast(ActionReturn, (yield _RunTool(self.executor, call)))
            observation = self._observation(result)
            yield ToolResultStep(turn=turn, call_id=call.id, result=result, observation=observation)
            evidence[step.evidence] = observation
            log.append(self.protocol.worker_prompt.format(thought=step.thought, action_resp=observation))
        worker_log = ''.join(log)
        if worker_log:
            self.memory.add(Message(role='user', content=worker_log))
        solver = self.protocol.solver_prompt.format(question=question, worker_log=worker_log)
        response = cast(
            Response,
            (
                yield ModelRequest(
                    turn=turn + 1, inputs=[*self._system_messages(), Message(role='user', content=solver)]
                )
            ),
        )
        answer = response.text.strip()
        yield ModelReply(
            turn=turn + 1, status=AgentStatusCode.STREAM_ING, text=response.text, thought=answer, response=response
        )
        self.memory.add(Message(role='assistant', content=answer))
        if answer:
            yield FinalAnswer(turn=turn + 1, status=AgentStatusCode.END, text=answer)
        else:
            yield FinalAnswer(
                turn=turn + 1,
                status=AgentStatusCode.SESSION_OUT_OF_LIMIT,
                text='',
                errmsg='no answer: the solver gave an empty reply',
            )

    def _planner_request(self, turn: int, conversation: list[Message], error: str) -> ModelRequest:
        planner = self.protocol.planner_prompt.format(tool_description=self.executor.describe() or '(none)')
        system = f'{self.system_prompt}\n\n{planner}' if self.system_prompt else planner
        inputs = [Message(role='system', content=system), *conversation]
        if error:
            inputs.append(Message(role='user', content=self.protocol.reformat_prompt.format(err_msg=error)))
        return ModelRequest(turn=turn, inputs=inputs)

    def _parse_reply(self, response: Response, turn: int) -> ParsedReply:  # the loop reads plans itself
        return ParsedReply(text=response.text.strip())

    def _result_message(self, request: ToolRequest, result: ActionReturn, observation: str) -> Message:
        return Message(role='user', content=observation)


def _plan(text: str, executor: ActionExecutor) -> list[_Step]:
    """The steps of a plan.

    Raises:
        ValueError: No step, a step without its Plan line, or an unknown tool (the message says which).
    """
    thoughts = _PLAN.findall(text)
    found = _STEP.findall(text)
    if not found:
        raise ValueError('no step found; write "#E1 = tool_name[tool input]" after each "Plan:" line')
    if len(thoughts) != len(found):
        raise ValueError(f'{len(thoughts)} Plan lines but {len(found)} #E lines; write one #E line per Plan')
    steps = []
    for thought, (number, tool, tool_input) in zip(thoughts, found, strict=True):
        if tool not in executor:
            raise ValueError(f'unknown tool {tool!r}; tools: {", ".join(executor.names)}')
        steps.append(_Step(thought.strip(), int(number), tool, tool_input.strip()))
    return steps


def _parameters(executor: ActionExecutor, name: str) -> list[str]:
    tool = executor.get(name)
    return list((tool.parameters.get('properties') or {}) if tool else {})
