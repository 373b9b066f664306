"""Built-in prompt templates of common chat model families.

Each entry links to the official definition of its format: the model's chat
template (``tokenizer_config.json`` on its hub page) or the vendor's docs.
Templates leave out the BOS token: engines add it when they tokenize the prompt.

A meta_template gives each role a fixed ``begin`` and ``end``, so a few things
that Jinja chat templates do cannot be expressed; where a family does one of
them, its comment says what we chose instead:

* a default system prompt injected when the conversation has none (Qwen2.5,
  SmolLM2): we inject nothing, so pass the system message yourself to match;
* the system prompt folded into the first user turn (Llama 2, Mistral): the
  system text opens its own ``[INST]`` block instead;
* a space or newline that separates the assistant's role marker from its
  text in past turns but not in the generation prompt (Llama 2, Mistral,
  Vicuna, DeepSeek, GLM-4): we render the generation prompt exactly (a
  trailing space would change the first generated token) and leave that
  separator out of past turns.

Registration order matters to :func:`~lagent.prompts.match_template`: the
family registered last wins, so specific families come after generic ones.
"""

from __future__ import annotations

from lagent.prompts.registry import register_template

__all__ = ['INTERNLM2_META']

_PLUGIN_NAMES = {'interpreter': '<|interpreter|>', 'plugin': '<|plugin|>'}

# InternLM2 chat format with the plugin/interpreter names of its agent protocol.
# https://huggingface.co/internlm/internlm2-chat-7b/blob/main/tokenizer_config.json
INTERNLM2_META = [
    dict(
        role='system',
        begin=dict(
            with_name='<|im_start|>system name={name}\n',
            without_name='<|im_start|>system\n',
            name=_PLUGIN_NAMES,
        ),
        end='<|im_end|>\n',
    ),
    dict(
        role='user',
        begin=dict(with_name='<|im_start|>user name={name}\n', without_name='<|im_start|>user\n'),
        end='<|im_end|>\n',
    ),
    dict(
        role='assistant',
        begin=dict(
            with_name='<|im_start|>assistant name={name}\n',
            without_name='<|im_start|>assistant\n',
            name=_PLUGIN_NAMES,
        ),
        end='<|im_end|>\n',
    ),
    dict(
        role='environment',
        begin=dict(
            with_name='<|im_start|>environment name={name}\n',
            without_name='<|im_start|>environment\n',
            name=_PLUGIN_NAMES,
        ),
        end='<|im_end|>\n',
    ),
]

register_template(
    'internlm2',
    INTERNLM2_META,
    stop_words=['<|im_end|>', '<|action_end|>'],
    patterns=[r'internlm2', r'internlm-?2', r'intern-?s1'],
    reference='https://huggingface.co/internlm/internlm2_5-7b-chat/blob/main/tokenizer_config.json',
)

# ChatML, used by Qwen, Yi, SmolLM2 and many others.
# https://github.com/openai/openai-python/blob/release-v0.28.0/chatml.md
CHATML_META = [
    dict(role='system', begin='<|im_start|>system\n', end='<|im_end|>\n'),
    dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
    dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
    dict(role='tool', begin='<|im_start|>tool\n', end='<|im_end|>\n'),
]

register_template(
    'chatml',
    CHATML_META,
    stop_words=['<|im_end|>'],
    patterns=[r'chatml'],
    reference='https://github.com/openai/openai-python/blob/release-v0.28.0/chatml.md',
)

# Llama 2 chat: `[INST] user [/INST] assistant </s><s>[INST] ...`, BOS before every turn (the first is the
# engine's). Officially the `<<SYS>>` block sits inside the first `[INST]` together with the first user
# message; here it opens its own `[INST]`, as a fixed per-role begin/end must.
# https://huggingface.co/meta-llama/Llama-2-7b-chat-hf/blob/main/tokenizer_config.json
register_template(
    'llama2',
    [
        dict(role='system', begin='[INST] <<SYS>>\n', end='\n<</SYS>>\n\n'),
        dict(role='user', begin='[INST] ', end=' [/INST]'),
        dict(role='assistant', begin='', end=' </s><s>', generate=True),
    ],
    stop_words=['</s>'],
    patterns=[r'llama-?2(?!\d)', r'codellama'],
    reference='https://huggingface.co/meta-llama/Llama-2-7b-chat-hf/blob/main/tokenizer_config.json',
)

