"""lagent 0.2's base model module: ``BaseModel`` is :class:`~lagent.llms.BaseLLM`,
and ``LMTemplateParser`` renders a meta_template prompt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lagent.llms.base import BaseLLM
from lagent.prompts import MetaTemplate
from lagent.schema import MessageLike

__all__ = ['BaseModel', 'LMTemplateParser']

BaseModel = BaseLLM
"""lagent 0.2's name of the engine base class (an engine implements ``_stream``;
see the guide to adding an engine)."""


class LMTemplateParser:
    """Renders conversations into a prompt with a meta_template (lagent 0.2's parser).

    Args:
        meta_template: Role dicts (``None`` or empty: message contents joined by newlines).
    """

    def __init__(self, meta_template: Sequence[Mapping[str, Any]] | None = None):
        self.meta_template = list(meta_template or [])
        self._template = MetaTemplate(self.meta_template) if self.meta_template else None

    def __call__(self, dialog: str | Sequence[MessageLike]) -> str:
        """The prompt for ``dialog`` (a string is returned as it is)."""
        if isinstance(dialog, str):
            return dialog
        if self._template is None:
            return '\n'.join(str(item['content'] if isinstance(item, Mapping) else item) for item in dialog)
        return self._template.render(dialog)
