"""Lazy import of optional engine libraries."""

from __future__ import annotations

import importlib
from types import ModuleType

from lagent.errors import MissingExtraError


def import_optional(module: str, *, package: str, extra: str, note: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the pip extra.

    Args:
        module: The module to import, e.g. ``'llama_cpp'``.
        package: The distribution that provides it, e.g. ``'llama-cpp-python'``.
        extra: The lagent extra that installs it, e.g. ``'llamacpp'``.
        note: More advice for the error message (e.g. how to install ``torch``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        if missing.split('.')[0] != module.split('.')[0]:
            raise  # the library is there but one of its own imports failed: show that
        raise MissingExtraError(package, extra, note=note) from exc
