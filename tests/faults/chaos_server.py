"""A chaos server: an OpenAI-compatible HTTP/1.1 server on loopback sockets that
breaks, on request, every layer a client reads.

It is written on raw sockets (asyncio streams), not on a web framework, so a
fault can be anything the wire allows: a reset while the client sends, a status
line dribbled one byte at a time, a chunk size that lies, gzip that is not, an
event whose ``content`` is a number, CR-only line endings, a line that never
ends. Without a fault it answers ``/v1/completions`` and
``/v1/chat/completions`` (streamed or whole) and ``/v1/models`` the way vLLM
does (and ``/api/chat`` the way Ollama does, in NDJSON): compact JSON, ``data: <json>\\n\\n`` events in chunked transfer
encoding, a first chat event with the role, a usage event when
``stream_options.include_usage`` asks for it, ``data: [DONE]``.

It runs as a child process (``python -m tests.faults.chaos_server --port P
--control-port C``, started by ``ServerProcess``). The control port takes the
*plan* (what to break, see :class:`Plan`) as one JSON line and answers ``ok``;
a new plan also cancels what the previous one left running (stalled connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

MODEL = 'chaos'
STALL_S = 60.0


@dataclass
class Plan:
    """What the server does to the next requests. The defaults answer correctly.

    A fault applies to the first ``failing`` generation requests (``None``:
    all of them); connection-level faults (``accept``) count connections instead.
    """

    tokens: list[str] = field(default_factory=lambda: ['Hello', ',', ' world', '!'])
    finish: str = 'length'
    tool_call: dict[str, str] | None = None
    """``{'name', 'arguments'}``: a chat reply that calls this tool (arguments streamed in pieces)."""
    failing: int | None = None
    accept: str | None = None
    """On accept, before reading: ``'reset'``, ``'close'`` or ``'stall'``."""
    after_request: str | None = None
    """Once the request is read: ``'reset'``, ``'close'`` or ``'stall'``."""
    status: int = 200
    error_body: str = 'openai'
    """Body of an error status: ``'openai'``, ``'lmdeploy'``, ``'html'``, ``'empty'``, ``'echo_key'``."""
    retry_after: str | None = None
    location: str | None = None
    status_line: str | None = None
    """Replaces the status line (latin-1), e.g. garbage."""
    headers_mode: str | None = None
    """``'slow'`` (dribbled), ``'partial_close'``, ``'partial_reset'``, ``'huge_line'``, ``'many'``, ``'continue'``."""
    content_type: str | None = None
    framing: str = 'chunked'
    """Streams: ``'chunked'`` or ``'close'`` (HTTP/1.0, the body ends with the connection)."""
    encoding: str | None = None
    """``'gzip'``, ``'deflate'``, ``'gzip_bad'`` (labelled, not compressed), ``'gzip_truncated'``."""
    event_fault: str | None = None
    """A broken event (see :func:`_break_event`)."""
    event_at: int = 1
    answer_fault: str | None = None
    """A broken whole answer (see :func:`_break_answer`)."""
    bom: bool = False
    newline: str = '\n'
    """``'\\n'``, ``'\\r'``, ``'\\r\\n'`` or ``'mixed'``."""
    comments: bool = False
    split_data: bool = False
    empty_data: bool = False
    done: bool = True
    extra_after_done: bool = False
    error_event: bool = False
    in_band_error: bool = False
    huge_line: int = 0
    invalid_utf8: bool = False
    writes: str = 'event'
    """How the body is written: ``'event'`` (one write each), ``'all'``, ``'byte'``."""
    chunk_fault: str | None = None
    """``'bad_size'``, ``'truncated'``, ``'no_terminator'``, ``'extensions'``, ``'trailers'``, ``'lying_size'``."""
    length_fault: str | None = None
    """Whole answers: ``'short'`` (Content-Length larger than the body, then close)."""
    end: str = 'keep'
    """After the body: ``'keep'``, ``'close'``, ``'reset'`` or ``'stall'``."""
    cut_at: int | None = None
    """End the connection (``end``) after this many body writes instead of after all."""
    delay: float = 0.0
    """Seconds before each body write."""
    first_delay: float = 0.0
    """More seconds before the first body write (a server's time to the first token)."""
    dribble: float = 0.0
    """Seconds between the bytes of every write (slow-loris)."""
    one_huge_chunk: bool = False
    """Announce the whole body as one HTTP chunk of a huge size, and dribble it."""
    ignore_stream: bool = False
    """Answer a streaming request with a whole JSON answer (a server that cannot stream)."""
    raw_body: str | None = None
    """Send this body (latin-1) instead of the answer, with ``content_type``."""


class ChaosServer:
    """The server's state: the plan and what it has seen."""

    def __init__(self) -> None:
        self.plan = Plan()
        self.requests = 0
        self.connections = 0
        self.tasks: set[asyncio.Task[Any]] = set()

    def set_plan(self, plan: Plan) -> None:
        for task in self.tasks:
            task.cancel()
        self.plan, self.requests, self.connections = plan, 0, 0

    def _faulty(self, count: int) -> bool:
        failing = self.plan.failing
        return failing is None or count < failing

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, asyncio.LimitOverrunError):
            pass
        finally:
            self.tasks.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        plan = self.plan
        connection = self.connections
        self.connections += 1
        if plan.accept and self._faulty(connection):
            await _end(writer, plan.accept)
            return
        while True:
            request = await _read_request(reader)
            if request is None:
                return
            _, path, headers, body = request
            if path.endswith('/api/chat'):
                keep = await _answer_ndjson(writer, plan if self._faulty(self.requests) else Plan(tokens=plan.tokens))
                self.requests += 1
                if not keep:
                    return
                continue
            if path.endswith('/models'):
                await _write_all(writer, _response(200, 'application/json', _models()))
                continue
            if not path.endswith('/completions'):
                await _write_all(writer, _response(404, 'application/json', _error_json(404, 'no such path')))
                continue
            count = self.requests
            self.requests += 1
            faulty = self._faulty(count)
            keep = await _answer(writer, plan if faulty else Plan(tokens=plan.tokens, finish=plan.finish,
                                 tool_call=plan.tool_call), path, headers, body)  # fmt: skip
            if not keep:
                return


