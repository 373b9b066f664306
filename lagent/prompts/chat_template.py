"""A model's own Jinja chat template, rendered in a sandbox.

Tokenizers ship their prompt format as a Jinja template (``chat_template`` in
``tokenizer_config.json``, or ``tokenizer.chat_template`` in a GGUF file).
:class:`ChatTemplate` renders one with the variables those templates expect
(``messages``, ``tools``, ``add_generation_prompt``, ``bos_token``,
``eos_token``) inside jinja2's immutable sandbox: a template that reaches for
Python internals (``__class__``, ``__globals__``, mutating methods...) raises
:class:`UnsafeTemplateError` instead of running.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from lagent.images import content_text, has_images
from lagent.prompts.gguf_metadata import read_gguf_metadata
from lagent.prompts.meta_template import normalize_messages
from lagent.schema import Message, MessageLike

__all__ = ['ChatTemplate', 'UnsafeTemplateError']


class UnsafeTemplateError(ValueError):
    """A chat template tried to reach Python internals; it was not run."""


class _TemplateRaised(ValueError):
    """The template itself called ``raise_exception`` (e.g. a role it does not support)."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(
    value: Any,
    indent: int | None = None,
    ensure_ascii: bool = False,
    sort_keys: bool = False,
    separators: tuple[str, str] | None = None,
) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys, separators=separators)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, but touching an unsafe attribute fails at once
    (jinja2 would otherwise render it silently as an empty string)."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f'access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe')


def _environment() -> ImmutableSandboxedEnvironment:
    env = _StrictSandbox(trim_blocks=True, lstrip_blocks=True)
    env.filters['tojson'] = _tojson
    env.globals['raise_exception'] = _raise_exception
    env.globals['strftime_now'] = _strftime_now
    return env


