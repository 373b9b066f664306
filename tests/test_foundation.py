"""The package itself: importing it needs only the core dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ['torch', 'transformers', 'llama_cpp', 'tritonclient', 'lmdeploy', 'numpy']


@pytest.mark.parametrize('module', ['lagent', 'lagent.llms', 'lagent.prompts', 'lagent.llms.meta_template'])
def test_import_loads_no_engine_library(module):
    code = f'import sys, json, {module}\nprint(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_no_module_of_the_package_loads_an_engine_library_when_imported():
    # engines import their library when constructed, never at import time
    code = (
        'import importlib, json, pkgutil, sys, lagent\n'
        "names = [m.name for m in pkgutil.walk_packages(lagent.__path__, 'lagent.') if not m.name.endswith('.__main__')]\n"
        'for name in names:\n'
        '    importlib.import_module(name)\n'
        f'print(json.dumps([len(names), sorted(name for name in {HEAVY!r} if name in sys.modules)]))'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, check=True)
    count, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert count > 10
    assert loaded == []


def test_public_api_is_exported():
    import lagent

    for name in ('BaseLLM', 'ScriptedLLM', 'Message', 'ModelStatusCode', 'GenerationParams', 'LLMError'):
        assert name in lagent.__all__ and hasattr(lagent, name)
