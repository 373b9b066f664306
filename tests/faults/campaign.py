"""A seeded, randomized fault campaign against the HTTP engines.

Each run draws a fault class (every class in turn, in a seeded order), an
engine (``OpenAICompatible``, ``LMDeployClient``, ``GPTAPI``), a public method
(sync or async) and a request shape (raw prompt, conversation through a chat
endpoint or a meta_template, a batch, native tools), tells the chaos server
(:mod:`tests.faults.chaos_server`) what to break, calls the method and sorts
the outcome:

* ``correct``: the exact answer the server sent, or the typed error the fault
  calls for;
* ``typed error``: a :class:`~lagent.errors.LLMError` where the fault allowed
  an answer, or of another class than expected;
* ``untyped``: any other exception;
* ``hang``: no outcome within the configured total timeout plus a second;
* ``silent loss``: an answer that is not what the server sent (cut, altered,
  a chunk whose text is not a string), or an answer where the fault broke the
  reply so that no complete answer could be known;
* ``leak``: the API key shows in the error, its notes, body or causes.

The goal is zero untyped, zero hangs, zero silent losses and zero leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from lagent.errors import (
    LLMConnectionError,
    LLMError,
    LLMTimeoutError,
    RateLimitError,
    RequestError,
    ServerError,
    StreamError,
)
from lagent.llms.base import BaseLLM
from lagent.llms.lmdeploy_client import LMDeployClient
from lagent.llms.openai_compatible import GPTAPI, OpenAICompatible
from lagent.llms.process import ServerProcess, free_port
from lagent.schema import ModelStatusCode, Response
from tests.fixtures.servers import closed_port_url

SECRET = 'sk-chaos-5f2b91c4-never-shown'
CONNECT_S = 1.0
IDLE_S = 0.4
TOTAL_S = 1.5
SLACK_S = 1.0
"""A call must end within ``TOTAL_S + SLACK_S`` seconds (the slack absorbs a busy machine)."""
OUTCOMES = ('correct', 'typed error', 'untyped', 'hang', 'silent loss', 'leak')
CHATML = [
    {'role': 'system', 'begin': '<|im_start|>system\n', 'end': '<|im_end|>\n'},
    {'role': 'user', 'begin': '<|im_start|>user\n', 'end': '<|im_end|>\n'},
    {'role': 'assistant', 'begin': '<|im_start|>assistant\n', 'end': '<|im_end|>\n', 'generate': True},
]
WEATHER_TOOL = {
    'type': 'function',
    'function': {'name': 'get_weather', 'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}}},
}
_WORDS = ['Hello', ' world', ',', ' é', ' 中文', ' 😀', '\n', ' "quoted"', ' back\\slash', ' tab\t', ' <|im', '_end|>?']


# ---------------------------------------------------------------------- fault classes


@dataclass(frozen=True)
class Fault:
    """A class of fault: the chaos server's plan, and what a client must make of it."""

    name: str
    plan: dict[str, Any]
    modes: tuple[str, ...] = ('stream', 'whole')
    """The kinds of call it applies to: streamed (``stream``...) or whole answers (``generate``...)."""
    expect: str = 'error'
    """``'ok'``: the exact answer; ``'error'``: an error of class ``error``; ``'either'``."""
    error: type[LLMError] = LLMError
    timeout: bool | None = None
    """Whether the error must (``True``) or must not (``False``) be an :class:`LLMTimeoutError`."""


def _retry_after_date(offset_s: float) -> str:
    return formatdate(time.time() + offset_s, usegmt=True)


