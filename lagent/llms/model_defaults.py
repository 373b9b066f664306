"""The defaults a model adapter gives an engine config (used by :func:`~lagent.llms.build_llm`).

A config that names no ``meta_template`` and no ``chat_template`` gets the
template of the model's family (see :mod:`lagent.prompts.adapters`) where the
engine would otherwise have none to apply:

* the engine takes prompts only (it has no messages path), or
* the model carries no chat template of its own (a GGUF file without
  ``tokenizer.chat_template``, a model directory without a ``chat_template``).

Otherwise the model's own chat template applies, which is exact, and the
config is left as it is. A model no adapter recognises, on an engine that
needs a template, keeps going without one (contents joined by newlines) and a
warning says how to choose.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from lagent.prompts import list_templates
from lagent.prompts.adapters import describe_model, find_model_adapter

__all__ = ['with_model_defaults']

logger = logging.getLogger(__name__)

_MODEL_KEYS = ('path', 'model_name')


def with_model_defaults(engine: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``config`` (an engine's constructor keywords) with the template of its
    model's family added where the engine needs one (see the module docstring).

    Args:
        engine: The engine class the config builds.
        config: Its keywords, without ``type``.
    """
    values = dict(config)
    if values.get('meta_template') is not None or values.get('chat_template') is not None:
        return values
    model = next((values[key] for key in _MODEL_KEYS if values.get(key)), None)
    if not isinstance(model, (str, os.PathLike)):
        return values
    info = describe_model(model)
    adapter = find_model_adapter(info)
    takes_messages = bool(getattr(engine, 'accepts_messages', False))
    needs_template = not takes_messages or info.has_chat_template is False
    if adapter is None or adapter.template is None:
        if needs_template:
            logger.warning(
                'no model adapter recognises %r, so %s has no prompt template for it: each conversation is sent as '
                'its message texts joined by newlines. Choose one with --template NAME (meta_template=NAME in '
                'code; registered: %s), a chat template file, or register_model_adapter() for its family.',
                os.fspath(model),
                engine.__name__,
                ', '.join(list_templates()),
            )
        return values
    logger.debug(
        'model adapter %r for %r: template %s, tool calls %s, vision %s',
        adapter.name,
        os.fspath(model),
        adapter.template,
        adapter.tool_call_format or 'none',
        'yes' if adapter.vision else 'no',
    )
    if not needs_template:
        logger.debug("%s applies the model's own chat template", engine.__name__)
        return values
    values['meta_template'] = adapter.template
    if values.get('stop_words') is None and adapter.stop_words is not None:
        values['stop_words'] = list(adapter.stop_words)
    return values
