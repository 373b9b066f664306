"""Compatibility module: ``from lagent.llms.meta_template import INTERNLM2_META``."""

from lagent.prompts.families import INTERNLM2_META

__all__ = ['INTERNLM2_META']