def fault_classes() -> list[Fault]:
    """Every fault class of the campaign (built anew: some plans hold the time)."""
    S, W = ('stream',), ('whole',)
    too_many = {'status': 429, 'failing': 1}
    conn, timeout = LLMConnectionError, LLMTimeoutError
    event_faults = ['bad_json', 'trailing_garbage', 'deep_json', 'not_object', 'string_event', 'no_choices',
                    'choices_not_list', 'content_number', 'content_list', 'content_object', 'finish_int',
                    'finish_error', 'usage_string', 'usage_float', 'usage_negative', 'nan_usage']  # fmt: skip
    answer_faults = ['bad_json', 'deep_json', 'not_object', 'no_choices', 'empty_choices', 'content_number',
                     'finish_int', 'usage_string', 'error_object', 'html']  # fmt: skip
    return [
        # the connection, before a byte of the answer
        Fault('refused', {}, error=conn, timeout=False),
        Fault('reset_on_accept', {'accept': 'reset'}, error=conn, timeout=False),
        Fault('reset_on_accept_once', {'accept': 'reset', 'failing': 1}, expect='ok'),
        Fault('close_on_accept', {'accept': 'close'}, error=conn, timeout=False),
        Fault('stall_on_accept', {'accept': 'stall'}, error=timeout),
        Fault('reset_after_request', {'after_request': 'reset'}, error=conn, timeout=False),
        Fault('close_after_request_once', {'after_request': 'close', 'failing': 1}, expect='ok'),
        Fault('stall_after_request', {'after_request': 'stall'}, error=timeout),
        # the status line and headers
        Fault('slow_loris_headers', {'headers_mode': 'slow'}, error=timeout),
        Fault('garbage_status_line', {'status_line': 'HTTP/1.1 two hundred OK'}, error=conn),
        Fault('not_http_at_all', {'status_line': 'SSH-2.0-OpenSSH_9.6'}, error=conn),
        # http.client takes a header block cut by a close for a whole one, and reads an empty body
        Fault('headers_cut_then_close', {'headers_mode': 'partial_close'}),
        Fault('headers_cut_then_reset', {'headers_mode': 'partial_reset'}, error=conn),
        Fault('huge_header_line', {'headers_mode': 'huge_line'}, error=conn),
        Fault('three_hundred_headers', {'headers_mode': 'many'}, expect='either', error=conn),
        Fault('informational_100_first', {'headers_mode': 'continue'}, expect='ok'),
        # error statuses and Retry-After
        Fault('status_500', {'status': 500}, error=ServerError),
        Fault('status_503_once', {'status': 503, 'failing': 1}, expect='ok'),
        Fault('status_502_html', {'status': 502, 'error_body': 'html'}, error=ServerError),
        Fault('status_429_retry_after', {'status': 429, 'retry_after': '0.2', 'failing': 1}, expect='ok'),
        Fault('retry_after_nan', {'status': 429, 'retry_after': 'nan', 'failing': 1}, expect='ok'),
        Fault('retry_after_inf', {'status': 429, 'retry_after': 'inf', 'failing': 1}, expect='ok'),
        Fault('retry_after_negative', {'status': 429, 'retry_after': '-30', 'failing': 1}, expect='ok'),
        Fault('retry_after_past_date', {**too_many, 'retry_after': _retry_after_date(-3600)}, expect='ok'),
        Fault(
            'retry_after_future_date',
            {**too_many, 'retry_after': _retry_after_date(1)},
            expect='either',
            error=RateLimitError,
        ),
        Fault('retry_after_garbage', {'status': 429, 'retry_after': 'soon-ish', 'failing': 1}, expect='ok'),
        Fault('retry_after_beyond_deadline', {**too_many, 'retry_after': '1e12'}, error=RateLimitError),
        Fault('status_429_always', {'status': 429, 'retry_after': '0'}, error=RateLimitError),
        Fault('status_400', {'status': 400, 'failing': 1}, error=RequestError),
        Fault('status_401_echoing_the_key', {'status': 401, 'error_body': 'echo_key'}, error=RequestError),
        Fault('status_404_empty_body', {'status': 404, 'error_body': 'empty'}, error=RequestError),
        Fault('status_422_lmdeploy_body', {'status': 422, 'error_body': 'lmdeploy'}, error=RequestError),
        Fault('redirect_loop', {'status': 302, 'location': '/v1/completions'}),
        Fault('html_with_200', {'raw_body': '<html><body>It works!</body></html>'}, error=StreamError),
        # streamed bodies: connection and timing
        Fault('reset_mid_stream', {'cut_at': 2, 'end': 'reset'}, S, error=conn, timeout=False),
        Fault('close_mid_stream', {'cut_at': 2, 'end': 'close'}, S),
        Fault('stall_mid_stream', {'cut_at': 2, 'end': 'stall'}, S, error=timeout),
        Fault('slow_loris_body', {'dribble': 0.02}, S, error=timeout),
        Fault('dribbling_huge_chunk', {'one_huge_chunk': True, 'delay': 0.01}, S, error=timeout),
        Fault('each_event_in_time_all_too_slow', {'delay': 0.3}, S, error=timeout),
        # streamed bodies: HTTP framing and encodings
        Fault('chunk_size_not_hex', {'chunk_fault': 'bad_size', 'event_at': 2}, S, error=conn),
        Fault('chunk_truncated_then_close', {'chunk_fault': 'truncated', 'event_at': 2, 'end': 'close'}, S),
        Fault('chunk_size_lies', {'chunk_fault': 'lying_size', 'event_at': 2}, S),
        Fault('no_last_chunk_after_done', {'chunk_fault': 'no_terminator', 'end': 'close'}, S, expect='either'),
        Fault('chunk_extensions', {'chunk_fault': 'extensions'}, S, expect='ok'),
        Fault('chunk_trailers', {'chunk_fault': 'trailers'}, S, expect='ok'),
        Fault('http10_body_until_close', {'framing': 'close'}, S, expect='ok'),
        Fault('http10_closed_without_done', {'framing': 'close', 'done': False}, S, error=StreamError),
        Fault('gzip_stream', {'encoding': 'gzip'}, expect='ok'),
        Fault('deflate_stream', {'encoding': 'deflate'}, expect='ok'),
        Fault('gzip_label_on_plain_text', {'encoding': 'gzip_bad'}),
        Fault('gzip_truncated', {'encoding': 'gzip_truncated'}, expect='either'),
        # streamed bodies: SSE framing
        Fault('byte_order_mark', {'bom': True}, S, expect='ok'),
        Fault('cr_line_endings', {'newline': '\r'}, S, expect='ok'),
        Fault('crlf_line_endings', {'newline': '\r\n'}, S, expect='ok'),
        Fault('mixed_line_endings_byte_by_byte', {'newline': 'mixed', 'writes': 'byte'}, S, expect='ok'),
        Fault('comments_ids_and_retry_fields', {'comments': True}, S, expect='ok'),
        Fault('data_split_over_lines', {'split_data': True}, S, expect='ok'),
        Fault('empty_keepalive_events', {'empty_data': True}, S, expect='ok'),
        Fault('whole_stream_in_one_write', {'writes': 'all'}, S, expect='ok'),
        Fault('events_after_done', {'extra_after_done': True}, S, expect='ok'),
        Fault('content_type_text_plain', {'content_type': 'text/plain'}, expect='ok'),
        Fault('missing_done', {'done': False}, S, error=StreamError),
        Fault('json_instead_of_a_stream', {'ignore_stream': True}, S, error=StreamError),
        Fault('in_band_error', {'in_band_error': True, 'event_at': 2}, S, error=StreamError),
        Fault('sse_error_event', {'error_event': True, 'event_at': 2}, S, error=StreamError),
        Fault('line_past_the_cap', {'huge_line': 17 << 20, 'event_at': 1}, S, error=StreamError),
        Fault('invalid_utf8', {'invalid_utf8': True, 'event_at': 1}, S, error=StreamError),
        *[Fault(f'event_{name}', {'event_fault': name, 'event_at': 2}, S, error=StreamError) for name in event_faults],
        # a chat-only event: the completions endpoint's reader may skip it
        Fault(
            'event_tool_calls_not_a_list', {'event_fault': 'tool_calls_string'}, S, expect='either', error=StreamError
        ),
        Fault(
            'event_tool_call_index_not_int',
            {'event_fault': 'tool_call_bad_index'},
            S,
            expect='either',
            error=StreamError,
        ),
        # whole answers
        *[Fault(f'answer_{name}', {'answer_fault': name}, W, error=StreamError) for name in answer_faults],
        Fault('answer_body_shorter_than_length', {'length_fault': 'short'}, W, error=conn),
        Fault('answer_slow_loris', {'dribble': 0.05}, W, error=timeout),
        Fault('answer_stall_after_headers', {'cut_at': 0, 'end': 'stall'}, W, error=timeout),
    ]


