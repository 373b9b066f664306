"""SFT examples on SmolLM2's own tokenizer and chat template (from its GGUF): the labelled
tokens decode to exactly the assistant's turns and to nothing of the other turns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from lagent.actions.calculator import Calculator
from lagent.agents import FunctionCallAgent
from lagent.data import (
    IGNORE_INDEX,
    ChatTokenizer,
    GGUFTokenizer,
    HFTokenizer,
    SFTExample,
    build_sft_example,
    export_sft,
    load_tokenizer,
)
from lagent.llms import ScriptedLLM
from lagent.prompts import ChatTemplate
from lagent.schema import FunctionCall, ToolCall
from tests.fixtures.smollm2_tokenizer import smollm2_hf_tokenizer
from tests.prompts import official_templates as official
from tests.test_cli import lagent

END = '<|im_end|>'
SYSTEM = 'You are a terse assistant.'
MULTI_TURN = [
    {'role': 'system', 'content': SYSTEM},
    {'role': 'user', 'content': 'Name a fruit.'},
    {'role': 'assistant', 'content': 'Apple.'},
    {'role': 'user', 'content': 'Another one, in French?'},
    {'role': 'assistant', 'content': 'Poire — une poire.'},
    {'role': 'user', 'content': 'Thanks!'},
    {'role': 'assistant', 'content': 'You are welcome.'},
]
CALL = {'id': 'c1', 'type': 'function', 'function': {'name': 'Calculator', 'arguments': '{"expression": "6*7"}'}}
TOOL_CALLS = [
    {'role': 'user', 'content': 'What is 6*7?'},
    {'role': 'assistant', 'content': None, 'tool_calls': [CALL]},
    {'role': 'tool', 'tool_call_id': 'c1', 'content': '42'},
    {'role': 'assistant', 'content': 'It is 42.'},
]
TOOLS = [
    {
        'type': 'function',
        'function': {
            'name': 'Calculator',
            'description': 'Evaluate arithmetic.',
            'parameters': {'type': 'object', 'properties': {'expression': {'type': 'string'}}},
        },
    }
]
CAT = {'type': 'image_url', 'image_url': {'url': 'https://example.com/cat.png'}}
IMAGES = [
    {'role': 'user', 'content': [{'type': 'text', 'text': 'What animal is this? '}, CAT]},
    {'role': 'assistant', 'content': 'A cat.'},
    {'role': 'user', 'content': [CAT, {'type': 'text', 'text': ' And this one, again?'}]},
    {'role': 'assistant', 'content': 'The same cat.'},
]


@pytest.fixture(scope='module')
def tokenizer(smollm2_path: Path) -> Iterator[ChatTokenizer]:
    tok = load_tokenizer(smollm2_path)
    yield tok
    tok.close()


def labelled_texts(example: SFTExample, tokenizer: ChatTokenizer) -> list[str]:
    return [tokenizer.decode(example.input_ids[start:end]) for start, end in example.labelled_spans()]


def unlabelled_text(example: SFTExample, tokenizer: ChatTokenizer) -> str:
    kept = [token for token, label in zip(example.input_ids, example.labels, strict=True) if label == IGNORE_INDEX]
    return tokenizer.decode(kept)


def assert_well_formed(example: SFTExample) -> None:
    assert len(example.input_ids) == len(example.labels)
    for token, label in zip(example.input_ids, example.labels, strict=True):
        assert label in (IGNORE_INDEX, token)


def test_the_tokenizer_is_smollm2_s_own(tokenizer):
    assert isinstance(tokenizer, GGUFTokenizer)
    assert tokenizer.chat_template is not None and '<|im_start|>' in tokenizer.chat_template.source
    assert tokenizer.encode('<|im_start|>user') == [1, 4093]  # special tokens are parsed as such
    assert not tokenizer.add_bos


def test_multi_turn_labels_are_exactly_the_assistant_turns(tokenizer):
    example = build_sft_example(MULTI_TURN, tokenizer)
    assert_well_formed(example)
    assert labelled_texts(example, tokenizer) == ['Apple.' + END, 'Poire — une poire.' + END, 'You are welcome.' + END]
    # input_ids are the model's own template, rendered whole
    own = tokenizer.chat_template.render(MULTI_TURN, add_generation_prompt=False)
    assert tokenizer.decode(example.input_ids) == own
    # the rest is every other turn, untouched, and none of it is labelled
    rest = unlabelled_text(example, tokenizer)
    for message in MULTI_TURN:
        if message['role'] != 'assistant':
            assert f'<|im_start|>{message["role"]}\n{message["content"]}{END}' in rest
    labelled = ''.join(labelled_texts(example, tokenizer))
    for fragment in (SYSTEM, 'fruit', 'French', 'Thanks', '<|im_start|>', 'user', 'system'):
        assert fragment not in labelled


def test_labels_start_where_the_model_starts_writing(tokenizer):
    example = build_sft_example(MULTI_TURN[:3], tokenizer)
    start, end = example.labelled_spans()[0]
    prompt = tokenizer.chat_template.render(MULTI_TURN[:2], add_generation_prompt=True)
    assert example.input_ids[:start] == tokenizer.encode(prompt)  # what generation would be asked
    assert example.input_ids[start:end] == tokenizer.encode('Apple.' + END)  # what the model answers
    assert end == len(example.input_ids) - 1 and tokenizer.decode(example.input_ids[end:]) == '\n'


def test_tool_calls_are_labelled_in_the_agent_text_protocol_when_the_template_has_no_tools(tokenizer):
    assert 'tool_calls' not in tokenizer.chat_template.source  # SmolLM2's template cannot show native calls
    example = build_sft_example(TOOL_CALLS, tokenizer, tools=TOOLS)
    assert_well_formed(example)
    assert labelled_texts(example, tokenizer) == [
        '<tool_call>\n{"name": "Calculator", "arguments": {"expression": "6*7"}}\n</tool_call>' + END,
        'It is 42.' + END,
    ]
    rest = unlabelled_text(example, tokenizer)
    assert '<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>' in rest  # the result, as a user turn
    assert '"description": "Evaluate arithmetic."' in rest and '<|im_start|>system\n' in rest  # the tools
    labelled = ''.join(labelled_texts(example, tokenizer))
    assert '<tool_response>' not in labelled and '6*7?' not in labelled and 'Evaluate' not in labelled
    assert example.messages == TOOL_CALLS_AS_GIVEN and example.tools == TOOLS  # the data itself is kept


TOOL_CALLS_AS_GIVEN = [
    TOOL_CALLS[0],
    {'role': 'assistant', 'tool_calls': [CALL]},  # content None is left out, as in every OpenAI dump
    *TOOL_CALLS[2:],
]


def test_the_text_protocol_is_what_the_agent_s_text_path_asks_for(tokenizer):
    """The agent run on the text path writes the same turns the export labels."""
    reply = '<tool_call>\n{"name": "Calculator", "arguments": {"expression": "6*7"}}\n</tool_call>'
    agent = FunctionCallAgent(ScriptedLLM([reply, 'It is 42.']), [Calculator()], native=False, system_prompt='')
    agent.chat('What is 6*7?')
    text_run = build_sft_example(agent.memory.messages, tokenizer, tools=agent.executor.tool_schemas())
    native_call = ToolCall(id='c1', function=FunctionCall(name='Calculator', arguments='{"expression": "6*7"}'))
    native_agent = FunctionCallAgent(ScriptedLLM([native_call, 'It is 42.']), [Calculator()], system_prompt='')
    native_agent.chat('What is 6*7?')
    assert native_agent.native
    native_run = build_sft_example(native_agent.memory.messages, tokenizer, tools=agent.executor.tool_schemas())
    assert native_run.input_ids == text_run.input_ids and native_run.labels == text_run.labels


def test_a_template_with_native_tool_calls_renders_and_labels_them(tokenizer):
    qwen = ChatTemplate(official.QWEN25[1])
    example = build_sft_example(TOOL_CALLS, tokenizer, tools=TOOLS, chat_template=qwen)
    assert_well_formed(example)
    assert labelled_texts(example, tokenizer) == [
        '<tool_call>\n{"name": "Calculator", "arguments": {"expression": "6*7"}}\n</tool_call>' + END,
        'It is 42.' + END,
    ]
    assert tokenizer.decode(example.input_ids) == qwen.render(TOOL_CALLS, tools=TOOLS, add_generation_prompt=False)
    rest = unlabelled_text(example, tokenizer)
    assert '<tools>' in rest and '<tool_response>\n42\n</tool_response>' in rest


def test_an_image_conversation_keeps_its_placeholders(tokenizer):
    example = build_sft_example(IMAGES, tokenizer)
    assert_well_formed(example)
    assert labelled_texts(example, tokenizer) == ['A cat.' + END, 'The same cat.' + END]
    rest = unlabelled_text(example, tokenizer)
    assert '<|im_start|>user\nWhat animal is this? <image><|im_end|>' in rest
    assert '<|im_start|>user\n<image> And this one, again?<|im_end|>' in rest
    assert '<image>' not in ''.join(labelled_texts(example, tokenizer))
    assert example.messages == IMAGES  # the image references themselves stay in the data
    other = build_sft_example(IMAGES, tokenizer, image_placeholder='<|image|>')
    assert unlabelled_text(other, tokenizer).count('<|image|>') == 2


def test_a_template_that_places_images_itself_gets_the_parts(tokenizer):
    source = (
        '{% for m in messages %}<|im_start|>{{ m.role }}\n'
        '{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}'
        "{% if p.type == 'image_url' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ p.text }}{% endif %}"
        '{% endfor %}{% endif %}<|im_end|>\n{% endfor %}'
        '{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}'
    )
    example = build_sft_example(IMAGES, tokenizer, chat_template=source)
    rest = unlabelled_text(example, tokenizer)
    assert rest.count('<|vision_start|><|image_pad|><|vision_end|>') == 2 and '<image>' not in rest
    assert labelled_texts(example, tokenizer) == ['A cat.' + END, 'The same cat.' + END]


def test_a_hugging_face_tokenizer_directory_gives_the_same_examples(smollm2_path, tokenizer, tmp_path):
    smollm2_hf_tokenizer(smollm2_path).save_pretrained(tmp_path / 'smollm2')
    hf = load_tokenizer(tmp_path / 'smollm2')  # a model directory: AutoTokenizer
    assert isinstance(hf, HFTokenizer) and hf.chat_template.source == tokenizer.chat_template.source
    for conversation in (MULTI_TURN, TOOL_CALLS, IMAGES):
        ours = build_sft_example(conversation, tokenizer, tools=TOOLS)
        theirs = build_sft_example(conversation, hf, tools=TOOLS)
        assert theirs.input_ids == ours.input_ids and theirs.labels == ours.labels


def test_a_template_that_rewrites_past_turns_cannot_be_labelled(tokenizer):
    r1 = ChatTemplate(official.DEEPSEEK_R1_DISTILL[1])
    reasoning = [
        {'role': 'user', 'content': 'Hi'},
        {'role': 'assistant', 'content': '<think>greet</think>Hello!'},
        {'role': 'user', 'content': 'Bye'},
        {'role': 'assistant', 'content': 'Bye!'},
    ]
    with pytest.raises(ValueError, match='up to message 1 differently once later messages follow'):
        build_sft_example(reasoning, tokenizer, chat_template=r1)


def test_clear_errors(tokenizer):
    with pytest.raises(ValueError, match='no assistant turn'):
        build_sft_example(MULTI_TURN[:2], tokenizer)
    saved, tokenizer.chat_template = tokenizer.chat_template, None
    try:
        with pytest.raises(ValueError, match='has no chat template; give one'):
            build_sft_example(MULTI_TURN, tokenizer)
    finally:
        tokenizer.chat_template = saved


def test_bos_is_added_once_where_the_tokenizer_asks_for_it(tokenizer):
    class WithBos(ChatTokenizer):
        chat_template = ChatTemplate('{{ bos_token if with_bos }}{% for m in messages %}[{{ m.content }}]{% endfor %}')
        bos_token, bos_token_id, add_bos = '<|im_start|>', 1, True

        def encode(self, text):
            return tokenizer.encode(text)

        def decode(self, ids):
            return tokenizer.decode(ids)

    example = build_sft_example(MULTI_TURN[1:3], WithBos())
    assert example.input_ids[0] == 1 and example.input_ids.count(1) == 1
    WithBos.chat_template.context['with_bos'] = True  # the template writes BOS itself: not added again
    example = build_sft_example(MULTI_TURN[1:3], WithBos())
    assert example.input_ids.count(1) == 1


# ---------------------------------------------------------------------- files and the command line


def write_runs(path: Path) -> Path:
    records = [
        {'messages': MULTI_TURN, 'status': 'END'},
        {'messages': MULTI_TURN, 'status': 'END'},  # a duplicate
        {'messages': TOOL_CALLS, 'tools': TOOLS, 'status': 0},
        {'messages': TOOL_CALLS[:2], 'tools': TOOLS, 'status': 'SESSION_OUT_OF_LIMIT'},  # cut off
        {'messages': IMAGES},
    ]
    path.write_text(''.join(json.dumps(record) + '\n' for record in records), encoding='utf-8')
    return path


def test_export_sft_writes_one_line_per_kept_conversation(tmp_path, tokenizer):
    runs = write_runs(tmp_path / 'runs.jsonl')
    report = export_sft([runs], tokenizer, tmp_path / 'sft.jsonl', drop_failed=True, deduplicate=True)
    assert (report.read, report.written, report.dropped) == (5, 3, {'duplicate': 1, 'failed': 1})
    lines = [json.loads(line) for line in (tmp_path / 'sft.jsonl').read_text(encoding='utf-8').splitlines()]
    assert [line['messages'] for line in lines] == [MULTI_TURN, TOOL_CALLS_AS_GIVEN, IMAGES]
    assert 'tools' in lines[1] and 'tools' not in lines[0]
    for line, conversation in zip(lines, (MULTI_TURN, TOOL_CALLS, IMAGES), strict=True):
        example = build_sft_example(conversation, tokenizer, tools=line.get('tools'))
        assert line['input_ids'] == example.input_ids and line['labels'] == example.labels
    only_end = export_sft([runs], tokenizer, tmp_path / 'end.jsonl', statuses=['END'])
    assert (only_end.written, only_end.dropped) == (3, {'status': 2})


def test_export_sft_loads_the_tokenizer_from_a_path_and_frees_it(tmp_path, smollm2_path, tokenizer, monkeypatch):
    closed = []
    monkeypatch.setattr(GGUFTokenizer, 'close', lambda self: closed.append(self))
    runs = write_runs(tmp_path / 'runs.jsonl')
    export_sft([runs], smollm2_path, tmp_path / 'by_path.jsonl', drop_failed=True)
    export_sft([runs], tokenizer, tmp_path / 'given.jsonl', drop_failed=True)
    assert (tmp_path / 'by_path.jsonl').read_text() == (tmp_path / 'given.jsonl').read_text()
    assert len(closed) == 1 and closed[0] is not tokenizer  # only the one it loaded


def test_export_sft_leaves_nothing_half_written(tmp_path, tokenizer):
    runs = tmp_path / 'runs.jsonl'
    runs.write_text(json.dumps(MULTI_TURN) + '\n' + json.dumps(MULTI_TURN[:2]) + '\n', encoding='utf-8')
    out = tmp_path / 'sft.jsonl'
    out.write_text('previous\n')
    with pytest.raises(ValueError, match=r'runs\.jsonl:2: the conversation has no assistant turn'):
        export_sft([runs], tokenizer, out)
    assert out.read_text() == 'previous\n' and sorted(p.name for p in tmp_path.iterdir()) == ['runs.jsonl', 'sft.jsonl']


@pytest.mark.slow
def test_lagent_export_sft(tmp_path, smollm2_path, tokenizer):
    runs = write_runs(tmp_path / 'runs.jsonl')
    tools = tmp_path / 'tools.json'
    tools.write_text(json.dumps(TOOLS))
    memory_run = tmp_path / 'memory.json'
    memory_run.write_text(json.dumps({'version': 1, 'messages': TOOL_CALLS}))
    out = tmp_path / 'sft.jsonl'
    args = ['export-sft', str(runs), str(memory_run), '--tokenizer', str(smollm2_path), '--out', str(out)]
    result = lagent(*args, '--tools', str(tools), '--drop-failed', '--dedup')
    assert result.returncode == 0, result.stderr
    assert 'lagent export-sft: wrote 4 examples to' in result.stderr
    assert 'from 6 conversations (left out: 1 duplicate, 1 failed)' in result.stderr
    lines = [json.loads(line) for line in out.read_text(encoding='utf-8').splitlines()]
    assert lines[-1]['tools'] == TOOLS  # the memory file got the tools of --tools
    assert lines[-1]['input_ids'] == build_sft_example(TOOL_CALLS, tokenizer, tools=TOOLS).input_ids
    result = lagent('export-sft', str(runs), '--tokenizer', str(smollm2_path), '--out', str(out), '--status', 'END')
    assert result.returncode == 0 and 'wrote 3 examples' in result.stderr and '(left out: 2 status)' in result.stderr
    bad = lagent('export-sft', str(tools), '--tokenizer', str(smollm2_path), '--out', str(out))
    assert bad.returncode == 1 and 'lagent: error: ' in bad.stderr and 'tools.json' in bad.stderr