# Llama 3 / 3.1 / 3.2 / 3.3 instruct. The official template strips whitespace around each message;
# Llama 3.1+ also writes a knowledge-cutoff date line into the system turn, which we do not.
# https://huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct/blob/main/tokenizer_config.json
register_template(
    'llama3',
    [
        dict(role='system', begin='<|start_header_id|>system<|end_header_id|>\n\n', end='<|eot_id|>'),
        dict(role='user', begin='<|start_header_id|>user<|end_header_id|>\n\n', end='<|eot_id|>'),
        dict(
            role='assistant',
            begin='<|start_header_id|>assistant<|end_header_id|>\n\n',
            end='<|eot_id|>',
            generate=True,
        ),
        # Llama 3.1 reads tool results in the `ipython` role
        dict(role='tool', begin='<|start_header_id|>ipython<|end_header_id|>\n\n', end='<|eot_id|>'),
    ],
    stop_words=['<|eot_id|>', '<|eom_id|>', '<|end_of_text|>'],
    patterns=[r'llama-?3(?!\d)'],
    reference='https://huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct/blob/main/tokenizer_config.json',
)

# Mistral / Mixtral instruct, v1 tokenizer format (Mistral-7B-Instruct-v0.1/v0.2, Mixtral-8x7B-Instruct):
# ` [INST] user [/INST] assistant</s> [INST] ...`. Officially the system prompt is prepended to the first
# user message inside its `[INST]`; here it opens its own `[INST]`.
# https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.2/blob/main/tokenizer_config.json
register_template(
    'mistral',
    [
        dict(role='system', begin=' [INST] ', end='\n\n'),
        dict(role='user', begin=' [INST] ', end=' [/INST]'),
        dict(role='assistant', begin='', end='</s>', generate=True),
    ],
    stop_words=['</s>'],
    patterns=[r'mistral', r'mixtral'],
    reference='https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.2/blob/main/tokenizer_config.json',
)

# Vicuna v1.1 / v1.3 / v1.5 (FastChat's `vicuna_v1.1` conversation): `SYSTEM USER: ... ASSISTANT: ...</s>`.
# FastChat adds a default system prompt when none is given; we do not.
# https://github.com/lm-sys/FastChat/blob/main/docs/vicuna_weights_version.md#prompt-template
register_template(
    'vicuna',
    [
        dict(role='system', begin='', end=' '),
        dict(role='user', begin='USER: ', end=' '),
        dict(role='assistant', begin='ASSISTANT:', end='</s>', generate=True),
    ],
    stop_words=['</s>'],
    patterns=[r'vicuna'],
    reference='https://github.com/lm-sys/FastChat/blob/main/docs/vicuna_weights_version.md#prompt-template',
)

# Phi-3 / Phi-3.5 instruct.
# https://huggingface.co/microsoft/Phi-3.5-mini-instruct/blob/main/tokenizer_config.json
register_template(
    'phi3',
    [
        dict(role='system', begin='<|system|>\n', end='<|end|>\n'),
        dict(role='user', begin='<|user|>\n', end='<|end|>\n'),
        dict(role='assistant', begin='<|assistant|>\n', end='<|end|>\n', generate=True),
    ],
    stop_words=['<|end|>', '<|endoftext|>'],
    patterns=[r'phi-?3'],
    reference='https://huggingface.co/microsoft/Phi-3.5-mini-instruct/blob/main/tokenizer_config.json',
)

