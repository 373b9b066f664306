"""The engine registry: one list from which the exports, build_llm, the CLI and the docs table derive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lagent.llms
from lagent.cli import build_parser
from lagent.llms import BaseLLM
from lagent.llms.registry import ENGINES, engine_table, find_engine, resolve_engine
from lagent.llms.scripted import ScriptedLLM

README = Path(__file__).resolve().parents[2] / 'README.md'


def test_every_engine_is_exported_lazily_and_loads() -> None:
    for spec in ENGINES:
        assert spec.class_name in lagent.llms.__all__
        engine = getattr(lagent.llms, spec.class_name)
        assert issubclass(engine, BaseLLM) and engine.__name__ == spec.class_name
        assert resolve_engine(spec.name) is engine


def test_every_exported_engine_class_is_registered() -> None:
    classes = {name for name in lagent.llms.__all__ if isinstance(getattr(lagent.llms, name), type)}
    engines = {name for name in classes if issubclass(getattr(lagent.llms, name), BaseLLM) and name != 'BaseLLM'}
    assert engines == {spec.class_name for spec in ENGINES}


def test_import_lagent_loads_no_engine_module_and_no_aiohttp() -> None:
    code = 'import json, sys, lagent; print(json.dumps(sorted(sys.modules)))'
    modules = json.loads(subprocess.check_output([sys.executable, '-c', code], text=True))
    engine_modules = {spec.target.partition(':')[0] for spec in ENGINES}
    assert not engine_modules & set(modules)
    assert 'lagent.llms.http' not in modules and 'aiohttp' not in modules and 'requests' not in modules


def test_the_readme_table_is_the_registry() -> None:
    assert engine_table() in README.read_text(encoding='utf-8')


def test_cli_backend_help_lists_every_engine() -> None:
    chat = build_parser()._subparsers._group_actions[0].choices['chat']
    help_text = next(action.help for action in chat._actions if action.dest == 'backend')
    for spec in ENGINES:
        assert spec.name in help_text


def test_names_and_aliases_find_the_same_engine() -> None:
    spec = find_engine('openai')
    assert spec is not None and find_engine('OpenAICompatible') is spec
    assert find_engine('no-such-engine') is None


def test_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r'unknown engine .* known: .*llamacpp'):
        resolve_engine('llama')


@pytest.mark.parametrize(
    ('keyword', 'explanation'),
    [
        ('action_executor', 'is an agent keyword'),
        ('n_ctx', 'is a keyword of LlamaCpp'),
        ('tritonserver_addr', 'is a keyword of TritonClient'),
        ('no_such_keyword', "unknown keyword 'no_such_keyword' for ScriptedLLM"),
    ],
)
def test_keywords_of_other_engines_and_of_agents_are_named_as_such(keyword: str, explanation: str) -> None:
    with pytest.raises(ValueError, match=explanation):
        ScriptedLLM([], **{keyword: 1})
