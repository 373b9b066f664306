"""``meta_template`` prompts: per-role ``begin``/``end`` strings, the lagent way.

A meta_template is a list of role dicts::

    [dict(role='system', begin='<|im_start|>system\\n', end='<|im_end|>\\n'),
     dict(role='user', begin='<|im_start|>user\\n', end='<|im_end|>\\n'),
     dict(role='assistant', begin='<|im_start|>assistant\\n', end='<|im_end|>\\n',
          generate=True)]

Rendering a conversation (see :meth:`MetaTemplate.render`):

* each message becomes ``begin + content + end`` of its role's entry;
* ``begin`` may be a dict ``{with_name, without_name, name}``: a message with a
  ``name`` uses ``with_name`` formatted with ``{name}`` (looked up in the
  ``name`` mapping first), otherwise ``without_name``;
* a role with ``fallback_role`` is rendered with that role's entry;
* the last message of a role with ``generate=True`` gets no ``end``, so the
  model continues it;
* when the conversation ends with a message of another role, the assistant's
  ``begin`` is appended to open the reply;
* bare strings in the conversation are copied into the prompt as they are;
* an ``image_url`` content part becomes the template's ``image_placeholder``
  (an image in a template without one raises :class:`~lagent.images.ImageError`).

For chat APIs (:meth:`MetaTemplate.to_api_messages`) each role maps to its
``api_role``, and consecutive messages of the same API role are merged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lagent.images import content_text
from lagent.schema import Message, MessageLike

__all__ = ['MetaTemplate', 'RoleBegin', 'RoleSpec', 'join_contents', 'normalize_messages']


class RoleBegin(BaseModel):
    """A ``begin`` that depends on whether the message has a ``name``."""

    model_config = ConfigDict(extra='forbid', populate_by_name=True)

    with_name: str | None = None
    """Used when the message has a name; ``{name}`` is replaced by it."""
    without_name: str = ''
    """Used when the message has no name."""
    name: dict[str, str] = Field(default_factory=dict)
    """Replacement text for particular names (e.g. ``plugin`` -> ``<|plugin|>``)."""


class RoleSpec(BaseModel):
    """One role of a meta_template."""

    model_config = ConfigDict(extra='forbid')

    role: str = Field(min_length=1)
    """Role name that messages refer to."""
    begin: str | RoleBegin = ''
    """Text before the content."""
    end: str = ''
    """Text after the content."""
    generate: bool = False
    """The model writes this role: its last message is left open (no ``end``)."""
    fallback_role: str | None = None
    """Render messages of this role with another role's entry."""
    api_role: str | None = None
    """Role name to use when sending messages to a chat API."""

    def begin_for(self, name: str | None) -> str:
        """Return the ``begin`` text for a message with the given speaker name."""
        if isinstance(self.begin, str):
            return self.begin
        if name is None or self.begin.with_name is None:
            return self.begin.without_name
        return self.begin.with_name.format(name=self.begin.name.get(name, name))


