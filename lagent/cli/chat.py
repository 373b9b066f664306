"""``lagent chat``: one reply to a prompt, or an interactive loop over stdin."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from lagent.cli._common import build_engine, error, note
from lagent.errors import LLMError
from lagent.llms.base import BaseLLM

__all__ = ['add_parser', 'chat_loop', 'run_chat', 'stream_reply']


def add_parser(commands: Any, engine: argparse.ArgumentParser) -> None:
    """Add the ``chat`` subcommand."""
    chat = commands.add_parser(
        'chat',
        parents=[engine],
        help='chat with a model (one prompt, or an interactive loop reading stdin)',
        description='Reply to PROMPT, or read messages from stdin (one a line; /reset clears the history, '
        '/exit quits) and stream each reply to stdout.',
    )
    chat.add_argument('prompt', nargs='?', metavar='PROMPT', help='the message to answer once (default: interactive)')
    chat.set_defaults(handler=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    """``lagent chat``: one reply to PROMPT, or a loop over the lines of stdin."""
    with build_engine(args) as llm:
        if args.prompt is not None:
            stream_reply(llm, [{'role': 'user', 'content': args.prompt}])
            return 0
        return chat_loop(llm, sys.stdin)


def chat_loop(llm: BaseLLM, lines: TextIO) -> int:
    """Answer each line of ``lines`` with the conversation so far; ``/reset``
    forgets it, ``/exit`` (or end of input) stops. An engine error ends the
    turn, not the loop; the status is 1 if any turn failed."""
    interactive = lines.isatty()
    history: list[dict[str, Any]] = []
    failed = False
    if interactive:
        note('Type a message; /reset clears the history, /exit quits.')
    while True:
        if interactive:
            note('>>> ', end='')
        line = lines.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text == '/exit':
            break
        if text == '/reset':
            history.clear()
            note('(history cleared)')
            continue
        history.append({'role': 'user', 'content': text})
        try:
            reply = stream_reply(llm, history)
        except LLMError as exc:
            history.pop()
            error(exc)
            failed = True
            continue
        history.append({'role': 'assistant', 'content': reply})
    return 1 if failed else 0


def stream_reply(llm: BaseLLM, messages: list[dict[str, Any]]) -> str:
    """Stream the reply to ``messages`` to stdout and return it (``--debug`` logs the request)."""
    text = ''
    try:
        for chunk in llm.stream(messages):
            if chunk.text:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
                text += chunk.text
    finally:
        if text:
            sys.stdout.write('\n')
            sys.stdout.flush()
    return text
