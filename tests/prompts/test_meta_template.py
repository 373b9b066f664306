"""meta_template rendering with the original lagent semantics, checked on golden strings."""

from __future__ import annotations

import pytest

from lagent.llms.meta_template import INTERNLM2_META as COMPAT_INTERNLM2_META
from lagent.prompts import INTERNLM2_META, MetaTemplate, RoleSpec, join_contents, normalize_messages
from lagent.schema import FunctionCall, Message, ToolCall

INTERNLM2 = MetaTemplate(INTERNLM2_META)


def test_compat_import_path_gives_the_same_template():
    assert COMPAT_INTERNLM2_META is INTERNLM2_META


def test_internlm2_plain_conversation():
    prompt = INTERNLM2.render(
        [
            {'role': 'system', 'content': 'You are InternLM2.'},
            {'role': 'user', 'content': 'Hi'},
            {'role': 'assistant', 'content': 'Hello!'},
            {'role': 'user', 'content': 'Sum 1+1'},
        ]
    )
    assert prompt == (
        '<|im_start|>system\nYou are InternLM2.<|im_end|>\n'
        '<|im_start|>user\nHi<|im_end|>\n'
        '<|im_start|>assistant\nHello!<|im_end|>\n'
        '<|im_start|>user\nSum 1+1<|im_end|>\n'
        '<|im_start|>assistant\n'
    )


def test_internlm2_names_map_to_plugin_and_interpreter_tokens():
    prompt = INTERNLM2.render(
        [
            {'role': 'system', 'content': 'You are InternLM2.'},
            {'role': 'system', 'name': 'plugin', 'content': '[{"name": "search"}]'},
            {'role': 'system', 'name': 'interpreter', 'content': 'Run Python.'},
            {'role': 'user', 'content': 'Search for lagent'},
            {'role': 'assistant', 'content': 'Let me search.'},
            {'role': 'environment', 'name': 'plugin', 'content': '{"results": []}'},
        ]
    )
    assert prompt == (
        '<|im_start|>system\nYou are InternLM2.<|im_end|>\n'
        '<|im_start|>system name=<|plugin|>\n[{"name": "search"}]<|im_end|>\n'
        '<|im_start|>system name=<|interpreter|>\nRun Python.<|im_end|>\n'
        '<|im_start|>user\nSearch for lagent<|im_end|>\n'
        '<|im_start|>assistant\nLet me search.<|im_end|>\n'
        '<|im_start|>environment name=<|plugin|>\n{"results": []}<|im_end|>\n'
        '<|im_start|>assistant\n'
    )


def test_a_name_without_a_mapping_is_written_as_it_is():
    prompt = INTERNLM2.render([{'role': 'user', 'name': 'alice', 'content': 'Hi'}])
    assert prompt == '<|im_start|>user name=alice\nHi<|im_end|>\n<|im_start|>assistant\n'


def test_internlm2_final_assistant_message_is_closed_because_generate_is_not_set():
    prompt = INTERNLM2.render([{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}])
    assert prompt == '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n'


GENERATING = MetaTemplate(
    [
        dict(role='system', begin='<SYS>', end='</SYS>\n'),
        dict(role='user', begin='<U>', end='</U>\n'),
        dict(role='assistant', begin='<A>', end='</A>\n', generate=True),
        dict(role='function', fallback_role='user'),
        dict(role='observation', begin='<O>', end='</O>\n', generate=True),
    ]
)