# ---------------------------------------------------------------------- reading requests


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], Any] | None:
    try:
        head = await reader.readuntil(b'\r\n\r\n')
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode('latin-1').split('\r\n')
    method, path, _ = lines[0].split(' ', 2)
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get('content-length', 0))
    raw = await reader.readexactly(length) if length else b''
    return method, path, headers, json.loads(raw) if raw else None


# ---------------------------------------------------------------------- answers


async def _answer(writer: asyncio.StreamWriter, plan: Plan, path: str, headers: dict[str, str], body: Any) -> bool:
    """Answer one generation request following ``plan``; return whether the connection stays open."""
    if plan.after_request:
        await _end(writer, plan.after_request)
        return False
    chat = path.endswith('/chat/completions')
    stream = bool(body and body.get('stream')) and not plan.ignore_stream
    if plan.raw_body is not None:
        content_type = plan.content_type or 'text/html'
        await _send(writer, plan, plan.status, content_type, [plan.raw_body.encode('latin-1')], framing='length')
        return plan.end == 'keep'
    if plan.status >= 300:
        extra = []
        if plan.retry_after is not None:
            extra.append(('Retry-After', plan.retry_after))
        if plan.location is not None:
            extra.append(('Location', plan.location))
        content_type, payload = _error_body(plan.status, plan.error_body, headers.get('authorization', ''))
        await _send(writer, plan, plan.status, content_type, [payload], framing='length', extra=extra)
        return plan.end == 'keep'
    if stream:
        include_usage = bool((body.get('stream_options') or {}).get('include_usage'))
        pieces = _stream_pieces(plan, chat, include_usage)
        content_type = plan.content_type or 'text/event-stream; charset=utf-8'
        await _send(writer, plan, 200, content_type, pieces, framing=plan.framing)
    else:
        answer = _break_answer(_whole(plan, chat), plan.answer_fault)
        content_type = plan.content_type or 'application/json'
        await _send(writer, plan, 200, content_type, [answer], framing='length')
    return plan.end == 'keep' and plan.framing == 'chunked'


