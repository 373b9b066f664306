"""The ``lagent`` command: ``chat``, ``agent`` and ``bench`` on any engine.

Every command builds its engine the same way: ``--config FILE`` (see
:func:`lagent.llms.config.build_llm`) and/or ``--backend`` with ``--model``,
``--url``, ``--template`` and generation options given on the command line
(these win over the file). Errors a user can cause end the command with one
``lagent: error: ...`` line on stderr and a non-zero status.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import math
import os
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

from lagent.errors import LLMError
from lagent.llms.base import BaseLLM
from lagent.llms.config import build_llm, load_config, resolve_engine
from lagent.schema import ActionStatusCode, AgentStatusCode

__all__ = ['main']

T = TypeVar('T')

DEFAULT_BACKEND = 'llamacpp'
BACKENDS = ('llamacpp', 'llamacpp-server', 'lmdeploy-client', 'lmdeploy-server', 'triton', 'openai', 'hf')
TOOLS = ('calculator', 'python')
_URL_KEYWORDS = ('url', 'tritonserver_addr')


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lagent`` command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.debug:
        _log_to_stderr()
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except (LLMError, ValueError, ImportError, OSError) as exc:
        _error(exc)
        return 1


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``lagent`` command and its subcommands."""
    parser = argparse.ArgumentParser(prog='lagent', description='Chat, run agents and benchmark any lagent engine.')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    engine = _engine_options()

    chat = commands.add_parser(
        'chat',
        parents=[engine],
        help='chat with a model (one prompt, or an interactive loop reading stdin)',
        description='Reply to PROMPT, or read messages from stdin (one a line; /reset clears the history, '
        '/exit quits) and stream each reply to stdout.',
    )
    chat.add_argument('prompt', nargs='?', metavar='PROMPT', help='the message to answer once (default: interactive)')
    chat.set_defaults(handler=run_chat)

    agent = commands.add_parser(
        'agent',
        parents=[engine],
        help='run the function-calling agent with tools',
        description='Run the function-calling agent on PROMPT and show each step as it happens.',
    )
    agent.add_argument(
        '--tools',
        default='calculator,python',
        help=f'comma-separated tools to give the agent, among {", ".join(TOOLS)} (default: %(default)s)',
    )
    agent.add_argument('--max-turn', type=_positive_int, default=4, help='most model turns (default: %(default)s)')
    agent.add_argument('prompt', metavar='PROMPT', help='the task for the agent')
    agent.set_defaults(handler=run_agent)

    bench = commands.add_parser(
        'bench',
        parents=[engine],
        help='measure latency and throughput under load',
        description='Send a workload to the engine and report time to first token (TTFT), time per output token '
        '(TPOT), inter-token latency (ITL), throughput and errors.',
    )
    workload = bench.add_mutually_exclusive_group(required=True)
    workload.add_argument(
        '--dataset', metavar='FILE.jsonl', help='requests, one JSON object a line: "prompt" or "messages"'
    )
    workload.add_argument('--synthetic', action='store_true', help='random prompts of --input-len words')
    bench.add_argument(
        '--input-len', type=_positive_int, default=128, help='synthetic prompt length in words (~tokens)'
    )
    bench.add_argument('--output-len', type=_positive_int, default=128, help='synthetic max new tokens per request')
    bench.add_argument('--num-requests', type=_positive_int, default=16, help='requests to send (default: %(default)s)')
    bench.add_argument(
        '--concurrency', type=_positive_int, default=1, help='most requests in flight (default: %(default)s)'
    )
    bench.add_argument(
        '--request-rate',
        type=_rate,
        default=math.inf,
        help='mean requests per second, Poisson arrivals; inf sends all at once (default: %(default)s)',
    )
    bench.add_argument(
        '--ignore-eos', action='store_true', help='generate the full output length (engines that support it)'
    )
    bench.add_argument('--seed', type=int, default=0, help='seed of the synthetic prompts and arrivals')
    bench.add_argument('--json', metavar='OUT', help='write the settings, summary and per-request records as JSON')
    bench.add_argument('--plot', metavar='OUT.png', help='save a latency/throughput figure (needs matplotlib)')
    bench.add_argument('--no-progress', action='store_true', help='no progress bar')
    bench.set_defaults(handler=run_bench)
    return parser