def normalize_messages(messages: Sequence[MessageLike], *, allow_strings: bool = True) -> list[Message | str]:
    """Validate a conversation into :class:`Message` objects (bare strings kept).

    Raises:
        ValueError: The conversation is not a list, or a message is malformed
            (the message says which one and why).
        TypeError: An item is neither a message, a dict nor a string.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(f'a conversation must be a list of messages, got {type(messages).__name__}')
    result: list[Message | str] = []
    for index, item in enumerate(messages):
        if isinstance(item, Message):
            result.append(item)
        elif isinstance(item, Mapping):
            try:
                result.append(Message.model_validate(dict(item)))
            except ValidationError as exc:
                raise ValueError(f'message {index} is malformed: {_first_error(exc)}') from None
        elif isinstance(item, str):
            if not allow_strings:
                raise ValueError(f'message {index} is a bare string; chat APIs need {{"role": ..., "content": ...}}')
            result.append(item)
        else:
            raise TypeError(f'message {index} must be a dict, a Message or a str, got {type(item).__name__}')
    return result


def join_contents(messages: Sequence[MessageLike]) -> str:
    """Render a conversation without a template: non-empty contents joined by newlines.

    Raises:
        ImageError: A message holds an image (there is no placeholder to put it in).
    """
    parts = []
    for index, item in enumerate(normalize_messages(messages)):
        text = item if isinstance(item, str) else content_text(item.content, None, message_index=index)
        if text:
            parts.append(text)
    return '\n'.join(parts)


class MetaTemplate:
    """A validated meta_template (see the module docstring for the rules).

    Args:
        roles: The role dicts (or :class:`RoleSpec` objects).
        image_placeholder: The text that stands for an image in a prompt of this
            format (e.g. ``'<image>'``); ``None``: the format has no images.

    Raises:
        ValueError: The template is malformed: not a list, a role repeated,
            an unknown key, or a ``fallback_role`` that does not exist.
    """

    def __init__(self, roles: Sequence[Mapping[str, Any] | RoleSpec], *, image_placeholder: str | None = None):
        if image_placeholder is not None and (not isinstance(image_placeholder, str) or not image_placeholder):
            raise ValueError('image_placeholder must be a non-empty string or None')
        self.image_placeholder = image_placeholder
        if isinstance(roles, (str, bytes, Mapping)) or not isinstance(roles, Sequence):
            raise ValueError(f'meta_template must be a list of role dicts, got {type(roles).__name__}')
        self.roles: dict[str, RoleSpec] = {}
        for index, entry in enumerate(roles):
            spec = self._parse_role(index, entry)
            if spec.role in self.roles:
                raise ValueError(f'meta_template defines role {spec.role!r} twice')
            self.roles[spec.role] = spec
        for spec in self.roles.values():
            if spec.fallback_role is not None and spec.fallback_role not in self.roles:
                raise ValueError(
                    f'role {spec.role!r} falls back to unknown role {spec.fallback_role!r}; '
                    f'roles: {", ".join(self.roles)}'
                )

    @staticmethod
    def _parse_role(index: int, entry: Mapping[str, Any] | RoleSpec) -> RoleSpec:
        if isinstance(entry, RoleSpec):
            return entry
        if not isinstance(entry, Mapping):
            raise ValueError(f'meta_template entry {index} must be a dict, got {type(entry).__name__}')
        try:
            return RoleSpec.model_validate(dict(entry))
        except ValidationError as exc:
            label = entry.get('role', f'entry {index}')
            raise ValueError(f'meta_template role {label!r} is malformed: {_first_error(exc)}') from None

    def __repr__(self) -> str:
        return f'MetaTemplate(roles={list(self.roles)})'

    @property
    def is_api_template(self) -> bool:
        """Whether every role maps to a chat-API role (the template only renames roles)."""
        return bool(self.roles) and all(spec.api_role is not None for spec in self.roles.values())

    def role(self, name: str) -> RoleSpec:
        """Return the entry used to render messages of role ``name`` (fallback applied).

        Raises:
            ValueError: The role does not exist; the message lists the roles that do.
        """
        try:
            spec = self.roles[name]
        except KeyError:
            raise ValueError(f'unknown role {name!r}; the meta_template has roles: {", ".join(self.roles)}') from None
        if spec.fallback_role is not None:
            spec = self.roles[spec.fallback_role]
        return spec

    def render(self, messages: Sequence[MessageLike], *, image_placeholder: str | None = None) -> str:
        """Render a conversation into one prompt string.

        Args:
            messages: The conversation.
            image_placeholder: Put this for each image instead of the template's own placeholder
                (an engine whose own format marks images differently).

        Raises:
            ValueError: A message has an unknown role or carries native tool calls.
            ImageError: A message holds an image and there is no placeholder for it.
        """
        placeholder = image_placeholder or self.image_placeholder
        items = normalize_messages(messages)
        parts: list[str] = []
        last_index = len(items) - 1
        for index, item in enumerate(items):
            if isinstance(item, str):
                parts.append(item)
                continue
            if item.tool_calls:
                raise ValueError(
                    'a meta_template cannot render native tool calls; put the call in the message text '
                    'or send the conversation to a chat endpoint'
                )
            spec = self.role(item.role)
            parts.append(spec.begin_for(item.name))
            parts.append(content_text(item.content, placeholder, message_index=index))
            is_last = index == last_index
            if is_last and spec.generate:
                continue
            parts.append(spec.end)
            if is_last and spec.role != 'assistant':
                parts.append(self.role('assistant').begin_for(None))
        return ''.join(parts)

    def to_api_messages(self, messages: Sequence[MessageLike]) -> list[dict[str, Any]]:
        """Map a conversation to chat-API messages: ``api_role`` for each role,
        string ``begin``/``end`` kept around the content, and consecutive
        messages of the same API role merged with a newline.

        Raises:
            ValueError: A role is unknown or has no ``api_role``, or the
                conversation holds a bare string (chat APIs need roles).
        """
        result: list[dict[str, Any]] = []
        previous_mergeable = False
        for item in cast('list[Message]', normalize_messages(messages, allow_strings=False)):
            spec = self.role(item.role)
            if spec.api_role is None:
                raise ValueError(f'role {spec.role!r} has no api_role in the meta_template')
            message = item.to_openai()
            message['role'] = spec.api_role
            plain_text = not isinstance(item.content, list)
            if plain_text:
                begin = spec.begin if isinstance(spec.begin, str) else ''
                message['content'] = begin + item.text + spec.end
            mergeable = plain_text and not (item.tool_calls or item.tool_call_id)
            if mergeable and previous_mergeable and result[-1]['role'] == spec.api_role:
                result[-1]['content'] += '\n' + message['content']
                continue
            result.append(message)
            previous_mergeable = mergeable
        return result


def _first_error(exc: ValidationError) -> str:
    """The most specific problem: a list content that fails deep inside (an image part without
    a url) says so, rather than that the content is not a string either."""
    error = max(exc.errors(), key=lambda item: len(item['loc']))
    where = '.'.join(str(part) for part in error['loc'] if not re.fullmatch(r'[\w-]+\[.*\]', str(part)))
    message = error['msg'].removeprefix('Value error, ')
    return f'{where}: {message}' if where else message
