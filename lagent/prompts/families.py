"""Built-in prompt templates of common chat model families.

Each entry links to the official definition of its format. Templates leave out
the BOS token: engines add it when they tokenize the prompt.
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
