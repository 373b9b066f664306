"""Server-Sent Events, as OpenAI-compatible servers stream them.

:class:`SSEDecoder` is the framing of the HTML standard's ``text/event-stream``:
lines end with ``\\n``, ``\\r\\n`` or a lone ``\\r``; an empty line ends an
event; ``data:`` lines are joined with ``\\n``; lines starting with ``:`` are
comments; one UTF-8 byte order mark at the very start is skipped.
:class:`SSEStream` reads OpenAI-style streams with it: one JSON object per
event, ``data: [DONE]`` at the end, ``{"error": ...}`` events raised.
"""

from __future__ import annotations

import json
from typing import Any

from lagent.errors import StreamError
from lagent.llms.protocols.base import MAX_FRAME_BYTES, EventStream, LineBuffer, decode_json_frames, in_band_error

__all__ = ['SSEDecoder', 'SSEStream']

_BOM = b'\xef\xbb\xbf'


class SSEDecoder:
    """Incremental Server-Sent Events decoder: bytes in, the data of each event out.

    Work is linear in the bytes fed, however they are split; an event longer
    than ``max_event_bytes`` raises instead of growing without bound. ``id``
    and ``retry`` fields are ignored; an event named ``error`` is raised as
    :class:`~lagent.errors.StreamError`. The common case (one ``data:`` line
    per event) takes a fast path.

    Args:
        max_event_bytes: The longest event (or line) accepted.
    """

    __slots__ = ('_after_cr', '_head', '_held')

    def __init__(self, max_event_bytes: int = MAX_FRAME_BYTES) -> None:
        self._held = LineBuffer(max_event_bytes, 'an event (a line or event too long)')
        self._head: bytes | None = b''  # bytes seen while looking for a byte order mark; None once past it
        self._after_cr = False  # the last read ended with a CR: a LF first in the next one belongs to it

    def feed(self, data: bytes) -> list[str]:
        """Take the next bytes of the stream; return the data of every event they complete.

        Raises:
            StreamError: An ``error`` event, bytes that are not UTF-8, or an
                event longer than the cap.
        """
        if self._head is not None:
            data = self._skip_bom(data)
        if self._after_cr:
            self._after_cr = False
            if data[:1] == b'\n':
                data = data[1:]
        if b'\r' in data:
            self._after_cr = data[-1:] == b'\r'
            data = data.replace(b'\r\n', b'\n').replace(b'\r', b'\n')
        end = data.rfind(b'\n\n')
        if end >= 0:
            block, rest = self._held.take(data[:end]), data[end + 2 :]
        elif data[:1] == b'\n' and self._held.last_byte() == b'\n':  # the blank line spans two reads
            block, rest = self._held.take()[:-1], data[1:]
        else:
            self._held.hold(data)
            return []
        self._held.hold(rest)
        return self._events(block)

    def held(self) -> bytes:
        """The bytes of the unfinished event (what :meth:`feed` keeps for the next read)."""
        return self._held.take()

    def _skip_bom(self, data: bytes) -> bytes:
        head = self._head + data  # type: ignore[operator]
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._head = head
            return b''
        self._head = None
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _events(self, block: bytes) -> list[str]:
        try:
            text = block.decode()
        except UnicodeDecodeError as exc:
            raise StreamError(f'the stream is not valid UTF-8: {exc}') from exc
        payloads = []
        for event in text.split('\n\n'):
            if event.startswith('data: ') and '\n' not in event:
                payloads.append(event[6:])
            elif event:
                payload = self._parse_event(event)
                if payload is not None:
                    payloads.append(payload)
        return payloads

    @staticmethod
    def _parse_event(block: str) -> str | None:
        kind, data = 'message', []
        for line in block.split('\n'):
            if not line or line[0] == ':':
                continue
            name, _, value = line.partition(':')
            if value[:1] == ' ':
                value = value[1:]
            if name == 'data':
                data.append(value)
            elif name == 'event':
                kind = value
        if not data:
            return None
        payload = '\n'.join(data)
        if kind == 'error':
            raise StreamError(f'the server sent an error event: {payload[:2000]}', body=payload)
        return payload


class SSEStream(EventStream):
    """An OpenAI-style event stream: JSON events, ending with ``data: [DONE]``.

    Events with empty data (keep-alives) are skipped. A body that ends without
    ``[DONE]`` raises :class:`~lagent.errors.StreamError` (the server may have
    failed mid-reply); one that turns out to be a single JSON document (a
    server that does not stream, or an error object) says so.
    """

    __slots__ = ('_decoder',)

    def __init__(self, max_event_bytes: int = MAX_FRAME_BYTES) -> None:
        self._decoder = SSEDecoder(max_event_bytes)

    def feed(self, data: bytes) -> list[str]:
        return self._decoder.feed(data)

    def decode(self, frames: list[str]) -> tuple[list[Any], Any]:
        if '' in frames:
            frames = [frame for frame in frames if frame]
        return decode_json_frames(frames, '[DONE]')

    def finish(self) -> tuple[list[Any], Any]:
        rest = self._decoder.held().strip()
        if not rest:
            return [], StreamError('the server ended the stream without [DONE]; it may have failed (see its log)')
        try:
            document = json.loads(rest)
        except (ValueError, RecursionError):
            return [], StreamError('the server ended the stream in the middle of an event, without [DONE]')
        if isinstance(document, dict) and document.get('error') is not None:
            return [], in_band_error(document)
        return [], StreamError(
            f'the server answered with one JSON document instead of an event stream: {rest[:200]!r}', body=document
        )