class ChatTemplate:
    """A Jinja chat template.

    Args:
        source: The template text.
        bos_token: Value of ``bos_token`` in the template (default ``''``:
            most engines add BOS themselves when tokenizing).
        eos_token: Value of ``eos_token`` in the template.
        context: Further variables for the template (e.g. ``enable_thinking``).
        image_placeholder: Render each image part as this text, the contents
            becoming plain strings (for templates that read strings only);
            ``None``: list contents reach the template as they are, for
            templates that place images themselves.

    Raises:
        ValueError: The template does not parse.
    """

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = '',
        eos_token: str = '',
        context: dict[str, Any] | None = None,
        image_placeholder: str | None = None,
    ):
        if not isinstance(source, str) or not source.strip():
            raise ValueError('a chat template must be a non-empty string')
        if image_placeholder is not None and (not isinstance(image_placeholder, str) or not image_placeholder):
            raise ValueError('image_placeholder must be a non-empty string or None')
        self.source = source
        self.image_placeholder = image_placeholder
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.context = dict(context or {})
        try:
            self._template = _environment().from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f'chat template does not parse (line {exc.lineno}): {exc.message}') from exc

    def __repr__(self) -> str:
        first_line = self.source.strip().splitlines()[0]
        return f'ChatTemplate({first_line[:40]!r}...)'

    def __getstate__(self) -> dict[str, Any]:
        """Pickle by source (the compiled template cannot be pickled), so a template
        travels to worker processes with the engine config that holds it."""
        state = dict(self.__dict__)
        del state['_template']
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._template = _environment().from_string(self.source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> ChatTemplate:
        """Load a template from a ``.jinja`` file, or from the ``chat_template`` of a
        ``tokenizer_config.json``.

        Raises:
            ValueError: The file holds no chat template.
        """
        path = Path(path)
        text = path.read_text(encoding='utf-8')
        if path.suffix != '.json':
            return cls(text, **kwargs)
        config = json.loads(text)
        template = config.get('chat_template')
        if isinstance(template, list):  # several named templates: take the default one
            named = {entry.get('name'): entry.get('template') for entry in template}
            template = named.get('default')
        if not template:
            raise ValueError(f'{os.fspath(path)!r} has no chat_template')
        kwargs.setdefault('eos_token', _token_text(config.get('eos_token')))
        return cls(template, **kwargs)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str], **kwargs: Any) -> ChatTemplate:
        """Load the template stored in a GGUF file's metadata, with its EOS token.

        Raises:
            ValueError: The file is not GGUF or holds no chat template.
        """
        wanted = {'tokenizer.chat_template', 'tokenizer.ggml.eos_token_id', 'tokenizer.ggml.tokens'}
        metadata = read_gguf_metadata(path, keys=wanted)
        template = metadata.get('tokenizer.chat_template')
        if not template:
            raise ValueError(f'{os.fspath(path)!r} has no tokenizer.chat_template')
        tokens = metadata.get('tokenizer.ggml.tokens') or []
        eos_id = metadata.get('tokenizer.ggml.eos_token_id')
        if eos_id is not None and 0 <= eos_id < len(tokens):
            kwargs.setdefault('eos_token', tokens[eos_id])
        return cls(template, **kwargs)

    def render(
        self,
        messages: Sequence[MessageLike],
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        image_placeholder: str | None = None,
        **context: Any,
    ) -> str:
        """Render a conversation into a prompt.

        Args:
            messages: The conversation (dicts or :class:`Message` objects).
            tools: Tool schemas in the OpenAI function format, for templates that render tools.
            add_generation_prompt: Open the assistant's turn at the end.
            image_placeholder: Render images as this text instead of the template's own ``image_placeholder``.
            **context: Extra template variables for this call.

        Raises:
            UnsafeTemplateError: The template tried to reach Python internals.
            ValueError: The template rejected the conversation (its own message is quoted).
            ImageError: An image part is malformed.
        """
        items = cast('list[Message]', normalize_messages(messages, allow_strings=False))
        placeholder = image_placeholder or self.image_placeholder
        variables = {
            **self.context,
            **context,
            'messages': [_template_message(item, index, placeholder) for index, item in enumerate(items)],
            'tools': list(tools) if tools else None,
            'add_generation_prompt': add_generation_prompt,
            'bos_token': self.bos_token,
            'eos_token': self.eos_token,
        }
        try:
            return self._template.render(**variables)
        except SecurityError as exc:
            raise UnsafeTemplateError(f'chat template tried an unsafe operation and was stopped: {exc}') from None
        except _TemplateRaised as exc:
            raise ValueError(f'chat template rejected the conversation: {exc}') from None
        except (jinja2.TemplateError, TypeError) as exc:  # TypeError: e.g. str + list in the template
            hint = ''
            if placeholder is None and has_images(items):
                hint = ' (the conversation holds images: give the template an image_placeholder if it reads text only)'
            raise ValueError(f'chat template failed: {exc}{hint}') from exc


def _template_message(message: Message, index: int, image_placeholder: str | None) -> dict[str, Any]:
    """The message as an OpenAI dict; ``content`` is kept when null (templates test ``is none``),
    a list content becomes text when images have a placeholder, and tool-call arguments
    are :class:`_Arguments`."""
    data = message.to_openai()
    data.setdefault('content', None)
    if image_placeholder is not None and isinstance(message.content, list):
        data['content'] = content_text(message.content, image_placeholder, message_index=index)
    for call in data.get('tool_calls') or ():
        call['function']['arguments'] = _Arguments.of(call['function']['arguments'])
    return data


class _Arguments(dict):
    """Tool-call arguments for a template, both ways templates read them: as an object
    (``arguments | tojson``, ``arguments.items()``: Qwen, Llama 3.1, Mistral) and as the
    JSON text the model wrote (``'...' + arguments``, ``{{ arguments }}``: DeepSeek)."""

    text: str

    @classmethod
    def of(cls, text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text
        if not isinstance(value, dict):
            return text
        arguments = cls(value)
        arguments.text = text
        return arguments

    def __str__(self) -> str:
        return self.text

    def __add__(self, other: Any) -> Any:
        return self.text + other if isinstance(other, str) else NotImplemented

    def __radd__(self, other: Any) -> Any:
        return other + self.text if isinstance(other, str) else NotImplemented


def _token_text(token: Any) -> str:
    if isinstance(token, dict):  # tokenizer_config.json may store AddedToken dicts
        return str(token.get('content', ''))
    return token or ''