# ---------------------------------------------------------------------- the server


class ChaosProcess:
    """The chaos server in a child process (run by ``ServerProcess``), and the line it takes plans on."""

    def __init__(self) -> None:
        root = Path(__file__).resolve().parents[2]
        port, control = free_port(), free_port()
        command = [
            sys.executable,
            '-m',
            'tests.faults.chaos_server',
            '--port',
            str(port),
            '--control-port',
            str(control),
        ]
        self._server = ServerProcess(command, port=port, name='chaos server', ready_timeout=60, cwd=root,
                                     env={**os.environ, 'PYTHONPATH': str(root)})  # fmt: skip
        self._server.start()
        self.url = self._server.url
        try:
            self._control = socket.create_connection(('127.0.0.1', control), timeout=10)
        except OSError:
            self._server.stop()
            raise
        self._answers = self._control.makefile('rb')

    def plan(self, **knobs: Any) -> None:
        """Break the next requests as ``knobs`` say (see ``chaos_server.Plan``); no knobs: answer correctly."""
        self._control.sendall(json.dumps(knobs).encode() + b'\n')
        if self._answers.readline() != b'ok\n':
            raise RuntimeError('the chaos server refused the plan')

    def close(self) -> None:
        self._answers.close()
        self._control.close()
        self._server.stop()


