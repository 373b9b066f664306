"""``lagent serve``: an engine, or several engines and agents, behind an
OpenAI-compatible API with a chat page."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from lagent.cli._common import build_engine, engine_config, log_to_stderr, positive_int, say
from lagent.llms.base import BaseLLM
from lagent.llms.config import load_config

__all__ = ['add_parser', 'run_serve', 'served_name']

API_KEYS_ENV = 'LAGENT_SERVE_API_KEYS'
_ENGINE_OPTIONS = ('backend', 'model', 'url', 'template', 'max_new_tokens', 'temperature')


def add_parser(commands: Any, engine: argparse.ArgumentParser) -> None:
    """Add the ``serve`` subcommand."""
    serve = commands.add_parser(
        'serve',
        parents=[engine],
        help='serve an engine (and agents) over an OpenAI-compatible API, with a chat page',
        description='Serve the engine the options describe under an OpenAI-compatible API (/v1/chat/completions, '
        '/v1/completions, /v1/models) with a chat page at /, or the engines and agents of a --config file that '
        'has "models" and "agents" sections. SIGTERM or Ctrl-C stops taking requests, lets running ones finish '
        '(see --drain-timeout) and exits.',
    )
    where = serve.add_argument_group('server')
    where.add_argument('--host', default='127.0.0.1', help='address to listen on (default: %(default)s)')
    where.add_argument(
        '--port', type=_port, default=8000, help='port to listen on; 0: any free port (default: %(default)s)'
    )
    where.add_argument(
        '--api-key',
        action='append',
        default=[],
        metavar='KEY',
        help=f'a key clients must send as "Authorization: Bearer KEY" (repeatable; also {API_KEYS_ENV}, '
        'comma-separated); none: no authentication',
    )
    where.add_argument('--model-name', help='the name clients send as "model" (default: the model file or name)')
    where.add_argument(
        '--max-concurrency',
        type=positive_int,
        default=256,
        help='most generations at once; more get 429 (default: %(default)s)',
    )
    where.add_argument(
        '--max-sessions', type=positive_int, default=1000, help='most agent sessions kept (default: %(default)s)'
    )
    where.add_argument(
        '--drain-timeout',
        type=float,
        default=30.0,
        help='seconds running requests get to finish on SIGTERM (default: %(default)s)',
    )
    where.add_argument(
        '--max-body-mb', type=float, default=4.0, help='largest request body in MiB (default: %(default)s)'
    )
    agent = serve.add_argument_group('agent (a function-calling agent over the engine, served as one more model)')
    agent.add_argument('--agent', metavar='NAME', help='serve the agent under this model name')
    agent.add_argument(
        '--tools',
        default='calculator',
        help='its tools: calculator, python, or package.module:attribute (default: %(default)s)',
    )
    agent.add_argument(
        '--max-turn', type=positive_int, default=4, help='most model replies per run (default: %(default)s)'
    )
    agent.add_argument(
        '--tool-choice',
        default='auto',
        help='first reply of each run: auto, none, required or a tool name (default: %(default)s)',
    )
    agent.add_argument('--next-tool-choice', default='auto', help='later replies of each run (default: %(default)s)')
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """``lagent serve``: build the models, serve them until SIGTERM or Ctrl-C."""
    from lagent.serve import Server, load_serve_config
    from lagent.serve.config import is_serve_config

    file_config = load_config(args.config) if args.config else {}
    if is_serve_config(file_config):
        given = [f'--{name.replace("_", "-")}' for name in _ENGINE_OPTIONS if getattr(args, name) is not None]
        if args.agent:
            given.append('--agent')
        if given:
            raise ValueError(f'{args.config} lists the models to serve; {", ".join(given)} apply to one engine only')
        setup = load_serve_config(file_config)
    else:
        setup = _one_engine(args)
    if not args.debug:  # the server's own events (start, shutdown, failures); --debug shows everything
        log_to_stderr('lagent.serve', 'lagent serve: %(message)s', logging.INFO)
    keys = [*args.api_key, *(key.strip() for key in os.environ.get(API_KEYS_ENV, '').split(',') if key.strip())]
    with setup:
        server = Server(
            setup.models,
            api_keys=keys,
            max_concurrency=args.max_concurrency,
            max_sessions=args.max_sessions,
            max_body_bytes=int(args.max_body_mb * (1 << 20)),
            drain_timeout=args.drain_timeout,
        )
        names = ', '.join(setup.models)
        server.run(args.host, args.port, ready=lambda url: say(f'lagent serve: serving {names} at {url}'))
    return 0


def _one_engine(args: argparse.Namespace) -> Any:
    from lagent.actions.builtin import tools_by_name
    from lagent.serve import ServeConfig, ServedAgent

    llm = build_engine(args)
    try:
        models: dict[str, Any] = {args.model_name or served_name(llm, engine_config(args)['type']): llm}
        if args.agent:
            if args.agent in models:
                raise ValueError(f'--agent {args.agent}: the engine is already served under that name')
            tools = tools_by_name(name.strip() for name in args.tools.split(',') if name.strip())
            models[args.agent] = ServedAgent(
                llm,
                tools,
                max_turn=args.max_turn,
                tool_choice=args.tool_choice,
                next_tool_choice=args.next_tool_choice,
            )
    except BaseException:
        llm.close()
        raise
    return ServeConfig(models, [llm])


def served_name(llm: BaseLLM, backend: str) -> str:
    """The name an engine is served under by default: its model file or name, else the backend."""
    if not llm.path:
        return backend
    name = Path(llm.path).name
    return name.removesuffix('.gguf') or backend


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f'must be a port number (0-65535), got {value}')
    return value
