"""build_llm: engines from dicts and JSON/YAML files; unknown keys rejected by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lagent.errors import MissingExtraError
from lagent.llms import registry
from lagent.llms.base import BaseLLM
from lagent.llms.config import accepted_keywords, build_llm, engine_names, register_llm, resolve_engine
from lagent.llms.scripted import ScriptedLLM
from lagent.schema import GenerationParams

SCRIPTED = {'type': 'ScriptedLLM', 'replies': ['Hi there.'], 'max_new_tokens': 7, 'meta_template': 'chatml'}


def test_build_from_dict_passes_every_keyword() -> None:
    llm = build_llm(SCRIPTED)
    assert isinstance(llm, ScriptedLLM)
    assert llm.gen_params.max_new_tokens == 7
    assert llm.gen_params.stop_words == ('<|im_end|>',)  # from the named template
    assert llm.chat([{'role': 'user', 'content': 'hello'}]) == 'Hi there.'
    assert llm.requests == ['<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n']


def test_build_does_not_change_the_given_dict() -> None:
    config = dict(SCRIPTED)
    build_llm(config)
    assert config == SCRIPTED


def test_type_may_be_a_class() -> None:
    assert isinstance(build_llm({**SCRIPTED, 'type': ScriptedLLM}), ScriptedLLM)


def test_build_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / 'llm.json'
    path.write_text(json.dumps(SCRIPTED))
    llm = build_llm(path)
    assert isinstance(llm, ScriptedLLM) and llm.gen_params.max_new_tokens == 7
    assert isinstance(build_llm(str(path)), ScriptedLLM)


def test_build_from_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / 'llm.yaml'
    path.write_text('type: ScriptedLLM\nreplies: [Hi there.]\nmax_new_tokens: 7\nstop_words: [END]\n')
    llm = build_llm(path)
    assert isinstance(llm, ScriptedLLM)
    assert llm.gen_params.stop_words == ('END',)


def test_yaml_without_pyyaml_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / 'llm.yml'
    path.write_text('type: ScriptedLLM\n')
    monkeypatch.setitem(sys.modules, 'yaml', None)  # makes `import yaml` fail
    with pytest.raises(MissingExtraError, match=r'lagent\[bench\]') as info:
        build_llm(path)
    assert info.value.package == 'pyyaml'


def test_unknown_key_is_rejected_by_name_before_construction() -> None:
    constructed = []

    class Recording(ScriptedLLM):
        def __init__(self, replies, **kwargs):
            constructed.append(kwargs)
            super().__init__(replies, **kwargs)

    with pytest.raises(ValueError, match=r"does not take 'max_tokens'") as info:
        build_llm({'type': Recording, 'replies': [], 'max_tokens': 5})
    assert 'max_new_tokens' in str(info.value)  # the keys it does take are listed
    assert constructed == []


def test_invalid_generation_value_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match='top_p'):
        build_llm({**SCRIPTED, 'top_p': 3})


def test_missing_or_unknown_type() -> None:
    with pytest.raises(ValueError, match="needs a 'type'"):
        build_llm({'replies': []})
    with pytest.raises(ValueError, match=r"unknown engine 'vllm'.*lmdeploy-client"):
        build_llm({'type': 'vllm'})


@pytest.mark.parametrize(
    ('content', 'suffix', 'message'),
    [
        ('{"type": ', '.json', 'not valid JSON'),
        ('type: [unclosed', '.yaml', 'not valid YAML'),
        ('[1, 2]', '.json', 'must hold a mapping'),
        ('type = "x"', '.toml', r'\.json, \.yaml or \.yml'),
    ],
)
def test_bad_files_are_value_errors(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f'llm{suffix}'
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        build_llm(path)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_llm(tmp_path / 'absent.json')


def test_keywords_follow_kwargs_up_to_generation_params() -> None:
    class Engine(BaseLLM):
        def __init__(self, url: str, *, retries: int = 2, **gen_params):
            super().__init__(**gen_params)

    accepted, open_ended = accepted_keywords(Engine)
    assert not open_ended
    assert {'url', 'retries', 'path', 'meta_template', 'chat_template'} <= accepted
    assert set(GenerationParams.model_fields) <= accepted


def test_a_kwargs_that_leads_nowhere_visible_accepts_anything() -> None:
    class Wrapper:
        def __init__(self, **options):
            self.options = options

    assert accepted_keywords(Wrapper) == (set(), True)


def test_register_llm_by_class_and_by_target(monkeypatch: pytest.MonkeyPatch) -> None:
    class MyEngine(ScriptedLLM):
        pass

    monkeypatch.setattr('lagent.llms.registry.ENGINES', list(registry.ENGINES))  # registrations end with the test
    register_llm('my-engine', MyEngine)
    register_llm('my-scripted', 'lagent.llms.scripted:ScriptedLLM')
    assert type(build_llm({'type': 'my-engine', 'replies': []})) is MyEngine
    assert resolve_engine('my-scripted') is ScriptedLLM
    assert {'my-engine', 'my-scripted'} <= set(engine_names())
    with pytest.raises(ValueError, match='already registered'):
        register_llm('my-engine', ScriptedLLM)
    register_llm('my-engine', ScriptedLLM, override=True)
    assert resolve_engine('my-engine') is ScriptedLLM
    with pytest.raises(ValueError, match='module:ClassName'):
        register_llm('broken', 'no_colon_here')


def test_no_builtin_name_points_to_two_engines() -> None:
    names = [name for spec in registry.ENGINES for name in spec.names]
    assert len(names) == len(set(names))


def test_the_registry_imports_no_engine_library() -> None:
    code = 'import sys, lagent.llms.config; print(sorted(m for m in ("llama_cpp", "transformers", "torch", "lmdeploy", "tritonclient") if m in sys.modules))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


def test_type_may_be_an_import_target() -> None:
    llm = build_llm({'type': 'lagent.llms.scripted:ScriptedLLM', 'replies': ['ok']})
    assert isinstance(llm, ScriptedLLM)
    with pytest.raises(ValueError, match="no module named 'no_such_module'"):
        build_llm({'type': 'no_such_module:Engine'})
    with pytest.raises(ValueError, match="has no class 'Nope'"):
        build_llm({'type': 'lagent.llms.scripted:Nope'})
