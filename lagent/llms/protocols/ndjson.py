"""Newline-delimited JSON streams: one JSON value per line (Ollama's
``/api/chat``, lmdeploy's ``/generate``, TGI's ``/generate_stream`` without SSE...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lagent.errors import StreamError
from lagent.llms.protocols.base import MAX_FRAME_BYTES, STREAM_END, EventStream, LineBuffer, decode_json_frames

__all__ = ['NDJSONStream']


class NDJSONStream(EventStream):
    """A stream of JSON lines. Lines end with ``\\n`` (``\\r\\n`` works too);
    blank lines are skipped; an object with a non-null ``"error"`` is raised.

    Args:
        final: Tells the last event of a reply (e.g. ``lambda event: event.get('done')``).
            With it, the stream ends there, and a body that ends before it
            raises :class:`~lagent.errors.StreamError`; without it, the stream
            ends with the body (a last line without ``\\n`` included).
        max_line_bytes: The longest line accepted.
    """

    __slots__ = ('_final', '_held', '_started')

    def __init__(self, final: Callable[[Any], bool] | None = None, max_line_bytes: int = MAX_FRAME_BYTES) -> None:
        self._final = final
        self._held = LineBuffer(max_line_bytes, 'a line (a line too long)')
        self._started = False

    def feed(self, data: bytes) -> list[str]:
        end = data.rfind(b'\n')
        if end < 0:
            self._held.hold(data)
            return []
        block = self._held.take(data[:end])
        self._held.hold(data[end + 1 :])
        return self._lines(block)

    def decode(self, frames: list[str]) -> tuple[list[Any], Any]:
        events, end = decode_json_frames(frames, None)
        final = self._final
        if final is not None:
            for position, event in enumerate(events):
                if final(event):
                    return events[: position + 1], STREAM_END
        return events, end

    def finish(self) -> tuple[list[Any], Any]:
        events, end = self.decode(self._lines(self._held.take()))
        if end is not None:
            return events, end
        if self._final is not None:
            return events, StreamError('the server ended the stream before its last event; it may have failed')
        return events, STREAM_END

    def _lines(self, block: bytes) -> list[str]:
        if not self._started:  # a byte order mark may open the stream
            self._started = True
            if block.startswith(b'\xef\xbb\xbf'):
                block = block[3:]
        try:
            text = block.decode()
        except UnicodeDecodeError as exc:
            raise StreamError(f'the stream is not valid UTF-8: {exc}') from exc
        return [line for line in text.split('\n') if line and not line.isspace()]
