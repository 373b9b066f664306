"""Jinja chat templates: rendering, loading (string, file, tokenizer_config.json,
GGUF metadata) and the sandbox."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from lagent.llms.default_model import smollm2_gguf_path
from lagent.prompts import ChatTemplate, UnsafeTemplateError
from lagent.prompts.chat_template import TemplateLimitError
from lagent.prompts.gguf_metadata import read_gguf_metadata

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CONVERSATION = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
EXPECTED = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n'

TOOLS_TEMPLATE = (
    '{{ bos_token }}{% if tools %}TOOLS:{% for tool in tools %} {{ tool.function.name }}'
    '={{ tool.function.parameters | tojson }}{% endfor %}{{ "\\n" }}{% endif %}'
    '{% for m in messages %}{{ m.role }}: {{ m.content }}{{ eos_token }}\n{% endfor %}'
    '{% if add_generation_prompt %}assistant:{% endif %}'
)
WEATHER_TOOL = {
    'type': 'function',
    'function': {'name': 'weather', 'parameters': {'type': 'object', 'properties': {'city': {'type': 'string'}}}},
}


# ---------------------------------------------------------------------- rendering


def test_render_with_and_without_generation_prompt():
    template = ChatTemplate(CHATML)
    assert template.render(CONVERSATION) == EXPECTED + '<|im_start|>assistant\n'
    assert template.render(CONVERSATION, add_generation_prompt=False) == EXPECTED


def test_render_passes_tools_bos_and_eos():
    template = ChatTemplate(TOOLS_TEMPLATE, bos_token='<s>', eos_token='</s>')
    prompt = template.render([{'role': 'user', 'content': 'Rain?'}], tools=[WEATHER_TOOL])
    assert prompt == (
        '<s>TOOLS: weather={"type": "object", "properties": {"city": {"type": "string"}}}\nuser: Rain?</s>\nassistant:'
    )
    assert template.render([{'role': 'user', 'content': 'Rain?'}]) == '<s>user: Rain?</s>\nassistant:'


def test_tojson_keeps_unicode_and_takes_an_indent():
    template = ChatTemplate('{{ messages[0].content | tojson }}|{{ {"a": 1} | tojson(indent=2) }}')
    assert template.render([{'role': 'user', 'content': 'héllo 你好'}]) == '"héllo 你好"|{\n  "a": 1\n}'


def test_messages_reach_the_template_in_openai_form():
    template = ChatTemplate(
        '{% for m in messages %}{{ m.role }}/{{ m.name }}/{{ m.tool_call_id }}/'
        '{% if m.tool_calls %}{{ m.tool_calls[0].function.name }}{% endif %};{% endfor %}'
    )
    call = {'id': 'c1', 'type': 'function', 'function': {'name': 'weather', 'arguments': '{}'}}
    prompt = template.render(
        [
            {'role': 'user', 'content': 'x', 'name': 'bob'},
            {'role': 'assistant', 'content': None, 'tool_calls': [call]},
            {'role': 'tool', 'content': 'sunny', 'tool_call_id': 'c1'},
        ],
        add_generation_prompt=False,
    )
    assert prompt == 'user/bob//;assistant///weather;tool//c1/;'


def test_extra_context_from_the_constructor_and_the_call():
    template = ChatTemplate('{{ greeting }} {{ who }}', context={'greeting': 'hello', 'who': 'world'})
    assert template.render([]) == 'hello world'
    assert template.render([], who='there') == 'hello there'


def test_strftime_now_is_available():
    assert ChatTemplate('{{ strftime_now("%Y") }}').render([]).isdigit()


def test_raise_exception_becomes_value_error_with_its_message():
    template = ChatTemplate(
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('No system role!') }}{% endif %}"
    )
    with pytest.raises(ValueError, match='No system role!'):
        template.render(CONVERSATION)


@pytest.mark.parametrize('source', ['{% for m in messages %}', '{{ unclosed', '{% if %}{% endif %}'])
def test_syntax_errors_raise_value_error(source):
    with pytest.raises(ValueError, match='does not parse'):
        ChatTemplate(source)


@pytest.mark.parametrize('source', ['', '   \n', None, 42])
def test_an_empty_template_is_rejected(source):
    with pytest.raises(ValueError, match='non-empty string'):
        ChatTemplate(source)


def test_runtime_template_errors_raise_value_error():
    with pytest.raises(ValueError, match='chat template failed'):
        ChatTemplate('{{ 1 / 0 if false else messages.missing.deeper }}').render([])


def test_bare_strings_are_not_messages():
    with pytest.raises(ValueError, match='bare string'):
        ChatTemplate(CHATML).render(['raw'])


def test_repr_shows_the_start_of_the_template():
    assert repr(ChatTemplate(CHATML)).startswith('ChatTemplate("{% for message in messages %}')


# ---------------------------------------------------------------------- the sandbox


@pytest.mark.parametrize(
    'source',
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        '{{ cycler.__init__.__globals__ }}',
        '{{ joiner.__init__.__globals__.os }}',
        '{{ namespace.__init__.__globals__ }}',
        '{{ raise_exception.__globals__ }}',
        '{{ messages.append(1) }}',
        '{{ messages[0].update({"role": "system"}) }}',
        '{{ messages.__class__ }}',
        "{{ (messages | first).pop('role') }}",
        '{{ lipsum.__globals__ }}',
        "{{ self.__init__.__globals__['__builtins__'] }}",
        '{% set x = [] %}{{ x.extend([1]) }}',
    ],
)
def test_templates_reaching_python_internals_raise_unsafe_template_error(source):
    with pytest.raises(UnsafeTemplateError):
        ChatTemplate(source).render([{'role': 'user', 'content': 'hi'}])


def test_unsafe_template_error_is_a_value_error():
    assert issubclass(UnsafeTemplateError, ValueError)


def test_the_sandbox_does_not_change_the_callers_messages():
    messages = [{'role': 'user', 'content': 'hi'}]
    with pytest.raises(UnsafeTemplateError):
        ChatTemplate('{{ messages[0].update({"content": "pwned"}) }}').render(messages)
    assert messages == [{'role': 'user', 'content': 'hi'}]


def test_namespace_assignment_still_works_in_the_sandbox():
    # real templates (Llama 3.1, Mistral) count with namespace(); that must keep working
    template = ChatTemplate(
        '{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}'
    )
    assert template.render(CONVERSATION) == '2'


# ---------------------------------------------------------------------- loading from files


def test_from_jinja_file(tmp_path: Path):
    path = tmp_path / 'chatml.jinja'
    path.write_text(CHATML, encoding='utf-8')
    assert ChatTemplate.from_file(path).render(CONVERSATION) == EXPECTED + '<|im_start|>assistant\n'
    assert ChatTemplate.from_file(str(path), bos_token='<s>').bos_token == '<s>'


def test_from_tokenizer_config_takes_the_template_and_eos(tmp_path: Path):
    path = tmp_path / 'tokenizer_config.json'
    config = {'chat_template': TOOLS_TEMPLATE, 'eos_token': {'content': '<|im_end|>', 'special': True}}
    path.write_text(json.dumps(config), encoding='utf-8')
    template = ChatTemplate.from_file(path)
    assert template.eos_token == '<|im_end|>'
    assert template.render([{'role': 'user', 'content': 'x'}]) == 'user: x<|im_end|>\nassistant:'
    assert ChatTemplate.from_file(path, eos_token='</s>').eos_token == '</s>'


def test_from_tokenizer_config_with_named_templates_takes_the_default(tmp_path: Path):
    path = tmp_path / 'tokenizer_config.json'
    config = {
        'chat_template': [{'name': 'tool_use', 'template': 'TOOLS'}, {'name': 'default', 'template': 'DEFAULT'}],
        'eos_token': '</s>',
    }
    path.write_text(json.dumps(config), encoding='utf-8')
    template = ChatTemplate.from_file(path)
    assert template.render([]) == 'DEFAULT'
    assert template.eos_token == '</s>'


def test_tokenizer_config_without_a_template_is_rejected(tmp_path: Path):
    path = tmp_path / 'tokenizer_config.json'
    path.write_text(json.dumps({'eos_token': '</s>'}), encoding='utf-8')
    with pytest.raises(ValueError, match='has no chat_template'):
        ChatTemplate.from_file(path)


# ---------------------------------------------------------------------- GGUF metadata


def _gguf_string(text: str) -> bytes:
    data = text.encode('utf-8')
    return struct.pack('<Q', len(data)) + data


def _gguf_value(value_type: int, value) -> bytes:
    scalar = {0: '<B', 1: '<b', 2: '<H', 3: '<h', 4: '<I', 5: '<i', 6: '<f', 7: '<?', 10: '<Q', 11: '<q', 12: '<d'}
    if value_type == 8:
        return _gguf_string(value)
    if value_type == 9:
        item_type, items = value
        return struct.pack('<IQ', item_type, len(items)) + b''.join(_gguf_value(item_type, item) for item in items)
    return struct.pack(scalar[value_type], value)


def write_gguf(path: Path, entries: list[tuple[str, int, object]], *, version: int = 3) -> Path:
    """A GGUF header as the format documents it: magic, version, tensor count,
    key/value count, then each key (string), value type (uint32) and value."""
    body = b''.join(
        _gguf_string(key) + struct.pack('<I', kind) + _gguf_value(kind, value) for key, kind, value in entries
    )
    path.write_bytes(b'GGUF' + struct.pack('<I', version) + struct.pack('<QQ', 0, len(entries)) + body)
    return path


TINY_ENTRIES = [
    ('general.architecture', 8, 'llama'),
    ('general.u8', 0, 7),
    ('general.i8', 1, -7),
    ('general.u16', 2, 65535),
    ('general.i16', 3, -300),
    ('general.u32', 4, 4_000_000_000),
    ('general.i32', 5, -2_000_000_000),
    ('general.f32', 6, 0.5),
    ('general.flag', 7, True),
    ('general.u64', 10, 2**40),
    ('general.i64', 11, -(2**40)),
    ('general.f64', 12, 0.25),
    ('general.nested', 9, (9, [(8, ['a', 'b']), (4, [1, 2, 3])])),
    ('tokenizer.ggml.tokens', 9, (8, ['<unk>', '<s>', '</s>', 'héllo'])),
    ('tokenizer.ggml.scores', 9, (6, [0.0, 1.0, 2.0, 3.0])),
    ('tokenizer.ggml.eos_token_id', 4, 2),
    ('tokenizer.chat_template', 8, TOOLS_TEMPLATE),
]


def test_read_tiny_gguf_metadata(tmp_path: Path):
    path = write_gguf(tmp_path / 'tiny.gguf', TINY_ENTRIES)
    metadata = read_gguf_metadata(path)
    assert metadata['general.architecture'] == 'llama'
    assert metadata['general.u8'] == 7 and metadata['general.i8'] == -7
    assert metadata['general.u16'] == 65535 and metadata['general.i16'] == -300
    assert metadata['general.u32'] == 4_000_000_000 and metadata['general.i32'] == -2_000_000_000
    assert metadata['general.f32'] == 0.5 and metadata['general.f64'] == 0.25
    assert metadata['general.flag'] is True
    assert metadata['general.u64'] == 2**40 and metadata['general.i64'] == -(2**40)
    assert metadata['general.nested'] == [['a', 'b'], [1, 2, 3]]
    assert metadata['tokenizer.ggml.tokens'] == ['<unk>', '<s>', '</s>', 'héllo']
    assert metadata['tokenizer.chat_template'] == TOOLS_TEMPLATE


def test_read_only_wanted_keys_skips_the_rest(tmp_path: Path):
    path = write_gguf(tmp_path / 'tiny.gguf', TINY_ENTRIES)
    metadata = read_gguf_metadata(path, keys={'tokenizer.chat_template', 'general.f64'})
    assert metadata == {'general.f64': 0.25, 'tokenizer.chat_template': TOOLS_TEMPLATE}


def test_chat_template_from_tiny_gguf_with_its_eos(tmp_path: Path):
    template = ChatTemplate.from_gguf(write_gguf(tmp_path / 'tiny.gguf', TINY_ENTRIES))
    assert template.eos_token == '</s>'
    assert template.render([{'role': 'user', 'content': 'x'}]) == 'user: x</s>\nassistant:'


def test_gguf_eos_id_out_of_range_leaves_eos_empty(tmp_path: Path):
    entries = [('tokenizer.ggml.tokens', 9, (8, ['a'])), ('tokenizer.ggml.eos_token_id', 4, 5)]
    entries.append(('tokenizer.chat_template', 8, 'T'))
    assert ChatTemplate.from_gguf(write_gguf(tmp_path / 'tiny.gguf', entries)).eos_token == ''


def test_gguf_without_a_chat_template_is_rejected(tmp_path: Path):
    path = write_gguf(tmp_path / 'tiny.gguf', [('general.architecture', 8, 'llama')])
    with pytest.raises(ValueError, match=r'has no tokenizer\.chat_template'):
        ChatTemplate.from_gguf(path)


def test_not_a_gguf_file_is_rejected(tmp_path: Path):
    path = tmp_path / 'model.bin'
    path.write_bytes(b'\x00' * 64)
    with pytest.raises(ValueError, match='not a GGUF file'):
        read_gguf_metadata(path)


def test_old_gguf_versions_are_rejected(tmp_path: Path):
    path = write_gguf(tmp_path / 'v1.gguf', [], version=1)
    with pytest.raises(ValueError, match='version 1'):
        read_gguf_metadata(path)


@pytest.mark.parametrize('cut', [6, 20, 30, -3])
def test_truncated_gguf_is_rejected(tmp_path: Path, cut: int):
    data = write_gguf(tmp_path / 'full.gguf', TINY_ENTRIES).read_bytes()
    path = tmp_path / 'cut.gguf'
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match='truncated'):
        read_gguf_metadata(path)


def test_unknown_value_type_is_rejected(tmp_path: Path):
    path = tmp_path / 'bad.gguf'
    path.write_bytes(b'GGUF' + struct.pack('<IQQ', 3, 0, 1) + _gguf_string('k') + struct.pack('<I', 99))
    with pytest.raises(ValueError, match='unknown GGUF value type 99'):
        read_gguf_metadata(path)


def test_real_smollm2_gguf_metadata():
    metadata = read_gguf_metadata(
        smollm2_gguf_path(), keys={'general.architecture', 'tokenizer.chat_template', 'tokenizer.ggml.eos_token_id'}
    )
    assert metadata['general.architecture'] == 'llama'
    assert '<|im_start|>' in metadata['tokenizer.chat_template']
    assert isinstance(metadata['tokenizer.ggml.eos_token_id'], int)


def test_real_smollm2_chat_template():
    template = ChatTemplate.from_gguf(smollm2_gguf_path())
    assert template.eos_token == '<|im_end|>'
    assert template.render(CONVERSATION) == EXPECTED + '<|im_start|>assistant\n'


def test_a_message_without_content_has_content_none_as_in_the_openai_format():
    # templates test `message.content is none` (e.g. DeepSeek-R1's); a missing key would be undefined
    call = {'id': 'c1', 'type': 'function', 'function': {'name': 'weather', 'arguments': '{}'}}
    template = ChatTemplate('{% for m in messages %}{{ m.content is none }};{% endfor %}')
    prompt = template.render([{'role': 'user', 'content': 'x'}, {'role': 'assistant', 'tool_calls': [call]}])
    assert prompt == 'False;True;'


def test_tojson_takes_separators_like_transformers():
    # Kimi-K2's template writes its tools with `tojson(separators=(',', ':'))`
    template = ChatTemplate("{{ {'a': [1, 2]} | tojson(separators=(',', ':')) }}")
    assert template.render([]) == '{"a":[1,2]}'


def test_a_template_that_cannot_handle_the_messages_raises_value_error():
    # a template written for string contents, given content parts
    template = ChatTemplate("{% for m in messages %}{{ m['content'] + '|' }}{% endfor %}")
    with pytest.raises(ValueError, match='chat template failed'):
        template.render([{'role': 'user', 'content': [{'type': 'text', 'text': 'x'}]}])


# ---------------------------------------------------------------------- bounds: a template is code from a model file


@pytest.mark.parametrize(
    'source',
    [
        '{% for i in range(10**10) %}{% endfor %}',  # jinja2's own range cap, reported as a limit
        "{{ 'x' * 10**12 }}",
        "{{ ['x'] * 10**12 }}",
        '{{ 10 ** (10 ** 10) }}',
        "{{ '%0999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ 'x'.center(10**10) }}",
        "{{ 'x'.ljust(10**10) }}",
        "{{ 'x' | center(10**10) }}",
        "{{ 'a\\nb' | indent(10**10) }}",
        "{{ ('x' * 1000) | replace('x', 'y' * 100000) }}",
        "{{ ('x' * 1000).replace('x', 'y' * 100000) }}",
        "{{ ('x' * 100000).split('x') | join('y' * 10000) }}",
        # doubling a string in a loop: each step is small, the result is not
        "{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        # recursion: deep, and wide
        '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
        '{% macro f(n) %}{{ f(n + 1) }}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
        # nested loops that output nothing: only the time limit can stop them
        '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
        "{% for a in 'x' * 100000 %}{% for b in 'x' * 100000 %}{% endfor %}{% endfor %}",
        '{% for i in range(100000) recursive %}{{ loop(range(100000)) }}{% endfor %}',
    ],
)
def test_runaway_templates_stop_with_a_template_limit_error(source: str) -> None:
    template = ChatTemplate(source, render_timeout=0.5, max_output=1 << 20)
    started = time.monotonic()
    with pytest.raises(TemplateLimitError):
        template.render(CONVERSATION)
    assert time.monotonic() - started < 5


def test_a_template_limit_error_is_a_value_error_and_names_the_limit() -> None:
    with pytest.raises(ValueError, match='over the limit of 100'):
        ChatTemplate("{{ 'x' * 1000 }}", max_output=100).render([])
    with pytest.raises(ValueError, match='render time limit'):
        ChatTemplate('{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
                     render_timeout=0.2).render([])  # fmt: skip


def test_the_output_limit_counts_the_whole_prompt() -> None:
    template = ChatTemplate('{% for m in messages %}{{ m.content }}{% endfor %}', max_output=1000)
    assert template.render([{'role': 'user', 'content': 'x' * 999}]) == 'x' * 999
    with pytest.raises(TemplateLimitError):
        template.render([{'role': 'user', 'content': 'x' * 600}, {'role': 'user', 'content': 'y' * 600}])


@pytest.mark.parametrize('name', ['_lagent_bounded_loop', '_lagent_bounded_concat'])
@pytest.mark.parametrize(
    'form', ['{% set NAME = 1 %}', '{% for NAME in [] %}{% endfor %}', '{% macro NAME() %}{% endmacro %}']
)
def test_a_template_cannot_take_over_the_names_the_bounds_use(name: str, form: str) -> None:
    with pytest.raises(ValueError, match='may not define'):
        ChatTemplate(form.replace('NAME', name))


def test_ordinary_arithmetic_and_errors_still_work() -> None:
    template = ChatTemplate("{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ '%5s|' % 'x' }} {{ [1] + [2] }} {{ 'a' ~ 1 }}")
    assert template.render([]) == '1024 ababab     x| [1, 2] a1'
    with pytest.raises(ValueError, match='ZeroDivisionError'):
        ChatTemplate('{{ 1 / 0 }}').render([])


@pytest.mark.parametrize(
    ('name', 'value'), [('render_timeout', 0), ('render_timeout', float('inf')), ('max_output', 0)]
)
def test_limits_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        ChatTemplate(CHATML, **{name: value})
