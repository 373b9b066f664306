"""The parts of the bare asyncio HTTP/1.1 servers that client benchmarks stream
from: reading requests off a keep-alive connection, the answers every one of
them gives, and running them in processes of their own (so that the server is
never the bottleneck) on free loopback ports.

Imported by the benchmark scripts beside it (``python benchmarks/<script>.py``
puts this folder on the import path).
"""

from __future__ import annotations

import json
import multiprocessing
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ['STREAM_HEAD', 'forked_servers', 'http_chunk', 'models_answer', 'take_requests']

STREAM_HEAD = b'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n'
"""The status line and headers of a streamed (SSE, chunked) answer."""


def take_requests(buffer: bytes) -> tuple[list[tuple[str, dict[str, Any]]], bytes]:
    """The complete requests at the start of ``buffer`` (the path and the JSON body of each), and the bytes left."""
    requests = []
    while True:
        end = buffer.find(b'\r\n\r\n')
        if end < 0:
            break
        head = buffer[:end].decode('latin-1').split('\r\n')
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(':')
            if name.strip().lower() == 'content-length':
                length = int(value)
        if len(buffer) < end + 4 + length:
            break
        body = buffer[end + 4 : end + 4 + length]
        buffer = buffer[end + 4 + length :]
        requests.append((head[0].split()[1], json.loads(body) if body else {}))
    return requests, buffer


def models_answer(model: str) -> bytes:
    """The whole answer to ``GET /v1/models``: one model."""
    data = json.dumps({'object': 'list', 'data': [{'id': model, 'object': 'model'}]}).encode()
    return b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n' % len(data) + data


def http_chunk(data: bytes) -> bytes:
    """``data`` as one HTTP chunk."""
    return b'%x\r\n%s\r\n' % (len(data), data)


@contextmanager
def forked_servers(serve: Callable[..., None], *args: Any, count: int = 1) -> Iterator[list[str]]:
    """Run ``serve(sock, *args)`` in ``count`` forked processes, each listening on a free loopback port.

    Yields:
        The servers' URLs; the processes are terminated on exit.
    """
    sockets: list[socket.socket] = []
    processes: list[Any] = []
    urls = []
    context = multiprocessing.get_context('fork')
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(('127.0.0.1', 0))
            sock.listen(1024)
            sockets.append(sock)
            urls.append(f'http://127.0.0.1:{sock.getsockname()[1]}')
            process = context.Process(target=serve, args=(sock, *args), daemon=True)
            process.start()
            processes.append(process)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.join(5)
        for sock in sockets:
            sock.close()
