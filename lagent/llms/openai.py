"""lagent 0.2's module of :class:`~lagent.llms.GPTAPI` (any OpenAI-compatible server)."""

from lagent.llms.openai_compatible import GPTAPI

__all__ = ['GPTAPI', 'OPENAI_API_BASE']

OPENAI_API_BASE = 'https://api.openai.com/v1/chat/completions'
"""OpenAI's chat endpoint, the original default of ``openai_api_base``."""
