"""A registry of named prompt templates for common chat model families.

``get_template('chatml')`` returns a :class:`TemplateSpec` whose ``roles`` is a
meta_template and whose ``stop_words`` end a reply; ``match_template(path)``
guesses the family from a model path or name. Any LLM accepts a registered name
wherever it accepts a meta_template::

    LMDeployClient(url=..., meta_template='internlm2')

The built-in families are registered by :mod:`lagent.prompts.families`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lagent.prompts.meta_template import MetaTemplate

__all__ = ['TemplateSpec', 'get_template', 'list_templates', 'match_template', 'register_template']


@dataclass(frozen=True)
class TemplateSpec:
    """A named prompt format.

    Attributes:
        name: The registry name.
        roles: The meta_template (role dicts).
        stop_words: Strings that end the model's turn.
        patterns: Regular expressions matched (case-insensitively) against a
            model path or name by :func:`match_template`.
        reference: Where the format is defined officially.
        image_placeholder: What stands for an image in the prompt (vision
            families); ``None``: the format has no images.
    """

    name: str
    roles: tuple[Mapping[str, Any], ...]
    stop_words: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    reference: str = ''
    image_placeholder: str | None = None
    meta_template: MetaTemplate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, 'meta_template', MetaTemplate(self.roles, image_placeholder=self.image_placeholder))

    def render(self, messages: Sequence[Any]) -> str:
        """Render a conversation with this template's meta_template."""
        return self.meta_template.render(messages)


_REGISTRY: dict[str, TemplateSpec] = {}


def register_template(
    name: str,
    roles: Sequence[Mapping[str, Any]],
    *,
    stop_words: Sequence[str] = (),
    patterns: Sequence[str] = (),
    reference: str = '',
    image_placeholder: str | None = None,
    override: bool = False,
) -> TemplateSpec:
    """Register a named template and return it.

    Args:
        name: The name to register under.
        roles: The meta_template (validated now).
        stop_words: Strings that end the model's turn.
        patterns: Regular expressions that recognise the family's model paths.
        reference: A link to the official definition of the format.
        image_placeholder: What stands for an image in the prompt (vision families).
        override: Replace an existing template of that name.

    Raises:
        ValueError: The name is taken (and ``override`` is false), or the template is malformed.
    """
    if not name or not isinstance(name, str):
        raise ValueError('a template name must be a non-empty string')
    if name in _REGISTRY and not override:
        raise ValueError(f'template {name!r} is already registered; pass override=True to replace it')
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f'pattern {pattern!r} of template {name!r} is not a valid regular expression: {exc}'
            ) from None
    spec = TemplateSpec(
        name=name,
        roles=tuple(dict(role) for role in roles),
        stop_words=tuple(stop_words),
        patterns=tuple(patterns),
        reference=reference,
        image_placeholder=image_placeholder,
    )
    _REGISTRY[name] = spec
    return spec


def get_template(name: str) -> TemplateSpec:
    """Return the template registered under ``name``.

    Raises:
        ValueError: No such template; the message lists the registered names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f'unknown template {name!r}; registered: {", ".join(sorted(_REGISTRY))}') from None


def list_templates() -> list[str]:
    """Return the registered template names, sorted."""
    return sorted(_REGISTRY)


def match_template(model_path: str) -> TemplateSpec | None:
    """Guess the template of a model from its path or name.

    The last path component is tried first, then the whole path; among the
    templates whose patterns match, the one registered last wins (so a user's
    registration overrides a built-in one, and specific families registered
    after generic ones take precedence).

    Returns:
        The matching template, or ``None`` when no family is recognised.
    """
    text = str(model_path).rstrip('/\\')
    candidates = [re.split(r'[/\\]', text)[-1], text]
    for candidate in candidates:
        for spec in reversed(list(_REGISTRY.values())):
            if any(re.search(pattern, candidate, re.IGNORECASE) for pattern in spec.patterns):
                return spec
    return None
