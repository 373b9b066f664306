"""``LMDeployClient``: an LLM served by lmdeploy's ``api_server``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lagent.llms.openai_compatible import OpenAICompatible
from lagent.schema import GenerationParams

__all__ = ['LMDeployClient']


class LMDeployClient(OpenAICompatible):
    """An LLM behind ``lmdeploy serve api_server``, spoken to over its OpenAI API.

    The same as :class:`~lagent.llms.openai_compatible.OpenAICompatible`, plus
    the sampling fields lmdeploy adds (``top_k``, ``repetition_penalty``,
    ``ignore_eos``, ``skip_special_tokens``, ``min_new_tokens``). Both
    ``max_tokens`` and ``max_completion_tokens`` carry ``max_new_tokens``, and
    ``stop`` is sent. No ``session_id`` is ever sent: lmdeploy then gives every
    request a fresh session (equal ids on concurrent requests would collide).
    The lagent call keywords ``session_id``, ``request_id``, ``sequence_start``,
    ``sequence_end``, ``ignore_eos`` and ``timeout`` are accepted;
    ``request_id`` is sent as ``X-Request-Id`` and ``timeout`` bounds the whole request.

    Args:
        url: The api_server's address, e.g. ``http://127.0.0.1:23333``.
        model_name: The served model name; ``None``: the first of ``/v1/models``.
        meta_template: Role dicts or a registered template name; with one, prompts
            are rendered here and sent to ``/v1/completions``.
        api_key: One of the server's ``--api-keys``.
        **kwargs: Further :class:`~lagent.llms.openai_compatible.OpenAICompatible`
            keywords (timeouts, retries) and generation defaults.
    """

    def __init__(
        self,
        url: str,
        model_name: str | None = None,
        meta_template: Sequence[Mapping[str, Any]] | str | None = None,
        api_key: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(url, model_name=model_name, api_key=api_key, meta_template=meta_template, **kwargs)

    def _engine_fields(self, params: GenerationParams) -> dict[str, Any]:
        fields: dict[str, Any] = {
            'max_completion_tokens': params.max_new_tokens,
            'repetition_penalty': params.repetition_penalty,
            'ignore_eos': params.ignore_eos,
        }
        if params.top_k is not None:
            fields['top_k'] = params.top_k
        if params.skip_special_tokens is not None:
            fields['skip_special_tokens'] = params.skip_special_tokens
        if params.min_new_tokens is not None:
            fields['min_new_tokens'] = params.min_new_tokens  # chat endpoint only; /v1/completions ignores it
        return fields