@contextlib.contextmanager
def chaos_server() -> Iterator[ChaosProcess]:
    """Run the chaos server for the duration of the block."""
    server = ChaosProcess()
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------------- runs


ENGINES = ('openai', 'lmdeploy', 'gptapi')
SYNC_METHODS = ('generate', 'chat', 'complete', 'stream', 'stream_chat', 'stream_generate')
ASYNC_METHODS = ('agenerate', 'achat', 'acomplete', 'astream', 'astream_chat', 'astream_generate')
STREAMING = {'stream', 'stream_chat', 'stream_generate', 'astream', 'astream_chat', 'astream_generate'}


@dataclass
class Run:
    """One run of the campaign and what came of it."""

    index: int
    fault: str
    engine: str
    method: str
    shape: str
    """``'prompt'``, ``'chat endpoint'``, ``'meta_template'``, ``'tools'``, or ``'batch'``."""
    model_lookup: bool
    outcome: str = ''
    seconds: float = 0.0
    detail: str = ''
    fds_left: list[str] = field(default_factory=list)
    """What the file descriptors still open once the engine was closed point at (there should be none)."""


@dataclass
class Expected:
    text: str
    finish_reason: str
    completion_tokens: int
    tool_call: dict[str, str] | None


def make_engine(kind: str, url: str, *, template: bool, model_lookup: bool) -> BaseLLM:
    common: dict[str, Any] = dict(connect_timeout=CONNECT_S, idle_timeout=IDLE_S, timeout=TOTAL_S,
                                  retry_backoff=0.01, max_new_tokens=64, temperature=0)  # fmt: skip
    meta = CHATML if template else None
    model = None if model_lookup else 'chaos'
    if kind == 'openai':
        return OpenAICompatible(url, model, api_key=SECRET, meta_template=meta, max_retries=2, **common)
    if kind == 'lmdeploy':
        return LMDeployClient(url, model, meta_template=meta, api_key=SECRET, max_retries=2, **common)
    return GPTAPI(model_type='chaos', retry=2, key=SECRET, api_base=url + '/v1/chat/completions', meta_template=meta,
                  **common)  # fmt: skip


