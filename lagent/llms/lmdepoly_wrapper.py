"""The original lagent module name, misspelled, kept so existing imports such as
``from lagent.llms.lmdepoly_wrapper import TritonClient`` keep working.
Everything comes from :mod:`lagent.llms.lmdeploy_wrapper`."""

from __future__ import annotations

from typing import Any

from lagent.llms import lmdeploy_wrapper as _wrapper

__all__ = _wrapper.__all__


def __getattr__(name: str) -> Any:
    return getattr(_wrapper, name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
