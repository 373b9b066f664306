"""The ``lagent`` command: ``chat``, ``agent``, ``bench``, ``batch`` and ``serve`` on any engine,
and ``export-sft`` for training data.

Every command builds its engine the same way: ``--config FILE`` (see
:func:`lagent.llms.config.build_llm`) and/or ``--backend`` with ``--model``,
``--url``, ``--template`` and generation options given on the command line
(these win over the file). Errors a user can cause end the command with one
``lagent: error: ...`` line on stderr and a non-zero status.

Each subcommand is a module of this package with an ``add_parser(commands,
engine_options)`` function that adds it and sets its ``handler``; a new
command is one module plus one entry in ``_COMMANDS`` (the module name, with
underscores where the command has dashes).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import lagent
from lagent.cli._common import engine_options, error, log_to_stderr
from lagent.errors import LLMError

__all__ = ['build_parser', 'main']

_COMMANDS = ('chat', 'agent', 'bench', 'batch', 'serve', 'export_sft')


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lagent`` command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, 'debug', False):
        log_to_stderr()
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except (LLMError, ValueError, ImportError, OSError) as exc:
        error(exc)
        return 1


class _SystemReport(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from lagent.cli._system import system_report

        sys.stdout.write(system_report() + '\n')
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``lagent`` command and its subcommands."""
    parser = argparse.ArgumentParser(prog='lagent', description='Chat, run agents and benchmark any lagent engine.')
    parser.add_argument('--version', action='version', version=f'lagent {lagent.__version__}')
    parser.add_argument(
        '--system', action=_SystemReport, help="show this machine's Python, torch devices and engines, then exit"
    )
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    engine = engine_options()
    for name in _COMMANDS:
        importlib.import_module(f'lagent.cli.{name}').add_parser(commands, engine)
    return parser
