"""What every ``lagent`` command shares: the engine options, building the
engine they describe, and one-line output helpers."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from lagent.llms.base import BaseLLM
from lagent.llms.config import accepted_keywords, build_llm, load_config, required_keywords
from lagent.llms.registry import ENGINES, find_engine, resolve_engine

__all__ = [
    'DEFAULT_BACKEND',
    'build_engine',
    'engine_config',
    'engine_options',
    'error',
    'log_to_stderr',
    'note',
    'positive_int',
    'rate',
    'say',
]

DEFAULT_BACKEND = 'llamacpp'


def engine_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group('engine')
    group.add_argument(
        '--backend',
        help=f'the engine: {", ".join(spec.name for spec in ENGINES)}, or any registered engine name '
        f'(default: {DEFAULT_BACKEND})',
    )
    group.add_argument('--model', help='model path (in-process and child-server engines) or model name (clients)')
    group.add_argument(
        '--url', help='server address (client engines); an API key is read from LAGENT_API_KEY or OPENAI_API_KEY'
    )
    group.add_argument('--template', help='a registered template name, or a .jinja / tokenizer_config.json file')
    group.add_argument('--config', metavar='FILE', help='engine config (.json/.yaml): type and constructor keywords')
    group.add_argument('--max-new-tokens', type=positive_int, help='most tokens per reply')
    group.add_argument('--temperature', type=float, help='sampling temperature (0: greedy)')
    group.add_argument('--debug', action='store_true', help='show the rendered prompt and the request sent, on stderr')
    return options


def engine_config(args: argparse.Namespace) -> dict[str, Any]:
    """Return the engine config the command line describes: the ``--config`` file,
    with the engine options given on the command line applied over it.

    Raises:
        ValueError: An option the engine cannot take (e.g. ``--url`` for an in-process engine).
        OSError: The config or template file cannot be read.
    """
    config = load_config(args.config) if args.config else {}
    if args.backend:
        config['type'] = args.backend
    config.setdefault('type', DEFAULT_BACKEND)
    engine = resolve_engine(config['type'])
    spec = find_engine(config['type']) if isinstance(config['type'], str) else None
    url_keyword, model_keyword = (spec.url_keyword, spec.model_keyword) if spec else (None, 'path')
    if args.url is not None:
        if url_keyword is None:
            raise ValueError(f'{engine.__name__} starts its own model and takes no --url; use --model')
        config[url_keyword] = args.url
    if args.model is not None:
        if model_keyword is None:
            raise ValueError(f'{engine.__name__} takes no --model')
        config[model_keyword] = args.model
    accepted, _ = accepted_keywords(engine)
    if 'api_key' in accepted and 'api_key' not in config:
        api_key = os.environ.get('LAGENT_API_KEY') or os.environ.get('OPENAI_API_KEY')
        if api_key:
            config['api_key'] = api_key
    options = {url_keyword: '--url', model_keyword: '--model'}
    missing = [options.get(name, name) for name in required_keywords(engine) if name not in config]
    if missing:
        raise ValueError(f'{engine.__name__} needs {" and ".join(missing)}')
    if args.template is not None:
        config.pop('meta_template', None)
        config.pop('chat_template', None)
        if Path(args.template).is_file():
            from lagent.prompts import ChatTemplate

            config['chat_template'] = ChatTemplate.from_file(args.template)
        else:
            config['meta_template'] = args.template
    if args.max_new_tokens is not None:
        config['max_new_tokens'] = args.max_new_tokens
    if args.temperature is not None:
        config['temperature'] = args.temperature
    return config


def build_engine(args: argparse.Namespace) -> BaseLLM:
    return build_llm(engine_config(args))


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def rate(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f'must be positive (or inf), got {text}')
    return value


def say(text: str) -> None:
    sys.stdout.write(text + '\n')
    sys.stdout.flush()


def note(text: str, *, end: str = '\n') -> None:
    sys.stderr.write(text + end)
    sys.stderr.flush()


def error(exc: BaseException) -> None:
    message = ' '.join(str(exc).split()) or type(exc).__name__
    sys.stdout.flush()
    note(f'lagent: error: {message}')


def log_to_stderr(name: str = 'lagent', form: str = '[%(name)s] %(message)s', level: int = logging.DEBUG) -> None:
    """Show the records of logger ``name`` from ``level`` up on stderr, formatted by ``form``
    (by default everything lagent logs: ``--debug``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(form))
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(level)