async def _answer_ndjson(writer: asyncio.StreamWriter, plan: Plan) -> bool:
    """Answer like Ollama's ``/api/chat``: one JSON object a line, the last one with ``"done": true``."""
    now = time.strftime('%Y-%m-%dT%H:%M:%S.000000Z', time.gmtime())
    lines = []
    for token in plan.tokens:
        message = {'role': 'assistant', 'content': token}
        lines.append({'model': MODEL, 'created_at': now, 'message': message, 'done': False})
    if plan.done:
        lines.append({'model': MODEL, 'created_at': now, 'message': {'role': 'assistant', 'content': ''},
                      'done_reason': plan.finish, 'done': True, 'total_duration': 1_000_000,
                      'prompt_eval_count': 11, 'eval_count': len(plan.tokens)})  # fmt: skip
    pieces = [(json.dumps(line, separators=(',', ':')) + '\n').encode() for line in lines]
    if plan.event_fault:
        pieces.insert(plan.event_at, b'{"error":"model runner has unexpectedly stopped"}\n')
    await _send(writer, plan, 200, 'application/x-ndjson', pieces, framing=plan.framing)
    return plan.end == 'keep' and plan.framing == 'chunked'


def _stream_pieces(plan: Plan, chat: bool, include_usage: bool) -> list[bytes]:
    """The SSE body, one piece per event, with the plan's event and framing faults."""
    events: list[Any] = [json.dumps(event, separators=(',', ':')) for event in _events(plan, chat, include_usage)]
    if plan.event_fault:  # inserted, so that a reader that may skip it still gets every token
        events.insert(plan.event_at, _break_event(plan.event_fault, chat))
    if plan.in_band_error:
        events.insert(plan.event_at, json.dumps({'error': {'message': 'out of KV cache blocks', 'type': 'server_error',
                                                           'param': None, 'code': 500}}))  # fmt: skip
    newline = plan.newline
    pieces = []
    for index, payload in enumerate(events):
        line_end = ('\n', '\r', '\r\n')[index % 3] if newline == 'mixed' else newline
        if plan.split_data and payload.startswith('{') and len(payload) > 10:
            middle = payload.index(',') + 1  # JSON allows a newline after a comma: data lines rejoin with \n
            text = f'data: {payload[:middle]}{line_end}data: {payload[middle:]}{line_end}{line_end}'
        else:
            text = f'data: {payload}{line_end}{line_end}'
        if plan.comments:
            text = f': keep-alive{line_end}{line_end}id: {index}{line_end}retry: 100{line_end}' + text
        if plan.empty_data and index == 1:
            text = f'data:{line_end}{line_end}' + text
        if plan.error_event and index == plan.event_at:
            text = f'event: error{line_end}data: {{"message": "worker crashed"}}{line_end}{line_end}'
        pieces.append(text.encode())
    if plan.huge_line:
        pieces.insert(plan.event_at, b'data: ' + b'x' * plan.huge_line)
    if plan.invalid_utf8:
        pieces.insert(plan.event_at, b'data: {"bad": "\xff\xfe"}\n\n')
    if plan.done:
        pieces.append(b'data: [DONE]' + (newline if newline != 'mixed' else '\n').encode() * 2)
        if plan.extra_after_done:
            pieces.append(b'data: {"choices": [{"text": "after done"}]}\n\n')
    if plan.bom:
        pieces[0] = b'\xef\xbb\xbf' + pieces[0]
    return pieces


