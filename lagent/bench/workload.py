"""What a benchmark sends: requests from a JSONL dataset or synthetic ones,
and when it sends them (Poisson arrivals)."""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from typing import Any

__all__ = ['BenchRequest', 'load_dataset', 'poisson_arrivals', 'synthetic_requests']

# Common English words: most tokenizers encode each (with its leading space) as one token.
_WORDS = [
    'the',
    'of',
    'and',
    'to',
    'in',
    'is',
    'was',
    'for',
    'on',
    'are',
    'with',
    'as',
    'his',
    'they',
    'be',
    'at',
    'one',
    'have',
    'this',
    'from',
    'or',
    'had',
    'by',
    'hot',
    'word',
    'but',
    'what',
    'some',
    'we',
    'can',
    'out',
    'other',
    'were',
    'all',
    'there',
    'when',
    'up',
    'use',
    'your',
    'how',
    'said',
    'an',
    'each',
    'she',
    'which',
    'do',
    'their',
    'time',
    'if',
    'will',
    'way',
    'about',
    'many',
    'then',
    'them',
    'write',
    'would',
    'like',
    'so',
    'these',
    'her',
    'long',
    'make',
    'thing',
    'see',
    'him',
    'two',
    'has',
    'look',
    'more',
    'day',
    'could',
    'go',
    'come',
    'did',
    'number',
    'sound',
    'no',
    'most',
    'people',
    'my',
    'over',
    'know',
    'water',
    'than',
    'call',
    'first',
    'who',
    'may',
    'down',
    'side',
    'been',
    'now',
    'find',
]


@dataclass(frozen=True)
class BenchRequest:
    """One request of a workload."""

    messages: list[dict[str, Any]]
    """The conversation sent (rendered by the engine's template or sent to its chat endpoint)."""
    max_new_tokens: int | None = None
    """Most tokens to generate for this request (``None``: the engine's setting)."""


def load_dataset(path: str | os.PathLike[str], *, limit: int | None = None) -> list[BenchRequest]:
    """Read requests from a JSONL file, one JSON object a line.

    Each object has ``prompt`` (a user message) or ``messages`` (a conversation),
    and optionally ``max_new_tokens``. Blank lines are skipped.

    Args:
        path: The ``.jsonl`` file.
        limit: Read at most this many requests.

    Raises:
        OSError: The file cannot be read.
        ValueError: A line is not a valid request; the message gives the line number.
    """
    requests: list[BenchRequest] = []
    with open(path, encoding='utf-8') as lines:
        for number, line in enumerate(lines, start=1):
            if limit is not None and len(requests) >= limit:
                break
            if line.strip():
                requests.append(_parse_line(line, f'{os.fspath(path)}:{number}'))
    if not requests:
        raise ValueError(f'{os.fspath(path)} holds no requests')
    return requests


def _parse_line(line: str, where: str) -> BenchRequest:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f'{where}: not valid JSON ({exc.msg})') from None
    if not isinstance(item, dict):
        raise ValueError(f'{where}: expected a JSON object, got {type(item).__name__}')
    max_new_tokens = item.get('max_new_tokens')
    if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
        raise ValueError(f'{where}: max_new_tokens must be a positive integer, got {max_new_tokens!r}')
    if isinstance(item.get('prompt'), str):
        return BenchRequest([{'role': 'user', 'content': item['prompt']}], max_new_tokens)
    messages = item.get('messages')
    if isinstance(messages, list) and messages and all(isinstance(m, dict) and 'role' in m for m in messages):
        return BenchRequest(messages, max_new_tokens)
    raise ValueError(f'{where}: needs "prompt" (a string) or "messages" (a list of {{"role", "content"}} objects)')


def synthetic_requests(count: int, *, input_len: int, output_len: int, seed: int | None = None) -> list[BenchRequest]:
    """Make ``count`` requests of ``input_len`` random common words (about one
    token each) asking for ``output_len`` new tokens.

    Raises:
        ValueError: A count or length below 1.
    """
    for name, value in (('count', count), ('input_len', input_len), ('output_len', output_len)):
        if value < 1:
            raise ValueError(f'{name} must be at least 1, got {value}')
    rng = random.Random(seed)
    return [
        BenchRequest([{'role': 'user', 'content': ' '.join(rng.choices(_WORDS, k=input_len))}], output_len)
        for _ in range(count)
    ]


def poisson_arrivals(count: int, rate: float, *, seed: int | None = None) -> list[float]:
    """Return the send times (seconds from the start) of ``count`` requests
    arriving as a Poisson process: exponential gaps of mean ``1 / rate``.

    Args:
        count: How many arrival times.
        rate: Mean requests per second; ``math.inf`` sends them all at once.
        seed: Seed of the random gaps (same seed, same times).

    Raises:
        ValueError: A rate that is not positive.
    """
    if not rate > 0:
        raise ValueError(f'request rate must be positive (or inf), got {rate}')
    if math.isinf(rate):
        return [0.0] * count
    rng = random.Random(seed)
    times, now = [], 0.0
    for _ in range(count):
        now += rng.expovariate(rate)
        times.append(now)
    return times
