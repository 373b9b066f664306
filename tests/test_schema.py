"""Shared data: status codes, messages, tool calls, generation settings."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from lagent.schema import (
    ActionReturn,
    ActionStatusCode,
    AgentStatusCode,
    Chunk,
    FunctionCall,
    GenerationParams,
    Message,
    ModelStatusCode,
    ToolCall,
    ToolCallDelta,
)


def test_status_codes_keep_the_original_values():
    assert {code.name: code.value for code in ModelStatusCode} == {
        'END': 0,
        'STREAM_ING': 1,
        'SESSION_READY': 2,
        'SERVER_ERR': -1,
        'SESSION_CLOSED': -2,
        'SESSION_OUT_OF_LIMIT': -3,
        'SESSION_INVALID_ARG': -4,
    }
    assert AgentStatusCode.PLUGIN_START == 3 and AgentStatusCode.CODE_RETURN == 8
    assert ActionStatusCode.SUCCESS == 0 and ActionStatusCode.ARGS_ERROR == -1001


# ---------------------------------------------------------------------- messages


def test_message_accepts_any_role_and_content_parts():
    message = Message(role='environment', name='plugin', content='{"ok": true}')
    assert message.text == '{"ok": true}'
    image = {'type': 'image_url', 'image_url': {'url': 'cat.png'}}
    parts = Message(role='user', content=[{'type': 'text', 'text': 'a'}, image])
    assert parts.text == 'a'
    call = {'id': 'c1', 'function': {'name': 'f', 'arguments': '{}'}}
    assert Message(role='assistant', tool_calls=[call]).text == ''


@pytest.mark.parametrize('message', [{'role': 'user'}, {'role': 'user', 'content': None}, {'role': 'assistant'}])
def test_a_message_without_content_is_rejected_unless_it_is_a_tool_call(message) -> None:
    with pytest.raises(ValueError, match='needs content'):
        Message(**message)


def test_message_to_openai_leaves_out_unset_fields_and_keeps_extra_part_fields():
    assert Message(role='user', content='hi').to_openai() == {'role': 'user', 'content': 'hi'}
    image = {'type': 'image_url', 'image_url': {'url': 'http://x/y.png'}}
    assert Message(role='user', content=[image]).to_openai() == {'role': 'user', 'content': [image]}
    call = ToolCall(id='c1', function=FunctionCall(name='f', arguments='{}'))
    assert Message(role='assistant', tool_calls=[call]).to_openai() == {
        'role': 'assistant',
        'tool_calls': [{'id': 'c1', 'type': 'function', 'function': {'name': 'f', 'arguments': '{}'}}],
    }


@pytest.mark.parametrize(
    'fields',
    [
        {'role': '', 'content': 'x'},
        {'content': 'x'},
        {'role': 'user', 'content': 5},
        {'role': 'user', 'content': 'x', 'colour': 'red'},
        {'role': 'user', 'content': [{'text': 'no type'}]},
        {'role': 'assistant', 'tool_calls': [{'id': 'c1', 'type': 'function'}]},
        {'role': 'assistant', 'tool_calls': [{'id': 'c1', 'type': 'code', 'function': {'name': 'f'}}]},
    ],
)
def test_malformed_messages_are_rejected(fields):
    with pytest.raises(ValidationError):
        Message.model_validate(fields)


# ---------------------------------------------------------------------- tool calls


def test_parsed_arguments_decodes_a_json_object():
    assert FunctionCall(name='f', arguments='{"a": [1, 2]}').parsed_arguments() == {'a': [1, 2]}
    assert FunctionCall(name='f', arguments='').parsed_arguments() == {}
    assert FunctionCall(name='f').parsed_arguments() == {}


def test_parsed_arguments_rejects_invalid_json_naming_the_function():
    with pytest.raises(ValueError, match="arguments of 'search' are not valid JSON") as info:
        FunctionCall(name='search', arguments='{"q": ').parsed_arguments()
    assert info.value.__cause__ is not None


@pytest.mark.parametrize('arguments', ['[1, 2]', '"text"', '3', 'null'])
def test_parsed_arguments_rejects_json_that_is_not_an_object(arguments):
    with pytest.raises(ValueError, match="arguments of 'search' must be a JSON object"):
        FunctionCall(name='search', arguments=arguments).parsed_arguments()


def test_tool_call_defaults_to_function_type():
    call = ToolCall(id='c1', function={'name': 'f'})
    assert call.type == 'function' and call.function.arguments == '{}'


# ---------------------------------------------------------------------- hot-path data


def test_chunk_and_tool_call_delta_are_slotted_dataclasses():
    chunk = Chunk(text='a')
    assert dataclasses.is_dataclass(chunk) and not hasattr(chunk, '__dict__')
    assert not hasattr(ToolCallDelta(index=0), '__dict__')
    assert Chunk() == Chunk(text='', finish_reason=None, usage=None, tool_calls=None)


# ---------------------------------------------------------------------- generation settings


def test_generation_params_are_frozen():
    params = GenerationParams()
    with pytest.raises(ValidationError):
        params.max_new_tokens = 5


def test_stop_words_normalise_to_a_tuple():
    assert GenerationParams(stop_words=None).stop_words == ()
    assert GenerationParams(stop_words='x').stop_words == ('x',)
    assert GenerationParams(stop_words=['x', 'y']).stop_words == ('x', 'y')


def test_override_validates_and_returns_a_new_object():
    params = GenerationParams.create(max_new_tokens=10, top_k=None)
    assert params.override() is params
    changed = params.override(temperature=0)
    assert changed.greedy and changed.max_new_tokens == 10 and changed.top_k is None
    assert not params.greedy
    with pytest.raises(ValueError, match=r'top_p: .* \(got 2\)'):
        params.override(top_p=2)


def test_errors_name_every_bad_field():
    with pytest.raises(ValueError) as info:
        GenerationParams.create(max_new_tokens=0, temperature=-1, bogus=1)
    message = str(info.value)
    assert 'max_new_tokens' in message and 'temperature' in message and "'bogus'" in message


@pytest.mark.parametrize(
    ('field', 'value', 'reason'),
    [
        ('temperature', float('inf'), 'finite'),
        ('temperature', float('nan'), 'finite'),
        ('repetition_penalty', float('inf'), 'finite'),
        ('top_p', float('nan'), 'finite'),
        ('timeout', float('inf'), 'finite'),
        ('max_new_tokens', True, 'not a bool'),
        ('min_new_tokens', False, 'not a bool'),
        ('top_k', True, 'not a bool'),
        ('seed', True, 'not a bool'),
        ('temperature', True, 'not a bool'),
    ],
)
def test_numbers_must_be_finite_and_not_bools(field, value, reason):
    with pytest.raises(ValueError, match=rf'{field}: .*{reason}'):
        GenerationParams.create(**{field: value})


# ---------------------------------------------------------------------- tool results


def test_action_return_formats_results_and_errors():
    ok = ActionReturn(type='calc', result=[{'type': 'text', 'content': '42'}, {'type': 'image', 'content': 'a.png'}])
    assert ok.format_result() == '42\n[image](a.png)'
    failed = ActionReturn(type='calc', state=ActionStatusCode.ARGS_ERROR, errmsg='x must be a number')
    assert failed.format_result() == 'x must be a number'
    assert ActionReturn(type='calc', state=ActionStatusCode.API_ERROR).format_result() == 'calc failed (API_ERROR)'
