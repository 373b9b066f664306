"""Run a lagent 0.2 example script with its model class swapped for an engine of the test fixtures.

    python -m tests.compat.run_example ENGINE SCRIPT [ARGS...]

The examples build ``HFTransformer(path=..., meta_template=..., max_new_tokens=..., ...)``;
here ``lagent.llms.HFTransformer`` is replaced, before the script runs, by a
function that builds ENGINE with the same keywords (the generation settings
and meta_template every engine takes):

* ``hf``: the real ``HFTransformer`` (pass ``--path`` to the script);
* ``llamacpp``: ``LlamaCpp()``, the embedded SmolLM2;
* ``lmdeploy``: ``LMDeployClient`` at ``$EXAMPLE_LLAMACPP_URL``;
* ``triton``: ``TritonClient`` at ``$EXAMPLE_TRITON_ADDR`` (model ``ensemble``);
* ``scripted``: ``ScriptedLLM`` replaying the JSON list in ``$EXAMPLE_REPLIES``
  (for ``GPTAPI`` too); every request it received is written as JSON to
  ``$EXAMPLE_REQUESTS`` at exit.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import lagent.llms


def engine_factory(kind: str) -> Any:
    def build(path: str | None = None, **kwargs: Any) -> Any:
        if kind == 'hf':
            from lagent.llms.hf_transformer import HFTransformer

            return HFTransformer(path, **kwargs)
        if kind == 'llamacpp':
            from lagent.llms.llama_cpp import LlamaCpp

            return LlamaCpp(**kwargs)
        if kind == 'lmdeploy':
            from lagent.llms.lmdeploy_client import LMDeployClient

            return LMDeployClient(os.environ['EXAMPLE_LLAMACPP_URL'], model_name='smollm2', **kwargs)
        if kind == 'triton':
            from lagent.llms.triton import TritonClient

            return TritonClient(os.environ['EXAMPLE_TRITON_ADDR'], 'ensemble', **kwargs)
        if kind == 'scripted':
            from lagent.llms.scripted import ScriptedLLM
            from lagent.schema import GenerationParams

            known = {'meta_template', *GenerationParams.model_fields, *GenerationParams.translated_keywords}
            settings = {key: value for key, value in kwargs.items() if key in known}  # not GPTAPI's key, url...
            llm = ScriptedLLM(json.loads(os.environ['EXAMPLE_REPLIES']), chunk_size=5, **settings)
            target = Path(os.environ['EXAMPLE_REQUESTS'])
            atexit.register(lambda: target.write_text(json.dumps(llm.requests), encoding='utf-8'))
            return llm
        raise SystemExit(f'unknown engine {kind!r}')

    return build


def main() -> None:
    kind, script, *args = sys.argv[1:]
    lagent.llms.HFTransformer = engine_factory(kind)  # type: ignore[attr-defined]
    if kind == 'scripted':  # the API examples' model class too
        old_module = importlib.import_module('lagent.llms.openai')
        lagent.llms.GPTAPI = old_module.GPTAPI = engine_factory(kind)  # type: ignore[attr-defined]
    sys.argv = [script, *args]
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