def _events(plan: Plan, chat: bool, include_usage: bool) -> list[dict[str, Any]]:
    head = {'id': 'cmpl-chaos', 'object': 'chat.completion.chunk' if chat else 'text_completion',
            'created': int(time.time()), 'model': MODEL}  # fmt: skip
    events = []
    if chat:
        events.append({**head, 'choices': [{'index': 0, 'delta': {'role': 'assistant', 'content': ''},
                                            'logprobs': None, 'finish_reason': None}]})  # fmt: skip
    for token in plan.tokens:
        if chat:
            choice = {'index': 0, 'delta': {'content': token}, 'logprobs': None, 'finish_reason': None}
        else:
            choice = {'index': 0, 'text': token, 'logprobs': None, 'finish_reason': None, 'stop_reason': None}
        events.append({**head, 'choices': [choice]})
    finish = plan.finish
    if chat and plan.tool_call is not None:
        call, arguments = plan.tool_call, plan.tool_call['arguments']
        third = max(1, len(arguments) // 3)
        pieces = [arguments[:third], arguments[third : 2 * third], arguments[2 * third :]]
        first = {'index': 0, 'id': 'call_chaos', 'type': 'function', 'function': {'name': call['name'],
                                                                                'arguments': pieces[0]}}  # fmt: skip
        events.append({**head, 'choices': [{'index': 0, 'delta': {'tool_calls': [first]}, 'finish_reason': None}]})
        for piece in pieces[1:]:
            delta = {'tool_calls': [{'index': 0, 'function': {'arguments': piece}}]}
            events.append({**head, 'choices': [{'index': 0, 'delta': delta, 'finish_reason': None}]})
        finish = 'tool_calls'
    last: dict[str, Any] = {'index': 0, 'logprobs': None, 'finish_reason': finish}
    last.update({'delta': {}} if chat else {'text': '', 'stop_reason': None})
    events.append({**head, 'choices': [last]})
    if include_usage:
        events.append({**head, 'choices': [], 'usage': _usage(plan)})
    return events


def _usage(plan: Plan) -> dict[str, int]:
    return {'prompt_tokens': 11, 'total_tokens': 11 + len(plan.tokens), 'completion_tokens': len(plan.tokens)}


def _whole(plan: Plan, chat: bool) -> dict[str, Any]:
    text = ''.join(plan.tokens)
    finish = plan.finish
    if chat:
        message: dict[str, Any] = {'role': 'assistant', 'content': text}
        if plan.tool_call is not None:
            message['tool_calls'] = [{'id': 'call_chaos', 'type': 'function', 'function': dict(plan.tool_call)}]
            finish = 'tool_calls'
        choice: dict[str, Any] = {'index': 0, 'message': message, 'logprobs': None, 'finish_reason': finish}
    else:
        choice = {'index': 0, 'text': text, 'logprobs': None, 'finish_reason': finish, 'stop_reason': None}
    return {'id': 'cmpl-chaos', 'object': 'chat.completion' if chat else 'text_completion',
            'created': int(time.time()), 'model': MODEL, 'choices': [choice], 'usage': _usage(plan)}  # fmt: skip


def _break_event(fault: str, chat: bool) -> str:
    """One event's payload, broken as ``fault`` says."""

    def event(choice: dict[str, Any], **extra: Any) -> str:
        return json.dumps({'id': 'cmpl-chaos', 'model': MODEL, 'choices': [choice], **extra})

    def content(value: Any) -> str:
        return event({'index': 0, 'delta': {'content': value}} if chat else {'index': 0, 'text': value})

    def finished(reason: Any) -> str:
        if chat:
            return event({'index': 0, 'delta': {'content': 'x'}, 'finish_reason': reason})
        return event({'index': 0, 'text': 'x', 'finish_reason': reason})

    broken = {
        'bad_json': '{"id": "cmpl-chaos", "choices": [{"index": 0, "text": "bro',
        'trailing_garbage': event({'index': 0, 'text': 'x'}) + ' }}',
        'deep_json': '[' * 50_000 + ']' * 50_000,
        'not_object': '42',
        'string_event': '"just a string"',
        'no_choices': json.dumps({'id': 'cmpl-chaos', 'model': MODEL}),
        'choices_not_list': json.dumps({'id': 'cmpl-chaos', 'choices': 'text'}),
        'content_number': content(5),
        'content_list': content(['a', 'b']),
        'content_object': content({'text': 'x'}),
        'finish_int': finished(1),
        'finish_error': finished('error'),
        'usage_string': event({'index': 0, 'text': 'x'}, usage={'prompt_tokens': '11', 'completion_tokens': 4}),
        'usage_float': event({'index': 0, 'text': 'x'}, usage={'prompt_tokens': 11, 'completion_tokens': 4.5}),
        'usage_negative': event({'index': 0, 'text': 'x'}, usage={'prompt_tokens': 11, 'completion_tokens': -4}),
        'tool_calls_string': event({'index': 0, 'delta': {'tool_calls': 'get_weather'}}),
        'tool_call_bad_index': event({'index': 0, 'delta': {'tool_calls': [{'index': 'first', 'function': {}}]}}),
        'nan_usage': '{"id": "x", "choices": [], "usage": {"completion_tokens": NaN}}',
    }
    return broken[fault]


def _break_answer(answer: dict[str, Any], fault: str | None) -> bytes:
    """A whole answer's body, broken as ``fault`` says."""
    if fault is None:
        return json.dumps(answer, separators=(',', ':')).encode()
    choice = answer['choices'][0]
    holder, key = (choice['message'], 'content') if 'message' in choice else (choice, 'text')
    if fault == 'bad_json':
        return json.dumps(answer).encode()[:-7]
    if fault == 'deep_json':
        return b'[' * 50_000 + b']' * 50_000
    if fault == 'not_object':
        return b'[1, 2, 3]'
    if fault == 'no_choices':
        answer.pop('choices')
    elif fault == 'empty_choices':
        answer['choices'] = []
    elif fault == 'content_number':
        holder[key] = 12345
    elif fault == 'finish_int':
        choice['finish_reason'] = 3
    elif fault == 'usage_string':
        answer['usage']['completion_tokens'] = 'many'
    elif fault == 'error_object':
        return json.dumps({'error': {'message': 'the model crashed', 'type': 'server_error', 'code': 500}}).encode()
    elif fault == 'html':
        return b'<html><body><h1>502 Bad Gateway</h1></body></html>'
    return json.dumps(answer).encode()


def _error_body(status: int, kind: str, authorization: str) -> tuple[str, bytes]:
    if kind == 'html':
        return 'text/html', f'<html><body><h1>{status} Error</h1><p>upstream failed</p></body></html>'.encode()
    if kind == 'empty':
        return 'application/json', b''
    if kind == 'lmdeploy':
        error = {'message': f'chaos says {status}', 'type': 'invalid_request_error', 'code': status, 'param': None,
                 'object': 'error'}  # fmt: skip
        return 'application/json', json.dumps(error).encode()
    message = f'chaos says {status}'
    if kind == 'echo_key':  # as servers that quote the key they refuse do
        message = f'Incorrect API key provided: {authorization.removeprefix("Bearer ")}. ({authorization})'
    return 'application/json', _error_json(status, message)


def _error_json(status: int, message: str) -> bytes:
    kind = 'server_error' if status >= 500 else 'invalid_request_error'
    return json.dumps({'error': {'message': message, 'type': kind, 'param': None, 'code': status}}).encode()


def _models() -> bytes:
    card = {'id': MODEL, 'object': 'model', 'created': int(time.time()), 'owned_by': 'chaos'}
    return json.dumps({'object': 'list', 'data': [card]}).encode()


def _response(status: int, content_type: str, body: bytes) -> bytes:
    head = _head(status, [('Content-Type', content_type), ('Content-Length', str(len(body)))])
    return head + body


def _head(status: int, headers: list[tuple[str, str]], status_line: str | None = None) -> bytes:
    reason = {200: 'OK', 302: 'Found', 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found',
              429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway',
              503: 'Service Unavailable'}.get(status, 'Status')  # fmt: skip
    lines = [status_line if status_line is not None else f'HTTP/1.1 {status} {reason}']
    lines += [f'date: {formatdate(usegmt=True)}', 'server: chaos']
    lines += [f'{name}: {value}' for name, value in headers]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1')


# ---------------------------------------------------------------------- writing, with the plan's faults


async def _send(
    writer: asyncio.StreamWriter,
    plan: Plan,
    status: int,
    content_type: str,
    pieces: list[bytes],
    *,
    framing: str,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    pieces = _encode(pieces, plan.encoding)
    headers = [('Content-Type', content_type), *(extra or [])]
    if plan.encoding:
        headers.append(('Content-Encoding', 'gzip' if plan.encoding.startswith('gzip') else 'deflate'))
    if framing == 'length':
        body = b''.join(pieces)
        declared = len(body) + (100 if plan.length_fault == 'short' else 0)
        headers.append(('Content-Length', str(declared)))
        writes = [body]
    elif framing == 'close':
        headers.append(('Connection', 'close'))
        writes = _group(pieces, plan.writes)
    else:
        headers.append(('Transfer-Encoding', 'chunked'))
        writes = _chunked(_group(pieces, plan.writes), plan)
    head = _head(status, headers, plan.status_line)
    if framing == 'close':
        head = head.replace(b'HTTP/1.1', b'HTTP/1.0', 1)
    await _write_head(writer, head, plan)
    if plan.first_delay:
        await asyncio.sleep(plan.first_delay)
    for index, data in enumerate(writes):
        if plan.cut_at is not None and index == plan.cut_at:
            await _end(writer, plan.end)
            return
        if plan.delay:
            await asyncio.sleep(plan.delay)
        await _write(writer, data, plan.dribble)
    if framing == 'close' or plan.length_fault == 'short':
        await _end(writer, 'close')
    elif plan.end != 'keep':
        await _end(writer, plan.end)


async def _write_head(writer: asyncio.StreamWriter, head: bytes, plan: Plan) -> None:
    mode = plan.headers_mode
    if mode == 'slow':
        await _write(writer, head, 0.05)
    elif mode in ('partial_close', 'partial_reset'):
        await _write_all(writer, head[: len(head) // 2])
        await _end(writer, mode.removeprefix('partial_'))
    elif mode == 'huge_line':
        await _write_all(writer, head[:-2] + b'x-padding: ' + b'p' * 200_000 + b'\r\n\r\n')
    elif mode == 'many':
        await _write_all(writer, head[:-2] + b''.join(b'x-h%d: %d\r\n' % (i, i) for i in range(300)) + b'\r\n')
    elif mode == 'continue':
        await _write_all(writer, b'HTTP/1.1 100 Continue\r\n\r\n' + head)
    else:
        await _write(writer, head, plan.dribble)


def _encode(pieces: list[bytes], encoding: str | None) -> list[bytes]:
    if encoding in ('gzip', 'deflate', 'gzip_truncated'):
        compressor = zlib.compressobj(wbits=31 if encoding != 'deflate' else 15)
        out = [compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH) for piece in pieces]
        if encoding != 'gzip_truncated':
            out.append(compressor.flush())
        return [piece for piece in out if piece]
    if encoding == 'gzip_bad':
        return [gzip.compress(b'x')[:10] + b''.join(pieces)]  # a gzip header, then plain text
    return pieces


def _group(pieces: list[bytes], mode: str) -> list[bytes]:
    if mode == 'all':
        return [b''.join(pieces)]
    if mode == 'byte':
        data = b''.join(pieces)
        return [data[i : i + 1] for i in range(len(data))]
    return pieces


def _chunked(writes: list[bytes], plan: Plan) -> list[bytes]:
    fault = plan.chunk_fault
    if plan.one_huge_chunk:
        data = b''.join(writes)
        return [b'%x\r\n' % (len(data) + 10_000_000), *[data[i : i + 1] for i in range(len(data))]]
    out = []
    for index, data in enumerate(writes):
        size = b'%x' % len(data)
        if fault == 'extensions':
            size += b';chaos=1'
        if fault == 'bad_size' and index == plan.event_at:
            size = b'zz'
        if fault == 'lying_size' and index == plan.event_at:
            size = b'%x' % (len(data) + 5)
        if fault == 'truncated' and index == plan.event_at:
            out.append(size + b'\r\n' + data[: len(data) // 2])
            return out  # the connection then ends (plan.end)
        out.append(size + b'\r\n' + data + b'\r\n')
    if fault != 'no_terminator':
        out.append(b'0\r\nx-trailer: 1\r\n\r\n' if fault == 'trailers' else b'0\r\n\r\n')
    return out


async def _write(writer: asyncio.StreamWriter, data: bytes, dribble: float) -> None:
    if not dribble:
        await _write_all(writer, data)
        return
    for index in range(len(data)):
        await _write_all(writer, data[index : index + 1])
        await asyncio.sleep(dribble)


async def _write_all(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _end(writer: asyncio.StreamWriter, how: str) -> None:
    """End the connection: ``'close'`` (FIN), ``'reset'`` (RST) or ``'stall'`` (say nothing more)."""
    if how == 'stall':
        await asyncio.sleep(STALL_S)
    elif how == 'reset':
        sock = writer.transport.get_extra_info('socket')
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        writer.transport.abort()
    else:
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()
    raise ConnectionResetError  # this connection is done


# ---------------------------------------------------------------------- the process


async def _control(server: ChaosServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        server.set_plan(Plan(**json.loads(line)))
        writer.write(b'ok\n')
        await writer.drain()
    writer.close()


async def _main(port: int, control_port: int) -> None:
    server = ChaosServer()
    http = await asyncio.start_server(server.serve, '127.0.0.1', port, backlog=1024, limit=1 << 20)
    control = await asyncio.start_server(lambda r, w: _control(server, r, w), '127.0.0.1', control_port)
    await asyncio.gather(http.serve_forever(), control.serve_forever())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--port', type=int, required=True, help='the HTTP port')
    parser.add_argument('--control-port', type=int, required=True, help='the port that takes plans')
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.port, args.control_port))


if __name__ == '__main__':
    main()
