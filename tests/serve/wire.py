"""Reading the server's answers in tests: the events of an SSE body, the text they carry."""

from __future__ import annotations

import json
from typing import Any

import requests

KEY = 'sk-app-test'
AUTH = {'Authorization': f'Bearer {KEY}'}


def events_of(body: str) -> list[Any]:
    """The data of each event of an SSE body: decoded JSON, or ``'[DONE]'``."""
    found: list[Any] = []
    for block in body.replace('\r\n', '\n').split('\n\n'):
        data = '\n'.join(line[5:].lstrip() for line in block.split('\n') if line.startswith('data:'))
        if data:
            found.append(data if data == '[DONE]' else json.loads(data))
    return found


def content_of(events: list[Any]) -> str:
    """The text the chat (``delta.content``) or completion (``text``) events carry."""
    parts = []
    for event in events:
        if not isinstance(event, dict):
            continue
        for choice in event.get('choices', []):
            parts.append((choice.get('delta') or {}).get('content') or choice.get('text') or '')
    return ''.join(parts)


def post(url: str, path: str, body: Any, **kwargs: Any) -> requests.Response:
    """``POST`` a JSON body with the test key."""
    return requests.post(f'{url}{path}', json=body, headers=AUTH, timeout=60, **kwargs)


def chat(url: str, **body: Any) -> requests.Response:
    """``POST /v1/chat/completions``."""
    return post(url, '/v1/chat/completions', body)


def user(text: str) -> list[dict[str, str]]:
    """A conversation of one user message."""
    return [{'role': 'user', 'content': text}]