class Campaign:
    """Runs of a seeded campaign against one chaos server.

    Args:
        server: The running chaos server.
        seed: Seeds every random choice (same seed, same runs).
        log: Called with a line for every run that is not ``correct``.
    """

    def __init__(self, server: ChaosProcess, seed: int = 0, log: Callable[[str], None] | None = None):
        self.server = server
        self.rng = random.Random(seed)
        self.log = log or (lambda line: None)
        self.runs: list[Run] = []
        self._dead = closed_port_url()
        self.baseline_fds = fd_targets()

    def run(self, count: int) -> None:
        """Make ``count`` runs, every fault class in turn (a new seeded order each round)."""
        faults: list[Fault] = []
        for _ in range(count):
            if not faults:
                faults = fault_classes()
                self.rng.shuffle(faults)
            self.runs.append(self.one(len(self.runs), faults.pop()))

    def one(self, index: int, fault: Fault) -> Run:
        rng = self.rng
        methods = [m for m in SYNC_METHODS + ASYNC_METHODS if ('stream' if m in STREAMING else 'whole') in fault.modes]
        method = rng.choice(methods)
        engine = rng.choice(ENGINES)
        lookup = engine != 'gptapi' and rng.random() < 0.2  # GPTAPI always names its model
        run = Run(index, fault.name, engine, method, self._shape(method, rng), lookup)
        tokens = [rng.choice(_WORDS) for _ in range(rng.randint(3, 12))]
        tool_call = {'name': 'get_weather', 'arguments': '{"city": "Paris"}'} if run.shape == 'tools' else None
        plan = {'tokens': tokens, 'finish': rng.choice(['stop', 'length']), 'tool_call': tool_call, **fault.plan}
        expected = Expected(''.join(tokens), 'tool_calls' if tool_call else plan['finish'], len(tokens), tool_call)
        self.server.plan(**plan)
        url = self._dead if fault.name == 'refused' else self.server.url
        llm = make_engine(run.engine, url, template=run.shape == 'meta_template', model_lookup=run.model_lookup)
        started = time.monotonic()
        result = _call_async(llm, run) if method.startswith('a') else _call_sync(llm, run)
        run.seconds = time.monotonic() - started
        run.fds_left = opened_since(self.baseline_fds)  # the engine is closed but still referenced here
        del llm
        run.outcome, run.detail = _judge(fault, run, expected, result)
        if run.outcome != 'correct':
            self.log(f'{run.outcome:<12} {run.fault} / {run.engine}.{run.method} ({run.shape}) {run.seconds:.2f}s: '
                     f'{run.detail}')  # fmt: skip
        return run

    @staticmethod
    def _shape(method: str, rng: random.Random) -> str:
        name = sync_name(method)
        if name in ('generate', 'stream_generate'):
            return 'batch' if name == 'generate' and rng.random() < 0.3 else 'prompt'
        if name == 'chat':
            return rng.choice(['chat endpoint', 'meta_template', 'batch'])
        if name in ('complete', 'stream'):
            return rng.choice(['prompt', 'chat endpoint', 'meta_template', 'tools'])
        return rng.choice(['chat endpoint', 'meta_template', 'tools'])  # stream_chat


CONVERSATION = [{'role': 'user', 'content': 'Say something.'}]


def sync_name(method: str) -> str:
    """The sync twin's name of a method (``astream_chat`` -> ``stream_chat``)."""
    return method[1:] if method.startswith('a') and method[1:] in SYNC_METHODS else method


def _arguments(run: Run) -> tuple[Any, dict[str, Any]]:
    if run.shape == 'prompt':
        return 'Say something.', {}
    if run.shape == 'batch':
        if run.method.endswith('generate'):
            return ['Say something.', 'Say more.'], {}
        return [CONVERSATION, CONVERSATION], {}
    if run.shape == 'tools':
        return CONVERSATION, {'tools': [WEATHER_TOOL]}
    return CONVERSATION, {}


_NO_RESULT: Any = object()


def _call_sync(llm: BaseLLM, run: Run) -> Any:
    inputs, kwargs = _arguments(run)
    holder: list[Any] = []

    def call() -> None:
        try:
            method = getattr(llm, run.method)
            value = method(inputs, **kwargs)
            if run.method in STREAMING:
                value = list(value)
            holder.append(value)
        except BaseException as exc:
            holder.append(exc)

    worker = threading.Thread(target=call, name=f'chaos-run-{run.index}', daemon=True)
    worker.start()
    worker.join(TOTAL_S + SLACK_S + 5)
    if worker.is_alive():
        return _NO_RESULT  # hung; the thread is left behind
    llm.close()
    return holder[0]


def _call_async(llm: BaseLLM, run: Run) -> Any:
    inputs, kwargs = _arguments(run)

    async def call() -> Any:
        method = getattr(llm, run.method)
        if run.method in STREAMING:
            return [item async for item in method(inputs, **kwargs)]
        return await method(inputs, **kwargs)

    async def main() -> Any:
        task = asyncio.ensure_future(call())
        try:
            done, _ = await asyncio.wait({task}, timeout=TOTAL_S + SLACK_S + 5)
            if not done:
                task.cancel()
                return _NO_RESULT
            return task.exception() or task.result()
        finally:
            await llm.aclose()

    return asyncio.run(main())


# ---------------------------------------------------------------------- judging