def _engine_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group('engine')
    group.add_argument(
        '--backend',
        help=f'the engine: {", ".join(BACKENDS)}, or any registered engine name (default: {DEFAULT_BACKEND})',
    )
    group.add_argument('--model', help='model path (in-process and child-server engines) or model name (clients)')
    group.add_argument(
        '--url', help='server address (client engines); an API key is read from LAGENT_API_KEY or OPENAI_API_KEY'
    )
    group.add_argument('--template', help='a registered template name, or a .jinja / tokenizer_config.json file')
    group.add_argument('--config', metavar='FILE', help='engine config (.json/.yaml): type and constructor keywords')
    group.add_argument('--max-new-tokens', type=_positive_int, help='most tokens per reply')
    group.add_argument('--temperature', type=float, help='sampling temperature (0: greedy)')
    group.add_argument('--debug', action='store_true', help='show the rendered prompt and the request sent, on stderr')
    return options


# ---------------------------------------------------------------------- engine


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
    own = inspect.signature(engine).parameters  # not inherited ones: a child-server engine sets its own url
    url_keyword = next((name for name in _URL_KEYWORDS if name in own), None)
    if args.url is not None:
        if url_keyword is None:
            raise ValueError(f'{engine.__name__} starts its own model and takes no --url; use --model')
        config[url_keyword] = args.url
    if args.model is not None:
        config['model_name' if url_keyword and 'model_name' in own else 'path'] = args.model
    if 'api_key' in own and 'api_key' not in config:
        api_key = os.environ.get('LAGENT_API_KEY') or os.environ.get('OPENAI_API_KEY')
        if api_key:
            config['api_key'] = api_key
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


def _build(args: argparse.Namespace) -> BaseLLM:
    return build_llm(engine_config(args))


# ---------------------------------------------------------------------- chat


def run_chat(args: argparse.Namespace) -> int:
    """``lagent chat``: one reply to PROMPT, or a loop over the lines of stdin."""
    with _build(args) as llm:
        if args.prompt is not None:
            stream_reply(llm, [{'role': 'user', 'content': args.prompt}], debug=args.debug)
            return 0
        return chat_loop(llm, sys.stdin, debug=args.debug)


def chat_loop(llm: BaseLLM, lines: TextIO, *, debug: bool = False) -> int:
    """Answer each line of ``lines`` with the conversation so far; ``/reset``
    forgets it, ``/exit`` (or end of input) stops. An engine error ends the
    turn, not the loop; the status is 1 if any turn failed."""
    interactive = lines.isatty()
    history: list[dict[str, Any]] = []
    failed = False
    if interactive:
        _note('Type a message; /reset clears the history, /exit quits.')
    while True:
        if interactive:
            _note('>>> ', end='')
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
            _note('(history cleared)')
            continue
        history.append({'role': 'user', 'content': text})
        try:
            reply = stream_reply(llm, history, debug=debug)
        except LLMError as exc:
            history.pop()
            _error(exc)
            failed = True
            continue
        history.append({'role': 'assistant', 'content': reply})
    return 1 if failed else 0


def stream_reply(llm: BaseLLM, messages: list[dict[str, Any]], *, debug: bool = False) -> str:
    """Stream the reply to ``messages`` to stdout and return it."""
    if debug:
        show_request(llm, messages)
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


