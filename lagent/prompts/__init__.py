"""Prompt building: meta_template rendering, named templates, Jinja chat templates."""

from lagent.prompts import families as _families  # noqa: F401  (registers the built-in templates)
from lagent.prompts.chat_template import ChatTemplate, UnsafeTemplateError
from lagent.prompts.families import INTERNLM2_META
from lagent.prompts.meta_template import MetaTemplate, RoleBegin, RoleSpec, join_contents, normalize_messages
from lagent.prompts.registry import TemplateSpec, get_template, list_templates, match_template, register_template

__all__ = [
    'INTERNLM2_META',
    'ChatTemplate',
    'MetaTemplate',
    'RoleBegin',
    'RoleSpec',
    'TemplateSpec',
    'UnsafeTemplateError',
    'get_template',
    'join_contents',
    'list_templates',
    'match_template',
    'normalize_messages',
    'register_template',
]
