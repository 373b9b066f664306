"""``AgentMemory``: the conversation an agent keeps between calls, saved as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from lagent.prompts import normalize_messages
from lagent.schema import Message

__all__ = ['AgentMemory']

_FORMAT_VERSION = 1


class AgentMemory:
    """The messages of one conversation, in the format of the agent that wrote them
    (a memory is meant to be loaded back into the same kind of agent).

    Args:
        messages: Messages to start with.

    Example:
        >>> memory = AgentMemory([{'role': 'user', 'content': 'hi'}])
        >>> AgentMemory.from_json(memory.to_json()).messages == memory.messages
        True
    """

    def __init__(self, messages: Iterable[Message | dict[str, Any]] = ()):
        self._messages: list[Message] = []
        self.extend(messages)

    @property
    def messages(self) -> list[Message]:
        """A copy of the messages, oldest first."""
        return list(self._messages)

    def add(self, message: Message | dict[str, Any]) -> None:
        """Append one message (a dict is validated into a :class:`~lagent.schema.Message`).

        Raises:
            ValueError: The message is malformed.
        """
        self.extend([message])

    def extend(self, messages: Iterable[Message | dict[str, Any]]) -> None:
        """Append messages in order.

        Raises:
            ValueError: A message is malformed.
        """
        self._messages.extend(cast('list[Message]', normalize_messages(list(messages), allow_strings=False)))

    def reset(self) -> None:
        """Forget every message."""
        self._messages.clear()

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[Message]:
        return iter(list(self._messages))

    def __repr__(self) -> str:
        return f'AgentMemory({len(self._messages)} messages)'

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> str:
        """Return the memory as JSON text (see :meth:`from_json`)."""
        messages = [message.model_dump(mode='json', exclude_none=True) for message in self._messages]
        return json.dumps({'version': _FORMAT_VERSION, 'messages': messages}, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> AgentMemory:
        """Rebuild a memory from :meth:`to_json` output.

        Raises:
            ValueError: The text is not a saved memory, or a message is malformed.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f'not a saved agent memory: {exc}') from None
        if not isinstance(data, dict) or not isinstance(data.get('messages'), list):
            raise ValueError('not a saved agent memory: expected {"version": ..., "messages": [...]}')
        if data.get('version') != _FORMAT_VERSION:
            raise ValueError(f'unsupported agent memory version {data.get("version")!r} (expected {_FORMAT_VERSION})')
        return cls(data['messages'])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the memory to a JSON file (replacing it)."""
        Path(path).write_text(self.to_json(), encoding='utf-8')

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AgentMemory:
        """Read a memory written by :meth:`save`.

        Raises:
            OSError: The file cannot be read.
            ValueError: The file is not a saved memory.
        """
        return cls.from_json(Path(path).read_text(encoding='utf-8'))
