"""Stream protocols of the HTTP transport: how a streamed body becomes events,
and the OpenAI result shapes engines turn those events into.

* :class:`SSEStream`: Server-Sent Events carrying JSON, ending with ``[DONE]``
  (OpenAI-compatible servers); :class:`SSEDecoder` is its framing alone.
* :class:`NDJSONStream`: one JSON value per line (Ollama, lmdeploy's ``/generate``).
* :mod:`~lagent.llms.protocols.openai_format`: finish reasons, usage and tool-call
  deltas of OpenAI-style events and answers, for every engine that gets them.

A new framing subclasses :class:`EventStream` (see ``ndjson.py``, one short file).
:func:`per_event_items` makes streams read in its block yield one item per
event (benchmarks time each event).
"""

from lagent.llms.protocols.base import STREAM_END, EventStream, LineBuffer, decode_json_frames, per_event_items
from lagent.llms.protocols.ndjson import NDJSONStream
from lagent.llms.protocols.sse import SSEDecoder, SSEStream

__all__ = [
    'STREAM_END',
    'EventStream',
    'LineBuffer',
    'NDJSONStream',
    'SSEDecoder',
    'SSEStream',
    'decode_json_frames',
    'per_event_items',
]
