"""``lagent agent``: the function-calling agent with built-in tools."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lagent.cli._common import build_engine, note, positive_int, say
from lagent.schema import ActionStatusCode, AgentStatusCode

__all__ = ['add_agent_options', 'add_parser', 'make_tools', 'run_agent', 'show_agent_event']


def add_parser(commands: Any, engine: argparse.ArgumentParser) -> None:
    """Add the ``agent`` subcommand."""
    agent = commands.add_parser(
        'agent',
        parents=[engine],
        help='run the function-calling agent with tools',
        description=(
            'Run the function-calling agent on PROMPT and show each step as it happens. '
            'Exits 0 with an answer; without one (the model still called a tool in its last '
            'allowed turn, or gave an empty reply), exits 1 after one "lagent: no answer: ..." line on stderr.'
        ),
    )
    add_agent_options(agent)
    agent.add_argument('prompt', metavar='PROMPT', help='the task for the agent')
    agent.set_defaults(handler=run_agent)


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that configure the agent (also used by ``lagent batch``)."""
    parser.add_argument(
        '--tools',
        default='calculator,python',
        help='comma-separated tools to give the agent: calculator, python, or package.module:attribute '
        '(default: %(default)s)',
    )
    parser.add_argument('--max-turn', type=positive_int, default=4, help='most model turns (default: %(default)s)')


def run_agent(args: argparse.Namespace) -> int:
    """``lagent agent``: run the function-calling agent and show each step as it happens."""
    from lagent.actions.executor import ActionExecutor
    from lagent.agents.function_call import FunctionCallAgent

    settings = {} if args.temperature is None else {'temperature': args.temperature}  # agents default to greedy
    with ActionExecutor(make_tools(args.tools)) as executor, build_engine(args) as llm:
        agent = FunctionCallAgent(llm, executor, max_turn=args.max_turn, **settings)
        if args.debug:  # each request, tools included, is logged as it is sent
            path = 'native tool calls' if agent.native else 'tools described in the prompt, calls parsed from the text'
            note(f'--- tools: {", ".join(executor.names)} ({path}) ---')
        streamed = False
        final = None
        for event in agent.stream_chat(args.prompt):
            streamed = show_agent_event(event, streamed)
            final = event
    if final is None or final.status != AgentStatusCode.END:
        reason = getattr(final, 'errmsg', None) or 'no answer'
        note(f'lagent: {reason}')
        return 1
    return 0


def make_tools(names: str) -> list[Any]:
    """Return the tools named in a comma-separated list (see :func:`lagent.actions.builtin.tools_by_name`).

    Raises:
        ValueError: An unknown tool name.
    """
    from lagent.actions.builtin import tools_by_name

    return tools_by_name(name.strip() for name in names.split(',') if name.strip())


def show_agent_event(event: Any, streamed: bool) -> bool:
    """Write one agent event to stdout; return whether model text is mid-line."""
    kind = event.kind
    if kind == 'text_delta':
        sys.stdout.write(event.text)
        sys.stdout.flush()
        return True
    if streamed:
        sys.stdout.write('\n')
    if kind == 'tool_call':
        say(f'[turn {event.turn}] tool call: {event.call.function.name}({event.call.function.arguments})')
    elif kind == 'tool_result':
        outcome = (
            'tool result'
            if event.result.state == ActionStatusCode.SUCCESS
            else f'tool error ({event.result.state.name})'
        )
        say(f'[turn {event.turn}] {outcome}: {event.observation}')
    elif kind == 'final_answer':
        label = 'final answer' if event.status == AgentStatusCode.END else f'stopped ({event.status.name})'
        say(f'[{label}] {event.text}')
    return False
