"""Model adapters: every template family found from its published model names, GGUF
metadata and config.json detection, registration, and the defaults build_llm takes
from them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import gguf
import pytest

from lagent.llms import BaseLLM, LLMRequest, build_llm
from lagent.llms.llama_cpp import LlamaCpp
from lagent.llms.model_defaults import with_model_defaults
from lagent.prompts import (
    ChatTemplate,
    MetaTemplate,
    ModelAdapter,
    describe_model,
    find_model_adapter,
    get_model_adapter,
    get_template,
    list_model_adapters,
    register_model_adapter,
)
from lagent.prompts.adapters import TOOL_CALL_FORMATS
from lagent.schema import Chunk, GenerationParams
from tests.prompts.test_families import BUILT_IN
from tests.test_cli import lagent

# Published model names (hub ids) of each family, and the adapter they must get.
PUBLISHED = {
    'internlm2': ['internlm/internlm2-chat-7b', 'internlm/internlm2_5-7b-chat', 'internlm/internlm2_5-20b-chat'],
    # ChatML is a format, not a family: models are sent to it by a name that says so
    'chatml': ['my-org/tinyllama-sft-chatml', '/models/chatml-finetune.gguf'],
    'llama2': ['meta-llama/Llama-2-7b-chat-hf', 'meta-llama/Llama-2-70b-chat-hf', 'codellama/CodeLlama-7b-Instruct-hf'],
    'llama3': [
        'meta-llama/Meta-Llama-3-8B-Instruct',
        'meta-llama/Llama-3.1-8B-Instruct',
        'meta-llama/Llama-3.2-1B-Instruct',
        'meta-llama/Llama-3.3-70B-Instruct',
    ],
    'mistral': ['mistralai/Mistral-7B-Instruct-v0.2', 'mistralai/Mixtral-8x7B-Instruct-v0.1'],
    'vicuna': ['lmsys/vicuna-7b-v1.5', 'lmsys/vicuna-13b-v1.3'],
    'phi3': [
        'microsoft/Phi-3-mini-4k-instruct',
        'microsoft/Phi-3.5-mini-instruct',
        'microsoft/Phi-3-medium-128k-instruct',
    ],
    'gemma': ['google/gemma-7b-it', 'google/gemma-2-9b-it', 'google/gemma-2-2b-it'],
    'deepseek': ['deepseek-ai/deepseek-llm-7b-chat', 'deepseek-ai/DeepSeek-V2-Lite-Chat', 'deepseek-ai/DeepSeek-V2.5'],
    'baichuan2': ['baichuan-inc/Baichuan2-7B-Chat', 'baichuan-inc/Baichuan2-13B-Chat'],
    'yi': ['01-ai/Yi-34B-Chat', '01-ai/Yi-6B-Chat', '01-ai/Yi-1.5-9B-Chat'],
    'glm4': ['THUDM/glm-4-9b-chat', 'THUDM/GLM-4-9B-0414'],
    'qwen': ['Qwen/Qwen1.5-7B-Chat', 'Qwen/Qwen2-0.5B-Instruct', 'Qwen/Qwen2.5-7B-Instruct', 'Qwen/QwQ-32B'],
    'smollm2': ['HuggingFaceTB/SmolLM2-135M-Instruct', 'HuggingFaceTB/SmolLM2-1.7B-Instruct'],
    'deepseek3': ['deepseek-ai/DeepSeek-V3', 'deepseek-ai/DeepSeek-R1', 'deepseek-ai/DeepSeek-R1-Distill-Qwen-7B'],
    # vision families
    'qwen2-vl': ['Qwen/Qwen2-VL-7B-Instruct', 'Qwen/Qwen2.5-VL-3B-Instruct', 'Qwen/QVQ-72B-Preview'],
    'internvl': ['OpenGVLab/InternVL2-2B', 'OpenGVLab/InternVL2_5-8B'],
    'llava': ['llava-hf/llava-1.5-7b-hf', 'liuhaotian/llava-v1.5-13b'],
}
CASES = [(name, family) for family, names in PUBLISHED.items() for name in names]
VISION = {'qwen2-vl', 'internvl', 'llava'}
HELLO = [{'role': 'user', 'content': 'Hello!'}]


def test_every_template_family_has_an_adapter_and_published_names():
    assert len(BUILT_IN) == 15
    assert set(BUILT_IN) | VISION == set(PUBLISHED)
    assert set(PUBLISHED) <= set(list_model_adapters())


@pytest.mark.parametrize(('model', 'family'), CASES)
def test_published_model_names_find_their_family(model, family):
    adapter = find_model_adapter(model)
    assert adapter is not None, model
    assert adapter.name == family
    assert adapter.template == family
    assert adapter.vision == (family in VISION)


@pytest.mark.parametrize(
    ('model', 'family'), [(f'/data/models/{name.split("/")[-1]}', family) for name, family in CASES]
)
def test_local_copies_of_published_models_find_their_family(model, family):
    assert find_model_adapter(model).name == family


@pytest.mark.parametrize('family', sorted(PUBLISHED))
def test_an_adapter_s_defaults_are_its_template_s(family):
    adapter = get_model_adapter(family)
    spec = get_template(adapter.template)
    assert adapter.default_stop_words == spec.stop_words and spec.stop_words
    assert adapter.reference == spec.reference and adapter.reference.startswith('https://')
    assert adapter.tool_call_format is None or adapter.tool_call_format in TOOL_CALL_FORMATS
    assert spec.render(HELLO).endswith(spec.meta_template.role('assistant').begin_for(None))
    assert (spec.image_placeholder is not None) == adapter.vision


def test_tool_call_formats_of_the_families_that_have_one():
    formats = {name: get_model_adapter(name).tool_call_format for name in PUBLISHED}
    assert {name: fmt for name, fmt in formats.items() if fmt} == {
        'internlm2': 'internlm2',
        'llama3': 'llama3-json',
        'mistral': 'mistral',
        'glm4': 'glm4',
        'qwen': 'hermes',
        'deepseek3': 'deepseek3',
    }


@pytest.mark.parametrize('model', ['gpt2', 'bert-base-uncased', 'EleutherAI/pythia-70m', 'huggyllama/llama-30b'])
def test_unknown_models_have_no_adapter(model):
    assert find_model_adapter(model) is None


def test_the_file_name_wins_over_the_directory():
    assert find_model_adapter('/data/qwen-experiments/Meta-Llama-3-8B-Instruct').name == 'llama3'


# ---------------------------------------------------------------------- GGUF metadata and config.json


def write_gguf(path: Path, architecture: str, **strings: str) -> Path:
    """A metadata-only GGUF file (no tensors), as ``gguf`` writes them."""
    writer = gguf.GGUFWriter(str(path), architecture)
    for key, value in strings.items():
        writer.add_string(key.replace('__', '.'), value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    ('architecture', 'strings', 'family'),
    [
        ('qwen2', {'general__basename': 'Qwen2.5', 'general__name': 'Qwen2.5 7B Instruct'}, 'qwen'),
        ('llama', {'general__name': 'Meta Llama 3.1 8B Instruct'}, 'llama3'),
        ('llama', {'general__basename': 'Mistral', 'general__name': 'Mistral 7B Instruct v0.2'}, 'mistral'),
        ('gemma2', {}, 'gemma'),
        ('phi3', {}, 'phi3'),
        ('internlm2', {}, 'internlm2'),
        ('qwen2vl', {'general__basename': 'Qwen2-VL'}, 'qwen2-vl'),
        ('deepseek2', {'general__basename': 'DeepSeek-V3'}, 'deepseek3'),
        ('deepseek2', {'general__basename': 'DeepSeek-V2-Lite-Chat'}, 'deepseek'),
        ('chatglm', {'general__name': 'GLM-4 9B Chat'}, 'glm4'),
    ],
)
def test_gguf_metadata_names_the_family_when_the_file_name_does_not(tmp_path, architecture, strings, family):
    path = write_gguf(tmp_path / 'model-q4_k_m.gguf', architecture, **strings)
    assert find_model_adapter(path).name == family


def test_the_file_name_is_asked_before_the_gguf_metadata(tmp_path):
    path = write_gguf(tmp_path / 'Meta-Llama-3-8B-Instruct.gguf', 'qwen2', general__basename='Qwen2.5')
    assert find_model_adapter(path).name == 'llama3'


def test_a_gguf_with_only_a_generic_architecture_is_unknown(tmp_path):
    path = write_gguf(tmp_path / 'model.gguf', 'llama', general__name='My Model')
    assert find_model_adapter(path) is None


def test_describe_model_reads_the_real_smollm2_gguf(smollm2_path, tmp_path):
    renamed = tmp_path / 'model.gguf'
    renamed.symlink_to(smollm2_path)
    info = describe_model(renamed)
    assert info.names[:2] == ('model.gguf', str(renamed))
    assert 'smollm2' in info.names and 'llama' in info.names
    assert info.has_chat_template is True
    assert find_model_adapter(info).name == 'smollm2'


def test_describe_model_says_whether_a_gguf_brings_a_chat_template(tmp_path):
    with_template = write_gguf(tmp_path / 'a.gguf', 'llama', tokenizer__chat_template='{{ messages }}')
    without = write_gguf(tmp_path / 'b.gguf', 'llama')
    assert describe_model(with_template).has_chat_template is True
    assert describe_model(without).has_chat_template is False
    assert describe_model('Qwen/Qwen2.5-7B-Instruct').has_chat_template is None  # not here: cannot tell


def test_config_json_model_type_names_the_family_of_a_directory(tmp_path):
    model = tmp_path / 'checkpoint-1000'
    model.mkdir()
    (model / 'config.json').write_text(json.dumps({'model_type': 'qwen2_vl'}))
    (model / 'tokenizer_config.json').write_text(json.dumps({'eos_token': '<|im_end|>'}))
    info = describe_model(model)
    assert info.names[-1] == 'qwen2_vl' and info.has_chat_template is False
    assert find_model_adapter(info).name == 'qwen2-vl'
    (model / 'chat_template.jinja').write_text('{{ messages }}')
    assert describe_model(model).has_chat_template is True


def test_a_gguf_that_is_not_one_raises_a_clear_error(tmp_path):
    fake = tmp_path / 'model.gguf'
    fake.write_bytes(b'not a gguf file')
    with pytest.raises(ValueError, match='is not a GGUF file'):
        describe_model(fake)


# ---------------------------------------------------------------------- registration


class ByOrganisation(ModelAdapter):
    """An adapter that recognises models by their organisation, not a pattern."""

    def match(self, name: str) -> bool:
        return name.lower().startswith('acme-corp/')


def test_a_registered_adapter_with_its_own_match():
    adapter = register_model_adapter(ByOrganisation(name='test-acme', template='chatml', tool_call_format='hermes'))
    assert find_model_adapter('acme-corp/assistant-v2') is adapter
    assert get_model_adapter('test-acme') is adapter
    # names are asked in order: a family the file name itself gives wins over the organisation
    assert find_model_adapter('acme-corp/qwen2.5-finetune').name == 'qwen'
    assert find_model_adapter('Qwen/Qwen2.5-7B-Instruct').name == 'qwen'


def test_a_registered_adapter_wins_over_a_built_in_for_the_same_name():
    adapter = register_model_adapter(ModelAdapter(name='test-qwen-sft', template='chatml', patterns=(r'qwen2\.5-sft',)))
    assert find_model_adapter('org/Qwen2.5-SFT-7B') is adapter
    assert find_model_adapter('org/Qwen2.5-7B-Instruct').name == 'qwen'


def test_register_replaces_only_with_override():
    first = register_model_adapter(ModelAdapter(name='test-replace', template='chatml', patterns=(r'test-replace',)))
    with pytest.raises(ValueError, match='already registered'):
        register_model_adapter(ModelAdapter(name='test-replace', template='qwen'))
    second = register_model_adapter(
        ModelAdapter(name='test-replace', template='qwen', patterns=(r'test-replace',)), override=True
    )
    assert find_model_adapter('org/test-replace-7b') is second is not first
    assert list_model_adapters().count('test-replace') == 1


def test_an_adapter_s_own_stop_words_win_over_its_template_s():
    adapter = ModelAdapter(name='test-stops', template='chatml', stop_words=['<|im_end|>', 'Observation:'])
    assert adapter.default_stop_words == ('<|im_end|>', 'Observation:')


@pytest.mark.parametrize(
    ('keywords', 'message'),
    [
        ({'name': '', 'template': 'chatml'}, 'non-empty string'),
        ({'name': 'x', 'template': 'no-such-template'}, "unknown template 'no-such-template'"),
        ({'name': 'x', 'template': 'chatml', 'tool_call_format': 'xml'}, "unknown tool_call_format 'xml'"),
        ({'name': 'x', 'template': 'chatml', 'patterns': ('(',)}, 'not a valid regular expression'),
    ],
)
def test_malformed_adapters_are_refused(keywords, message):
    with pytest.raises(ValueError, match=message):
        ModelAdapter(**keywords)


def test_register_takes_adapters_only_and_unknown_names_are_listed():
    with pytest.raises(TypeError, match='takes a ModelAdapter'):
        register_model_adapter({'name': 'x'})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown model adapter 'nope'.*qwen"):
        get_model_adapter('nope')


# ---------------------------------------------------------------------- defaults for build_llm


class PromptOnly(BaseLLM):
    """An engine that takes rendered prompts only and answers with the prompt it got."""

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        yield Chunk(request.prompt or '', finish_reason='stop')


class TakesMessages(BaseLLM):
    """An engine with a messages path (the model's own template applies there) that answers with
    the messages it got, or with the prompt."""

    accepts_messages = True

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        yield Chunk(request.prompt or json.dumps(request.messages), finish_reason='stop')


def test_build_llm_gives_a_prompt_only_engine_its_model_s_template():
    llm = build_llm({'type': PromptOnly, 'path': 'Qwen/Qwen2.5-7B-Instruct'})
    assert isinstance(llm.template, MetaTemplate)
    assert llm.gen_params.stop_words == get_template('qwen').stop_words
    assert llm.prepare(HELLO).prompt == '<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n'
    assert llm.chat(HELLO) == '<|im_start|>user\nHello!'  # the echo ends at the template's stop word


def test_an_explicit_template_always_wins():
    llm = build_llm({'type': PromptOnly, 'path': 'Qwen/Qwen2.5-7B-Instruct', 'meta_template': 'llama3'})
    assert llm.chat(HELLO).startswith('<|start_header_id|>user')
    template = ChatTemplate('{% for m in messages %}[{{ m.content }}]{% endfor %}')
    llm = build_llm({'type': PromptOnly, 'path': 'Qwen/Qwen2.5-7B-Instruct', 'chat_template': template})
    assert llm.chat(HELLO) == '[Hello!]'


def test_a_messages_engine_keeps_the_model_s_own_template_when_it_has_one(tmp_path):
    with_template = write_gguf(tmp_path / 'qwen2.5-7b-instruct.gguf', 'qwen2', tokenizer__chat_template='{{ x }}')
    assert 'meta_template' not in with_model_defaults(TakesMessages, {'path': str(with_template)})
    remote = build_llm({'type': TakesMessages, 'path': 'Qwen/Qwen2.5-7B-Instruct'})  # a server applies its own
    assert remote.template is None and json.loads(remote.chat(HELLO)) == HELLO


def test_a_messages_engine_gets_the_family_template_when_the_model_has_none(tmp_path):
    model = tmp_path / 'vicuna-7b-v1.5'
    model.mkdir()
    (model / 'tokenizer_config.json').write_text(json.dumps({'eos_token': '</s>'}))
    llm = build_llm({'type': TakesMessages, 'path': str(model)})
    assert llm.chat(HELLO) == 'USER: Hello! ASSISTANT:'
    bare_gguf = write_gguf(tmp_path / 'model.gguf', 'llama', general__basename='SmolLM2')
    assert with_model_defaults(LlamaCpp, {'path': str(bare_gguf)})['meta_template'] == 'smollm2'


def test_an_unknown_model_falls_back_with_a_warning_saying_how_to_choose(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger='lagent')
    llm = build_llm({'type': PromptOnly, 'path': 'acme/unknown-model-7b'})
    assert llm.template is None
    with pytest.warns(UserWarning, match='PromptOnly has no template'):  # and the engine's own warning, on use
        assert llm.chat([{'role': 'system', 'content': 'Be brief.'}, *HELLO]) == 'Be brief.\nHello!'
    (record,) = [r for r in caplog.records if r.name == 'lagent.llms.model_defaults']
    assert record.levelno == logging.WARNING
    text = record.getMessage()
    assert "'acme/unknown-model-7b'" in text and 'PromptOnly' in text
    assert '--template NAME' in text and 'meta_template=NAME' in text and 'register_model_adapter' in text
    assert 'chatml' in text and 'smollm2' in text  # the names to choose from


def test_no_warning_where_the_model_s_own_template_applies(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger='lagent')
    with_model_defaults(TakesMessages, {'path': 'acme/unknown-model-7b'})
    with_model_defaults(LlamaCpp, {})  # the embedded default model
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# ---------------------------------------------------------------------- the command line


def gguf_without_chat_template(source: Path, target: Path) -> Path:
    """A copy of a real GGUF whose ``tokenizer.chat_template`` key is renamed (same length, so
    the file stays valid): llama.cpp and lagent see a model without a chat template."""
    data = source.read_bytes()
    key = b'tokenizer.chat_template'
    assert data.count(key) == 1
    target.write_bytes(data.replace(key, b'tokenizer.chat_templatX'))
    return target


@pytest.mark.slow
def test_lagent_chat_model_picks_the_template_from_gguf_metadata(smollm2_path, tmp_path):
    model = gguf_without_chat_template(smollm2_path, tmp_path / 'model.gguf')  # the name says nothing
    assert describe_model(model).has_chat_template is False
    result = lagent('chat', '--model', str(model), '--debug', '--max-new-tokens', '8', '--temperature', '0', 'Hi')
    assert result.returncode == 0, result.stderr
    assert "model adapter 'smollm2'" in result.stderr
    assert '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n\n--- end of prompt ---' in result.stderr
    assert result.stdout.strip()
