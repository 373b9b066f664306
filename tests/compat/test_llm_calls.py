"""lagent 0.2's LLM calls, as its users wrote them: positional ``session_id``,
``stream_chat(..., stream=True)``, ``do_sample``, ``gen_params[...]`` reads,
``update_gen_params``, ``template_parser``, and the original module paths and names."""

from __future__ import annotations

import warnings

import pytest

from lagent.llms import GPTAPI, INTERNLM2_META, ScriptedLLM
from lagent.schema import ModelStatusCode

HELLO = [{'role': 'user', 'content': 'hi'}]


def test_positional_session_id_and_stream_flag() -> None:
    llm = ScriptedLLM(['one', 'two', 'three', 'four'], chunk_size=2)
    assert llm.generate('hello', 2967) == 'one'
    steps = list(llm.stream_chat(HELLO, 2967, stream=True, sequence_start=True, sequence_end=True))
    assert [status for status, _, _ in steps] == [
        ModelStatusCode.STREAM_ING,
        ModelStatusCode.STREAM_ING,
        ModelStatusCode.END,
    ]
    assert steps[-1][1] == 'two'
    [(status, text, response)] = list(llm.stream_chat(HELLO, stream=False))
    assert status == ModelStatusCode.END and text == 'three' and response.text == 'three'
    with pytest.raises(ValueError, match='session_id'):
        llm.generate('hello', session_id=[1])  # still validated


async def test_async_twins_take_the_same_call_shape() -> None:
    llm = ScriptedLLM(['one', 'two'])
    assert await llm.agenerate('hello', 7) == 'one'
    steps = [step async for step in llm.astream_chat(HELLO, 7, stream=False)]
    assert [(status, text) for status, text, _ in steps] == [(ModelStatusCode.END, 'two')]


def test_generation_settings_read_like_a_dict() -> None:
    llm = ScriptedLLM([], max_new_tokens=64, top_k=None)
    assert llm.gen_params['max_new_tokens'] == 64 and llm.gen_params['top_k'] is None
    assert 'temperature' in llm.gen_params and llm.gen_params.get('nope', 'default') == 'default'
    with pytest.raises(KeyError):
        llm.gen_params['nope']
    updated = llm.update_gen_params(max_new_tokens=8, temperature=0)
    assert isinstance(updated, dict) and updated['max_new_tokens'] == 8 and updated['temperature'] == 0
    assert llm.gen_params['max_new_tokens'] == 64  # unchanged
    with pytest.raises(ValueError, match='max_new_tokenz'):
        llm.update_gen_params(max_new_tokenz=8)


def test_do_sample_false_means_greedy_with_a_warning_naming_temperature() -> None:
    with pytest.warns(DeprecationWarning, match='temperature=0'):
        llm = ScriptedLLM(['x'], do_sample=False)
    assert llm.gen_params.temperature == 0
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        assert llm.params(do_sample=True).temperature == 0  # True changes nothing
        with pytest.raises(ValueError, match='do_sample must be True or False'):
            llm.params(do_sample='yes')


def test_template_parser_shows_what_the_llm_sends() -> None:
    prompted = ScriptedLLM([], meta_template=INTERNLM2_META)
    assert prompted.template_parser(HELLO) == '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n'
    assert ScriptedLLM([]).template_parser(HELLO) == HELLO


def test_original_module_paths_and_names() -> None:
    from lagent.llms import BaseAPIModel, BaseLLM, BaseModel, HFTransformer, HFTransformerCasualLM, HFTransformerChat
    from lagent.llms.base_api import APITemplateParser
    from lagent.llms.base_llm import LMTemplateParser
    from lagent.llms.lmdepoly_wrapper import LMDeployClient, LMDeployPipeline, LMDeployServer, TritonClient  # noqa: F401
    from lagent.llms.meta_template import INTERNLM2_META as META
    from lagent.llms.openai import GPTAPI as OldGPTAPI
    from lagent.llms.openai import OPENAI_API_BASE

    assert BaseModel is BaseLLM and BaseAPIModel is BaseLLM and OldGPTAPI is GPTAPI
    assert HFTransformerCasualLM is HFTransformer and HFTransformerChat is HFTransformer
    assert META is INTERNLM2_META and OPENAI_API_BASE.endswith('/chat/completions')
    assert LMTemplateParser(META)(HELLO) == ScriptedLLM([], meta_template=META).template_parser(HELLO)
    api_meta = [dict(role='user', api_role='user'), dict(role='environment', api_role='system')]
    assert APITemplateParser(api_meta)([{'role': 'environment', 'content': 'x'}]) == [
        {'role': 'system', 'content': 'x'}
    ]


def test_gptapi_takes_the_original_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-from-env-123')
    llm = GPTAPI(
        model_type='gpt-3.5-turbo', key=['sk-listed-456'], openai_api_base='http://127.0.0.1:9/v1/chat/completions'
    )
    assert llm.url == 'http://127.0.0.1:9/v1' and 'sk-listed-456' not in repr(llm)
    assert GPTAPI(model_type='m', query_per_second=2).url == 'https://api.openai.com/v1'
    with pytest.raises(ValueError, match='one API key'):
        GPTAPI(key=['a', 'b'])


@pytest.mark.slow
def test_hf_transformer_with_tokenizer_path_and_model_kwargs(smollm2_path) -> None:
    from lagent.llms import HFTransformerCasualLM

    llm = HFTransformerCasualLM(
        path=str(smollm2_path),
        tokenizer_path=str(smollm2_path),
        model_kwargs={'low_cpu_mem_usage': True},
        tokenizer_kwargs={'use_fast': True},
        meta_template=INTERNLM2_META,
        max_new_tokens=3,
        top_k=None,
        temperature=0,
    )
    with llm:
        assert isinstance(llm.generate('The capital of France is', 2967), str)
        steps = list(llm.stream_chat(HELLO, 2967, stream=True))
        assert steps[-1][0] == ModelStatusCode.END
