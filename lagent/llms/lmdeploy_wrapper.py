"""The lmdeploy engines under their original lagent import path.

``from lagent.llms.lmdeploy_wrapper import LMDeployServer`` keeps working;
each class is imported from its own module on first use, so importing this
module loads no engine library.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lagent.llms.lmdeploy_client import LMDeployClient
    from lagent.llms.lmdeploy_pipeline import LMDeployPipeline
    from lagent.llms.lmdeploy_server import LMDeployServer
    from lagent.llms.triton import TritonClient

__all__ = ['LMDeployClient', 'LMDeployPipeline', 'LMDeployServer', 'TritonClient']


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(import_module('lagent.llms'), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
