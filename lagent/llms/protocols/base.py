"""What a stream protocol is: how the bytes of one response body become events.

The HTTP transport (:mod:`lagent.llms.http`) reads a streamed body and hands
each network read to an :class:`EventStream` made for that response. The
stream cuts the bytes into frames (an SSE event's data, an NDJSON line),
decodes each frame's JSON and says where the stream ends. A new framing is a
subclass with :meth:`~EventStream.feed` and :meth:`~EventStream.finish`
(:mod:`lagent.llms.protocols.ndjson` is the example); :func:`decode_json_frames`
does the JSON, in-band errors and end markers for all of them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any

from lagent.errors import StreamError

__all__ = [
    'MAX_FRAME_BYTES',
    'STREAM_END',
    'EventStream',
    'LineBuffer',
    'decode_json_frames',
    'in_band_error',
    'one_item_per_event',
    'per_event_items',
]

STREAM_END: Any = object()
"""Returned by :meth:`EventStream.decode` when the stream's own end marker was read."""

MAX_FRAME_BYTES = 16 << 20
"""Default cap on one frame (an SSE event, an NDJSON line): a server that sends
more without ending it is broken, and holding it would cost unbounded memory."""

_raw_decode = json.JSONDecoder().raw_decode
_ONE_ITEM_PER_EVENT: contextvars.ContextVar[bool] = contextvars.ContextVar('lagent_one_item_per_event', default=False)


@contextlib.contextmanager
def per_event_items() -> Iterator[None]:
    """Within this block, streams hand each event to their engine's parser on its own.

    Normally the transport parses the events of one network read together (and
    an engine's parser merges their text into one chunk), which is what a
    reader that falls behind wants. A benchmark that times every event the
    server sent wants one item per event instead: streams read in this block
    (in this thread or task) give exactly that.
    """
    token = _ONE_ITEM_PER_EVENT.set(True)
    try:
        yield
    finally:
        _ONE_ITEM_PER_EVENT.reset(token)


def one_item_per_event() -> bool:
    """Whether the stream being read now is inside :func:`per_event_items`."""
    return _ONE_ITEM_PER_EVENT.get()


class EventStream(ABC):
    """The events of one streamed response body (one instance per response).

    The transport calls :meth:`feed` with the bytes of each network read,
    :meth:`decode` with the frames it returned (a slice at a time), and
    :meth:`finish` if the body ends before :meth:`decode` returned
    :data:`STREAM_END`.
    """

    __slots__ = ()

    @abstractmethod
    def feed(self, data: bytes) -> list[str]:
        """Take the next bytes of the body; return the frames they complete.

        Raises:
            StreamError: The bytes cannot be framed (not UTF-8, a frame over the size cap...).
        """

    def decode(self, frames: list[str]) -> tuple[list[Any], Any]:
        """Decode frames into events.

        Returns:
            The events, and what ended them: ``None`` (the stream goes on),
            :data:`STREAM_END`, or the :class:`~lagent.errors.StreamError` to
            raise once the events before it are delivered.
        """
        return decode_json_frames(frames)

    @abstractmethod
    def finish(self) -> tuple[list[Any], Any]:
        """The body ended: return the last events and what ended the stream, as :meth:`decode` does.

        The end is :data:`STREAM_END` if the format lets a body end here, else
        the :class:`~lagent.errors.StreamError` to raise (e.g. no ``[DONE]``).
        """


class LineBuffer:
    """Holds the bytes of an unfinished frame between reads, capped in size.

    Each byte is copied once into the frame it belongs to, so a frame that
    arrives in many small pieces costs linear, not quadratic, time.
    """

    __slots__ = ('_parts', '_size', 'limit', 'what')

    def __init__(self, limit: int, what: str):
        self._parts: list[bytes] = []
        self._size = 0
        self.limit = limit
        self.what = what

    def __bool__(self) -> bool:
        return self._size > 0

    def hold(self, data: bytes) -> None:
        """Keep ``data``, the start of a frame that is not finished yet.

        Raises:
            StreamError: The unfinished frame is longer than the cap.
        """
        if not data:
            return
        self._size += len(data)
        if self._size > self.limit:
            self._parts, self._size = [], 0
            raise StreamError(
                f'the server sent more than {self.limit} bytes without ending {self.what}; '
                'the stream is broken or not in the expected format'
            )
        self._parts.append(data)

    def take(self, data: bytes = b'') -> bytes:
        """Return what is held followed by ``data``, and hold nothing."""
        if not self._size:
            return data
        self._parts.append(data)
        joined = b''.join(self._parts)
        self._parts, self._size = [], 0
        return joined

    def last_byte(self) -> bytes:
        """The last byte held (``b''`` for none)."""
        return self._parts[-1][-1:] if self._parts else b''


def decode_json_frames(frames: list[str], end_marker: str | None = '[DONE]') -> tuple[list[Any], Any]:
    """Decode one JSON value per frame, up to the end marker or an in-band error.

    One ``raw_decode`` per frame is the hot path: a frame must be exactly one
    JSON value (surrounding whitespace is tolerated). An object with a non-null
    ``"error"`` (OpenAI's and Ollama's in-band errors) ends the stream with a
    :class:`~lagent.errors.StreamError` carrying the server's message.

    Args:
        frames: The frames, in order.
        end_marker: A frame that ends the stream (``None``: none does).

    Returns:
        The events, and what ended them (see :meth:`EventStream.decode`).
    """
    decode, events = _raw_decode, []
    for frame in frames:
        if frame == end_marker:
            return events, STREAM_END
        try:
            event, end = decode(frame)
            if end != len(frame):
                event = json.loads(frame)  # surrounding whitespace is fine; anything else raises
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            error = StreamError(f'the server sent an event that is not JSON: {frame[:200]!r}', body=frame[:10_000])
            error.__cause__ = exc
            return events, error
        if type(event) is dict and event.get('error') is not None:
            return events, in_band_error(event)
        events.append(event)
    return events, None


def in_band_error(event: Mapping[str, Any]) -> StreamError:
    """The error a server reported inside a stream or a 200 answer (``{"error": ...}``)."""
    error = event['error']
    message = error.get('message') if isinstance(error, Mapping) else error
    return StreamError(f'the server reported an error: {message}', body=event)