# Gemma / Gemma 2 instruct: the assistant's turn is called `model`. Gemma has no system role (its official
# template rejects one; Gemma 3 folds it into the first user turn): a system message is rendered as a user
# turn of its own. The official template also strips whitespace around each message.
# https://huggingface.co/google/gemma-2-9b-it/blob/main/tokenizer_config.json
register_template(
    'gemma',
    [
        dict(role='user', begin='<start_of_turn>user\n', end='<end_of_turn>\n'),
        dict(role='assistant', begin='<start_of_turn>model\n', end='<end_of_turn>\n', generate=True),
        dict(role='system', fallback_role='user'),
    ],
    stop_words=['<end_of_turn>', '<eos>'],
    patterns=[r'gemma'],
    reference='https://huggingface.co/google/gemma-2-9b-it/blob/main/tokenizer_config.json',
)

# DeepSeek LLM chat and DeepSeek-V2 / V2.5 / Coder-V2: `SYSTEM\n\nUser: ...\n\nAssistant: ...<｜end▁of▁sentence｜>`.
# (DeepSeek-Coder v1 has a format of its own; the `deepseek-ai` organisation name alone says nothing.)
# https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite-Chat/blob/main/tokenizer_config.json
register_template(
    'deepseek',
    [
        dict(role='system', begin='', end='\n\n'),
        dict(role='user', begin='User: ', end='\n\n'),
        dict(role='assistant', begin='Assistant:', end='<｜end▁of▁sentence｜>', generate=True),
    ],
    stop_words=['<｜end▁of▁sentence｜>'],
    patterns=[r'deepseek(?!-?(coder|ai\b))', r'deepseek-?coder-?v2'],
    reference='https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite-Chat/blob/main/tokenizer_config.json',
)

# Baichuan 2 chat: the system text comes first, unmarked; `<reserved_106>` opens a user turn and
# `<reserved_107>` an assistant turn, with no end markers (its `build_chat_input`; no Jinja template).
# https://huggingface.co/baichuan-inc/Baichuan2-7B-Chat/blob/main/generation_utils.py
register_template(
    'baichuan2',
    [
        dict(role='system', begin='', end=''),
        dict(role='user', begin='<reserved_106>', end=''),
        dict(role='assistant', begin='<reserved_107>', end='', generate=True),
    ],
    stop_words=['</s>'],
    patterns=[r'baichuan'],
    reference='https://huggingface.co/baichuan-inc/Baichuan2-7B-Chat/blob/main/generation_utils.py',
)

# Yi chat: ChatML turns, but the system message is written first with no markers at all.
# https://huggingface.co/01-ai/Yi-34B-Chat/blob/main/tokenizer_config.json
register_template(
    'yi',
    [
        dict(role='system', begin='', end=''),
        dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
        dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
    ],
    stop_words=['<|im_end|>', '<|endoftext|>'],
    patterns=[r'\byi-'],
    reference='https://huggingface.co/01-ai/Yi-34B-Chat/blob/main/tokenizer_config.json',
)

# GLM-4 chat: `<|role|>\ncontent` with no end markers; tool results come back as `observation`. The
# generation prompt is a bare `<|assistant|>` (the model writes the newline). The `[gMASK]<sop>` prefix is
# left to the engine, like a BOS token.
# https://huggingface.co/THUDM/glm-4-9b-chat/blob/main/tokenizer_config.json
register_template(
    'glm4',
    [
        dict(role='system', begin='<|system|>\n', end=''),
        dict(role='user', begin='<|user|>\n', end=''),
        dict(role='assistant', begin='<|assistant|>', end='', generate=True),
        dict(role='tool', begin='<|observation|>\n', end=''),
    ],
    stop_words=['<|user|>', '<|observation|>', '<|endoftext|>'],
    patterns=[r'glm-?4'],
    reference='https://huggingface.co/THUDM/glm-4-9b-chat/blob/main/tokenizer_config.json',
)

# Qwen / Qwen1.5 / Qwen2 / Qwen2.5 chat: ChatML. Qwen2.5's template adds the default system prompt
# "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." when none is given (we do not),
# and wraps tool results in `<tool_response>` inside a user turn (consecutive results share one turn there).
# https://huggingface.co/Qwen/Qwen2.5-7B-Instruct/blob/main/tokenizer_config.json
register_template(
    'qwen',
    [
        *CHATML_META[:3],
        dict(role='tool', begin='<|im_start|>user\n<tool_response>\n', end='\n</tool_response><|im_end|>\n'),
    ],
    stop_words=['<|im_end|>', '<|endoftext|>'],
    patterns=[r'qwen', r'qwq'],
    reference='https://huggingface.co/Qwen/Qwen2.5-7B-Instruct/blob/main/tokenizer_config.json',
)

