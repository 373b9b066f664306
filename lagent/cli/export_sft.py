"""``lagent export-sft``: agent runs and conversations to supervised fine-tuning data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lagent.cli._common import note

__all__ = ['add_parser', 'run_export_sft']


def add_parser(commands: Any, engine: argparse.ArgumentParser) -> None:
    """Add the ``export-sft`` subcommand (it builds no engine, so takes no engine options)."""
    export = commands.add_parser(
        'export-sft',
        help='turn agent runs and conversations into fine-tuning data (input_ids and labels)',
        description='Read agent memory files and JSON/JSONL conversations (OpenAI format, optional "tools" and '
        '"status"), render each with the model\'s own chat template and write one JSON line per conversation: '
        "messages, tools, input_ids, and labels that are -100 except on the assistant's turns.",
    )
    export.add_argument('inputs', nargs='+', metavar='INPUT', help='memory files, .json or .jsonl conversation files')
    export.add_argument(
        '--tokenizer', required=True, metavar='PATH_OR_GGUF', help='a .gguf file or a Hugging Face tokenizer directory'
    )
    export.add_argument('--out', required=True, metavar='OUT.jsonl', help='the file to write (replaced)')
    export.add_argument(
        '--chat-template', metavar='FILE', help="a .jinja or tokenizer_config.json template instead of the tokenizer's"
    )
    export.add_argument('--tools', metavar='FILE.json', help='tool schemas (a JSON list) for conversations without any')
    export.add_argument(
        '--status',
        metavar='NAMES',
        help='keep only runs whose recorded status is one of these, comma-separated (e.g. END)',
    )
    export.add_argument(
        '--drop-failed',
        action='store_true',
        help='leave out failed runs: a status other than END/success, or no final answer',
    )
    export.add_argument('--dedup', action='store_true', help='keep only the first of identical conversations')
    export.add_argument(
        '--image-placeholder',
        default='<image>',
        help='text for an image, for templates that do not place images themselves (default: %(default)s)',
    )
    export.set_defaults(handler=run_export_sft)


def run_export_sft(args: argparse.Namespace) -> int:
    """``lagent export-sft``: write the examples and say what was left out."""
    from lagent.data import export_sft, load_tokenizer
    from lagent.prompts import ChatTemplate

    tools = _read_tools(args.tools) if args.tools else None
    tokenizer = load_tokenizer(args.tokenizer)
    chat_template = None
    if args.chat_template:
        chat_template = ChatTemplate.from_file(args.chat_template, bos_token=tokenizer.bos_token)
    statuses = [name for name in args.status.split(',') if name.strip()] if args.status else None
    try:
        report = export_sft(
            args.inputs,
            tokenizer,
            args.out,
            tools=tools,
            chat_template=chat_template,
            statuses=statuses,
            drop_failed=args.drop_failed,
            deduplicate=args.dedup,
            image_placeholder=args.image_placeholder,
        )
    finally:
        tokenizer.close()
    note(f'lagent export-sft: {report.summary()}')
    return 0


def _read_tools(path: str) -> list[dict[str, Any]]:
    try:
        tools = json.loads(Path(path).read_text(encoding='utf-8'))
    except json.JSONDecodeError as exc:
        raise ValueError(f'{path} is not valid JSON: {exc}') from None
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise ValueError(f'{path} must hold a JSON list of tool schemas')
    return tools