def _judge(fault: Fault, run: Run, expected: Expected, result: Any) -> tuple[str, str]:
    if result is _NO_RESULT:
        return 'hang', 'no outcome at all'
    if run.seconds > TOTAL_S + SLACK_S:
        return 'hang', f'took {run.seconds:.2f}s, the total timeout is {TOTAL_S}s'
    if isinstance(result, BaseException):
        if shows_secret(result, SECRET):
            return 'leak', f'{type(result).__name__} shows the API key'
        if not isinstance(result, LLMError):
            return 'untyped', f'{type(result).__name__}: {str(result)[:300]}'
        described = f'{type(result).__name__}: {str(result)[:200]}'
        if fault.expect == 'ok':
            return 'typed error', f'expected the answer, got {described}'
        if not isinstance(result, fault.error):
            return 'typed error', f'expected {fault.error.__name__}, got {described}'
        if fault.timeout is not None and isinstance(result, LLMTimeoutError) != fault.timeout:
            return 'typed error', f'expected {"" if fault.timeout else "no "}timeout, got {described}'
        return 'correct', described
    problem = _check_answer(run, expected, result)
    if problem:
        return 'silent loss', problem
    if fault.expect == 'error':
        return 'silent loss', f'expected {fault.error.__name__}, got an answer'
    return 'correct', 'the exact answer'


def _check_answer(run: Run, expected: Expected, result: Any) -> str | None:
    """What is wrong with an answer (``None``: it is what the server sent)."""
    name = sync_name(run.method)
    if run.shape == 'batch':
        if not isinstance(result, list) or len(result) != 2:
            return f'a batch of 2 gave {result!r:.200}'
        wrong = [item for item in result if item != expected.text]
        return f'batch replies {wrong!r:.200} != {expected.text!r}' if wrong else None
    if name in ('generate', 'chat'):
        return None if result == expected.text else f'{result!r:.200} != {expected.text!r}'
    if name == 'complete':
        return _check_response(result, expected)
    if name == 'stream_generate':
        if not all(isinstance(text, str) for text in result):
            return 'a cumulative text that is not a str'
        final = result[-1] if result else ''
        return None if final == expected.text else f'{final!r:.200} != {expected.text!r}'
    if name == 'stream':
        if not all(isinstance(chunk.text, str) for chunk in result):
            return f'a chunk whose text is not a str: {result!r:.200}'
        text = ''.join(chunk.text for chunk in result)
        finish = [chunk.finish_reason for chunk in result if chunk.finish_reason]
        usage = [chunk.usage for chunk in result if chunk.usage]
        calls = [delta for chunk in result for delta in chunk.tool_calls or []]
        if text != expected.text:
            return f'{text!r:.200} != {expected.text!r}'
        if finish != [expected.finish_reason]:
            return f'finish reasons {finish} != [{expected.finish_reason!r}]'
        if [u.completion_tokens for u in usage] != [expected.completion_tokens]:
            return f'usage {usage} does not count {expected.completion_tokens} tokens'
        if expected.tool_call is not None:
            arguments = ''.join(delta.arguments for delta in calls)
            if arguments != expected.tool_call['arguments'] or calls[0].name != expected.tool_call['name']:
                return f'tool call deltas {calls!r:.300}'
        return None
    # stream_chat
    if not result or result[-1][0] != ModelStatusCode.END:
        return f'stream_chat did not end with END: {result!r:.200}'
    texts = [text for _, text, _ in result]
    if not all(isinstance(text, str) for text in texts) or any(
        not later.startswith(earlier) for earlier, later in itertools.pairwise(texts)
    ):
        return f'stream_chat texts are not growing strings: {texts!r:.200}'
    if texts[-1] != expected.text:
        return f'{texts[-1]!r:.200} != {expected.text!r}'
    return _check_response(result[-1][2], expected)


def _check_response(response: Any, expected: Expected) -> str | None:
    if not isinstance(response, Response):
        return f'not a Response: {response!r:.200}'
    if response.text != expected.text:
        return f'{response.text!r:.200} != {expected.text!r}'
    if response.finish_reason != expected.finish_reason:
        return f'finish_reason {response.finish_reason!r} != {expected.finish_reason!r}'
    if response.usage is None or response.usage.completion_tokens != expected.completion_tokens:
        return f'usage {response.usage} does not count {expected.completion_tokens} tokens'
    if expected.tool_call is not None:
        calls = [(call.function.name, call.function.arguments) for call in response.tool_calls]
        if calls != [(expected.tool_call['name'], expected.tool_call['arguments'])]:
            return f'tool calls {calls!r:.300}'
    elif response.tool_calls:
        return f'unexpected tool calls {response.tool_calls!r:.300}'
    return None


