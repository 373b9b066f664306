"""Prompt building: meta_template rendering, named templates, Jinja chat templates."""

from lagent.prompts import families as _families  # noqa: F401  (registers the built-in templates)
from lagent.prompts.adapters import (
    ModelAdapter,
    ModelInfo,
    describe_model,
    find_model_adapter,
    get_model_adapter,
    list_model_adapters,
    register_model_adapter,
)
from lagent.prompts.chat_template import ChatTemplate, UnsafeTemplateError
from lagent.prompts.families import INTERNLM2_META
from lagent.prompts.meta_template import MetaTemplate, RoleBegin, RoleSpec, join_contents, normalize_messages
from lagent.prompts.registry import TemplateSpec, get_template, list_templates, match_template, register_template

__all__ = [
    'INTERNLM2_META',
    'ChatTemplate',
    'MetaTemplate',
    'ModelAdapter',
    'ModelInfo',
    'RoleBegin',
    'RoleSpec',
    'TemplateSpec',
    'UnsafeTemplateError',
    'describe_model',
    'find_model_adapter',
    'get_model_adapter',
    'get_template',
    'join_contents',
    'list_model_adapters',
    'list_templates',
    'match_template',
    'normalize_messages',
    'register_model_adapter',
    'register_template',
]
