"""Tolerant parsing of the JSON and code that models write inside their replies."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r'^```[\w+-]*[ \t]*\n?(.*?)\n?```', re.S)
_DECODER = json.JSONDecoder()


def strip_fence(text: str) -> str:
    """Return the content of a Markdown code fence around ``text`` (``text`` itself if there is none)."""
    stripped = text.strip()
    match = _FENCE.match(stripped)
    return match.group(1).strip() if match else stripped


def first_json_object(text: str) -> dict[str, Any]:
    """Decode the first JSON object in ``text``, ignoring text around it.

    Raises:
        ValueError: There is no JSON object, or it is malformed (the message says where).
    """
    start = text.find('{')
    if start < 0:
        raise ValueError('no JSON object found')
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise ValueError(f'malformed JSON: {exc.msg} (at character {exc.pos})') from None
    return value


def arguments_object(value: Any) -> dict[str, Any] | str:
    """The arguments of a parsed call: a dict kept as it is, a JSON string decoded;
    anything else is returned as text for the executor to reject with a clear message."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        return decoded if isinstance(decoded, dict) else value
    return json.dumps(value)