def show_request(llm: BaseLLM, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> None:
    """Write to stderr exactly what ``llm`` will be asked: the rendered prompt, or
    the messages (and tools) for a chat endpoint, and the generation settings."""
    request = llm.prepare(messages, tools=tools)
    if request.prompt is not None:
        _note(f'--- rendered prompt ({type(llm).__name__}) ---\n{request.prompt}\n--- end of prompt ---')
    else:
        sent = {'messages': request.messages}
        if request.tools:
            sent.update(tools=request.tools, tool_choice=request.tool_choice)
        _note(f'--- messages ({type(llm).__name__}, template applied by the engine) ---')
        _note(json.dumps(sent, indent=2, ensure_ascii=False))
    _note(f'--- generation settings ---\n{json.dumps(llm.params().model_dump(mode="json"), ensure_ascii=False)}')


# ---------------------------------------------------------------------- agent


def run_agent(args: argparse.Namespace) -> int:
    """``lagent agent``: run the function-calling agent and show each step as it happens."""
    from lagent.actions.executor import ActionExecutor
    from lagent.agents.function_call import FunctionCallAgent

    with ActionExecutor(make_tools(args.tools)) as executor, _build(args) as llm:
        agent = FunctionCallAgent(llm, executor, max_turn=args.max_turn)
        if args.debug:
            path = 'native tool calls' if agent.native else 'tools described in the prompt, calls parsed from the text'
            _note(f'--- tools ({path}) ---\n{json.dumps(executor.tool_schemas(), indent=2)}')
        streamed = False
        for event in agent.stream_chat(args.prompt):
            streamed = show_agent_event(event, streamed)
    return 0


def make_tools(names: str) -> list[Any]:
    """Return the built-in tools named in a comma-separated list.

    Raises:
        ValueError: An unknown tool name.
    """
    chosen = [name.strip() for name in names.split(',') if name.strip()]
    unknown = [name for name in chosen if name not in TOOLS]
    if unknown:
        raise ValueError(f'unknown tool {unknown[0]!r}; available: {", ".join(TOOLS)}')
    tools: list[Any] = []
    if 'calculator' in chosen:
        from lagent.actions.calculator import Calculator

        tools.append(Calculator())
    if 'python' in chosen:
        from lagent.actions.python_interpreter import PythonInterpreter

        tools.append(PythonInterpreter())
    return tools


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
        _say(f'[turn {event.turn}] tool call: {event.call.function.name}({event.call.function.arguments})')
    elif kind == 'tool_result':
        outcome = (
            'tool result'
            if event.result.state == ActionStatusCode.SUCCESS
            else f'tool error ({event.result.state.name})'
        )
        _say(f'[turn {event.turn}] {outcome}: {event.observation}')
    elif kind == 'final_answer':
        label = 'final answer' if event.status == AgentStatusCode.END else f'stopped ({event.status.name})'
        _say(f'[{label}] {event.text}')
    return False


# ---------------------------------------------------------------------- bench


def run_bench(args: argparse.Namespace) -> int:
    """``lagent bench``: run the workload, print the summary, write the JSON and figure."""
    from lagent.bench import load_dataset, run_benchmark, summarize, synthetic_requests
    from lagent.bench.report import format_summary, plot_run, progress_bar, run_to_json, write_json

    if args.plot:
        from lagent._optional import import_optional

        import_optional('matplotlib', package='matplotlib', extra='bench')  # fail before the run, not after
    if args.dataset:
        requests = load_dataset(args.dataset, limit=args.num_requests)
    else:
        requests = synthetic_requests(
            args.num_requests, input_len=args.input_len, output_len=args.output_len, seed=args.seed
        )
    gen_params = {'ignore_eos': True} if args.ignore_eos else {}
    llm = _build(args)
    with progress_bar(len(requests), enabled=not args.no_progress) as advance:
        measuring = run_benchmark(
            llm,
            requests,
            concurrency=args.concurrency,
            request_rate=args.request_rate,
            seed=args.seed,
            on_record=advance,
            **gen_params,
        )
        run = asyncio.run(_closing(llm, measuring))
    summary = summarize(run.records, run.duration_s)
    sys.stdout.write(
        f'lagent bench: {type(llm).__name__}, {len(requests)} requests, concurrency {args.concurrency}, '
        f'request rate {args.request_rate}/s\n{format_summary(summary)}\n'
    )
    if args.json:
        settings = {
            'engine': type(llm).__name__,
            'workload': args.dataset or 'synthetic',
            'num_requests': len(requests),
            'concurrency': args.concurrency,
            'request_rate': args.request_rate,
            'seed': args.seed,
            **({} if args.dataset else {'input_len': args.input_len, 'output_len': args.output_len}),
            **gen_params,
        }
        write_json(args.json, run_to_json(run, summary, settings))
    if args.plot:
        plot_run(args.plot, run, summary)
    if summary.completed == 0:
        first = next(record.error for record in run.records if record.error)
        sys.stderr.write(f'lagent: error: all {summary.num_requests} requests failed; first error: {first}\n')
        return 1
    return 0


async def _closing(llm: BaseLLM, work: Awaitable[T]) -> T:
    try:
        return await work
    finally:
        await llm.aclose()


# ---------------------------------------------------------------------- helpers


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f'must be positive (or inf), got {text}')
    return value


def _say(text: str) -> None:
    sys.stdout.write(text + '\n')
    sys.stdout.flush()


def _note(text: str, *, end: str = '\n') -> None:
    sys.stderr.write(text + end)
    sys.stderr.flush()


def _error(exc: BaseException) -> None:
    message = ' '.join(str(exc).split()) or type(exc).__name__
    sys.stdout.flush()
    _note(f'lagent: error: {message}')


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('[%(name)s] %(message)s'))
    logger = logging.getLogger('lagent')
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