def shows_secret(exc: BaseException, secret: str) -> bool:
    """Whether ``secret`` shows anywhere a user could see it: message, repr, notes, body, causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts = [str(current), repr(current), *getattr(current, '__notes__', [])]
        for name in ('body', 'message'):
            value = getattr(current, name, None)
            if value is not None:
                parts.append(value if isinstance(value, str) else repr(value))
        if any(secret in part for part in parts):
            return True
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return False


# ---------------------------------------------------------------------- reports


def summary(runs: list[Run]) -> str:
    """Outcome counts, then the runs that were not correct, grouped by fault class."""
    counts = Counter(run.outcome for run in runs)
    lines = [f'{len(runs)} runs: ' + ', '.join(f'{name} {counts.get(name, 0)}' for name in OUTCOMES)]
    methods = Counter(run.method for run in runs)
    engines = Counter(run.engine for run in runs)
    lines.append('methods: ' + ', '.join(f'{name} {methods[name]}' for name in SYNC_METHODS + ASYNC_METHODS))
    lines.append('engines: ' + ', '.join(f'{name} {engines[name]}' for name in ENGINES))
    lines.append(f'fault classes: {len({run.fault for run in runs})}')
    leaking = [run for run in runs if run.fds_left]
    lines.append(f'runs that left file descriptors open after close(): {len(leaking)}')
    return '\n'.join(lines)


def fd_targets() -> dict[int, str]:
    """This process's file descriptors, each with what it points at (a file, ``socket:[inode]``, a pipe...)."""
    targets = {}
    for name in os.listdir('/proc/self/fd'):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used is gone by now
            targets[int(name)] = os.readlink(f'/proc/self/fd/{name}')
    return targets


def opened_since(before: dict[int, str]) -> list[str]:
    """What the file descriptors opened since ``before`` was taken point at."""
    return [target for fd, target in sorted(fd_targets().items()) if before.get(fd) != target]


async def concurrent_streams(url: str, count: int = 256, tokens: int = 50) -> tuple[int, float]:
    """Run ``count`` async streams at once through one engine; return how many were exact, and the seconds."""
    expected = ''.join(f' t{i}' for i in range(tokens))
    async with OpenAICompatible(url, 'chaos', api_key=SECRET, max_new_tokens=tokens) as llm:
        started = time.monotonic()

        async def one() -> bool:
            chunks = [chunk async for chunk in llm.astream('Count.')]
            return ''.join(chunk.text for chunk in chunks) == expected

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        return sum(result is True for result in results), time.monotonic() - started


@dataclass
class CampaignReport:
    """A whole campaign, as :func:`full_campaign` ran it."""

    runs: list[Run]
    fds_opened: list[str]
    """File descriptors open after the campaign that were not before it (there should be none)."""
    concurrent_exact: int
    """How many of the concurrent async streams gave the exact answer."""
    concurrent_count: int
    concurrent_seconds: float
    concurrent_fds_opened: list[str]
    """File descriptors open after the concurrent streams that were not before them."""

    def counts(self) -> Counter[str]:
        """How many runs had each outcome."""
        return Counter(run.outcome for run in self.runs)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CampaignReport:
        return cls(**{**data, 'runs': [Run(**run) for run in data['runs']]})


def full_campaign(
    runs: int, seed: int, *, streams: int = 256, log: Callable[[str], None] | None = None
) -> CampaignReport:
    """Start a chaos server, warm up, make ``runs`` seeded runs, then ``streams`` concurrent async streams.

    The descriptor counts are only meaningful in a process that runs nothing else: a library that opens
    descriptors from its own threads (gRPC, Ray) would move them. The CI test runs this in a child process.
    """
    with chaos_server() as server:
        Campaign(server, seed=seed + 1).run(3)  # warm up: lazily created state exists before counting
        gc.collect()
        before = fd_targets()
        campaign = Campaign(server, seed=seed, log=log)
        campaign.run(runs)
        gc.collect()
        fds_opened = opened_since(before)
        server.plan(tokens=[f' t{i}' for i in range(50)])
        before_streams = fd_targets()
        exact, seconds = asyncio.run(concurrent_streams(server.url, streams, 50))
        gc.collect()
        streams_opened = opened_since(before_streams)
    return CampaignReport(campaign.runs, fds_opened, exact, streams, seconds, streams_opened)