def test_generate_true_leaves_the_last_message_open():
    prompt = GENERATING.render([{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hel'}])
    assert prompt == '<U>Hi</U>\n<A>Hel'


def test_generate_true_closes_messages_that_are_not_last():
    prompt = GENERATING.render(
        [
            {'role': 'user', 'content': 'Hi'},
            {'role': 'assistant', 'content': 'Hello'},
            {'role': 'user', 'content': 'Bye'},
        ]
    )
    assert prompt == '<U>Hi</U>\n<A>Hello</A>\n<U>Bye</U>\n<A>'


def test_a_non_assistant_generate_role_is_left_open_without_an_assistant_begin():
    prompt = GENERATING.render([{'role': 'user', 'content': 'Run'}, {'role': 'observation', 'content': 'partial'}])
    assert prompt == '<U>Run</U>\n<O>partial'


def test_fallback_role_renders_with_the_other_roles_entry():
    prompt = GENERATING.render([{'role': 'function', 'content': 'result 42'}])
    assert prompt == '<U>result 42</U>\n<A>'


def test_fallback_to_a_generate_role_leaves_it_open():
    template = MetaTemplate(
        [
            dict(role='user', begin='<U>', end='</U>'),
            dict(role='assistant', begin='<A>', end='</A>', generate=True),
            dict(role='bot', fallback_role='assistant'),
        ]
    )
    assert template.render([{'role': 'user', 'content': 'q'}, {'role': 'bot', 'content': 'a'}]) == '<U>q</U><A>a'


def test_bare_strings_pass_through_unchanged():
    prompt = GENERATING.render(['<BOS>', {'role': 'user', 'content': 'Hi'}, 'raw text, no template\n'])
    assert prompt == '<BOS><U>Hi</U>\nraw text, no template\n'


def test_a_conversation_ending_with_a_bare_string_gets_no_assistant_begin():
    assert GENERATING.render([{'role': 'user', 'content': 'Hi'}, '<A>Sure']) == '<U>Hi</U>\n<A>Sure'


def test_message_objects_and_content_parts_render_like_dicts():
    message = Message(role='user', content=[{'type': 'text', 'text': 'Hel'}, {'type': 'text', 'text': 'lo'}])
    assert GENERATING.render([message]) == '<U>Hello</U>\n<A>'


def test_empty_conversation_renders_empty():
    assert GENERATING.render([]) == ''


def test_native_tool_calls_cannot_be_rendered():
    call = ToolCall(id='c1', function=FunctionCall(name='f', arguments='{}'))
    with pytest.raises(ValueError, match='native tool calls'):
        GENERATING.render([{'role': 'assistant', 'content': None, 'tool_calls': [call.model_dump()]}])


# ---------------------------------------------------------------------- no template


def test_no_template_joins_contents_with_newlines():
    conversation = [
        {'role': 'system', 'content': 'S'},
        'raw',
        {'role': 'user', 'content': ''},
        {'role': 'user', 'content': 'U'},
    ]
    assert join_contents(conversation) == 'S\nraw\nU'


def test_no_template_joins_text_parts_and_refuses_images_it_cannot_place():
    text_parts = [{'type': 'text', 'text': 'look '}, {'type': 'text', 'text': 'here'}]
    assert join_contents([{'role': 'user', 'content': text_parts}]) == 'look here'
    parts = [{'type': 'text', 'text': 'look'}, {'type': 'image_url', 'image_url': {'url': 'http://x/y.png'}}]
    with pytest.raises(ValueError, match=r"message 0, part 1 \('http://x/y.png'\): .*no image placeholder"):
        join_contents([{'role': 'user', 'content': parts}])


# ---------------------------------------------------------------------- errors


def test_unknown_role_names_the_role_and_the_roles_that_exist():
    with pytest.raises(ValueError) as info:
        INTERNLM2.render([{'role': 'wizard', 'content': 'x'}])
    message = str(info.value)
    assert "'wizard'" in message
    for role in ('system', 'user', 'assistant', 'environment'):
        assert role in message


@pytest.mark.parametrize(
    ('roles', 'match'),
    [
        ('not a list', 'must be a list'),
        ({'role': 'user'}, 'must be a list'),
        ([dict(role='user'), dict(role='user')], "role 'user' twice"),
        ([dict(role='user', fallback_role='ghost')], "unknown role 'ghost'; roles: user"),
        ([dict(role='user', colour='red')], "role 'user' is malformed: colour"),
        ([dict(role='')], 'malformed'),
        ([dict(begin='x')], 'malformed: role'),
        (['user'], 'entry 0 must be a dict'),
        ([dict(role='user', begin=dict(with_name='{name}', surname='x'))], "role 'user' is malformed"),
        ([dict(role='user', generate='maybe')], "role 'user' is malformed: generate"),
    ],
)
def test_malformed_templates_raise_value_error(roles, match):
    with pytest.raises(ValueError, match=match):
        MetaTemplate(roles)


@pytest.mark.parametrize(
    'conversation',
    [
        'a string is not a conversation',
        [{'role': 'user', 'content': 'x', 'colour': 'red'}],
        [{'content': 'no role'}],
        [{'role': 'user', 'content': 42}],
    ],
)
def test_malformed_conversations_raise_value_error(conversation):
    with pytest.raises(ValueError):
        GENERATING.render(conversation)


def test_a_non_message_item_raises_type_error():
    with pytest.raises(TypeError, match='message 1'):
        normalize_messages([{'role': 'user', 'content': 'x'}, 42])


def test_a_malformed_message_is_named_by_its_position():
    with pytest.raises(ValueError, match='message 1 is malformed'):
        normalize_messages([{'role': 'user', 'content': 'x'}, {'role': ''}])


def test_role_specs_can_be_given_as_objects():
    template = MetaTemplate([RoleSpec(role='user', begin='[', end=']'), RoleSpec(role='assistant', generate=True)])
    assert template.render([{'role': 'user', 'content': 'x'}]) == '[x]'


# ---------------------------------------------------------------------- chat APIs


API_TEMPLATE = MetaTemplate(
    [
        dict(role='system', api_role='system'),
        dict(role='user', api_role='user'),
        dict(role='assistant', api_role='assistant'),
        dict(role='environment', api_role='user'),
        dict(role='function', fallback_role='environment', api_role='user'),
    ]
)


def test_api_template_maps_roles_and_merges_consecutive_same_role_messages():
    messages = API_TEMPLATE.to_api_messages(
        [
            {'role': 'system', 'content': 'S'},
            {'role': 'user', 'content': 'question'},
            {'role': 'environment', 'content': 'tool said 42'},
            {'role': 'assistant', 'content': 'A1'},
            {'role': 'assistant', 'content': 'A2'},
            {'role': 'function', 'content': 'f()'},
        ]
    )
    assert messages == [
        {'role': 'system', 'content': 'S'},
        {'role': 'user', 'content': 'question\ntool said 42'},
        {'role': 'assistant', 'content': 'A1\nA2'},
        {'role': 'user', 'content': 'f()'},
    ]
    assert API_TEMPLATE.is_api_template


def test_api_messages_keep_string_begin_and_end_around_the_content():
    template = MetaTemplate(
        [dict(role='user', begin='Q: ', end='?', api_role='user'), dict(role='assistant', api_role='assistant')]
    )
    assert template.to_api_messages([{'role': 'user', 'content': 'why'}]) == [{'role': 'user', 'content': 'Q: why?'}]


def test_api_messages_do_not_merge_tool_messages_or_tool_calls():
    template = MetaTemplate(
        [
            dict(role='user', api_role='user'),
            dict(role='assistant', api_role='assistant'),
            dict(role='tool', api_role='tool'),
        ]
    )
    call = {'id': 'c1', 'type': 'function', 'function': {'name': 'f', 'arguments': '{}'}}
    messages = template.to_api_messages(
        [
            {'role': 'user', 'content': 'go'},
            {'role': 'assistant', 'content': None, 'tool_calls': [call]},
            {'role': 'tool', 'content': '1', 'tool_call_id': 'c1'},
            {'role': 'tool', 'content': '2', 'tool_call_id': 'c1'},
        ]
    )
    assert [m['role'] for m in messages] == ['user', 'assistant', 'tool', 'tool']
    assert messages[1]['tool_calls'][0]['id'] == 'c1'
    assert messages[3] == {'role': 'tool', 'content': '2', 'tool_call_id': 'c1'}


def test_api_messages_need_roles_and_api_roles():
    with pytest.raises(ValueError, match='bare string'):
        API_TEMPLATE.to_api_messages(['raw'])
    with pytest.raises(ValueError, match="role 'user' has no api_role"):
        GENERATING.to_api_messages([{'role': 'user', 'content': 'x'}])
    with pytest.raises(ValueError, match="unknown role 'wizard'"):
        API_TEMPLATE.to_api_messages([{'role': 'wizard', 'content': 'x'}])
    assert not GENERATING.is_api_template


def test_internlm2_with_a_fallback_role_for_tool_results():
    template = MetaTemplate([*INTERNLM2_META, dict(role='function', fallback_role='environment')])
    prompt = template.render(
        [
            {'role': 'user', 'content': 'Run it'},
            {'role': 'assistant', 'content': 'print(1)'},
            {'role': 'function', 'name': 'interpreter', 'content': '1'},
        ]
    )
    assert prompt == (
        '<|im_start|>user\nRun it<|im_end|>\n'
        '<|im_start|>assistant\nprint(1)<|im_end|>\n'
        '<|im_start|>environment name=<|interpreter|>\n1<|im_end|>\n'
        '<|im_start|>assistant\n'
    )


def test_internlm2_with_a_generating_assistant_leaves_the_reply_open():
    roles = [dict(role, generate=True) if role['role'] == 'assistant' else role for role in INTERNLM2_META]
    prompt = MetaTemplate(roles).render(
        [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'name': 'plugin', 'content': '{"name": "se'}]
    )
    assert prompt == '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant name=<|plugin|>\n{"name": "se'