# SmolLM2 instruct: ChatML. Its template adds the default system prompt "You are a helpful AI assistant
# named SmolLM, trained by Hugging Face" when none is given (we do not).
# https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/tokenizer_config.json
register_template(
    'smollm2',
    CHATML_META[:3],
    stop_words=['<|im_end|>', '<|endoftext|>'],
    patterns=[r'smollm'],
    reference='https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/tokenizer_config.json',
)

# DeepSeek-V3 and DeepSeek-R1 (and the R1 distills of Qwen and Llama): `<｜User｜>` / `<｜Assistant｜>`
# markers, the system text first and unmarked. R1's template also drops the reasoning (`</think>` and
# before) from past assistant turns, and newer ones open the reply with `<think>\n`; we do neither.
# https://huggingface.co/deepseek-ai/DeepSeek-R1/blob/main/tokenizer_config.json
register_template(
    'deepseek3',
    [
        dict(role='system', begin='', end=''),
        dict(role='user', begin='<｜User｜>', end=''),
        dict(role='assistant', begin='<｜Assistant｜>', end='<｜end▁of▁sentence｜>', generate=True),
    ],
    stop_words=['<｜end▁of▁sentence｜>'],
    patterns=[r'deepseek-?v3', r'deepseek-?r1'],
    reference='https://huggingface.co/deepseek-ai/DeepSeek-R1/blob/main/tokenizer_config.json',
)

# ---------------------------------------------------------------------- vision families
# Their templates declare an image placeholder: an image part of a message becomes that text in the prompt
# (the engine's processor then expands it into the image's tokens).

# Qwen2-VL / Qwen2.5-VL instruct: ChatML; each image is `<|vision_start|><|image_pad|><|vision_end|>`. Like Qwen2.5,
# the official template adds the default system prompt "You are a helpful assistant." when none is given (we do not).
# https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct/blob/main/chat_template.json
register_template(
    'qwen2-vl',
    CHATML_META[:3],
    stop_words=['<|im_end|>', '<|endoftext|>'],
    patterns=[r'qwen2(\.5|_5)?[-_]?vl', r'qvq'],
    reference='https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct/blob/main/chat_template.json',
    image_placeholder='<|vision_start|><|image_pad|><|vision_end|>',
)

# InternVL 2 / 2.5 chat: ChatML turns; an image is `<image>` in the question, which the model's own code expands
# into `<img><IMG_CONTEXT>...</img>`. Its default system prompt (a Chinese self-introduction) is left to the caller.
# https://huggingface.co/OpenGVLab/InternVL2_5-8B/blob/main/conversation.py
register_template(
    'internvl',
    CHATML_META[:3],
    stop_words=['<|im_end|>', '<|endoftext|>'],
    patterns=[r'internvl'],
    reference='https://huggingface.co/OpenGVLab/InternVL2_5-8B/blob/main/conversation.py',
    image_placeholder='<image>',
)

# LLaVA 1.5 (llava-hf): `USER: <image>\n... ASSISTANT: ...`, the Vicuna v1 format with an `<image>` line per image.
# https://huggingface.co/llava-hf/llava-1.5-7b-hf
register_template(
    'llava',
    [
        dict(role='system', begin='', end=' '),
        dict(role='user', begin='USER: ', end=' '),
        dict(role='assistant', begin='ASSISTANT:', end='</s>', generate=True),
    ],
    stop_words=['</s>'],
    patterns=[r'llava[-_]?v?1[._]5', r'^llava$'],  # `llava`: the model_type of its config.json
    reference='https://huggingface.co/llava-hf/llava-1.5-7b-hf',
    image_placeholder='<image>\n',
)
