"""The LLM contract of BaseLLM: settings, validation, templating paths, stop
words, batching and stream closing, on small engines built from the hooks."""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from lagent.llms.base import BaseLLM, LLMRequest
from lagent.prompts import ChatTemplate, get_template
from lagent.schema import Chunk, GenerationParams, ModelStatusCode, Response, ToolCallDelta, Usage

MESSAGES = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
TOOL = {'type': 'function', 'function': {'name': 'weather', 'parameters': {'type': 'object', 'properties': {}}}}


class PromptEngine(BaseLLM):
    """Answers every prompt with ``pieces`` (delta texts), recording what it was asked."""

    def __init__(self, pieces=('Hel', 'lo', '!'), **kwargs: Any):
        super().__init__(path='prompt-engine', **kwargs)
        self.pieces = list(pieces)
        self.calls: list[tuple[str, GenerationParams]] = []
        self.closed_sources = 0
        self.threads: set[str] = set()

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        self.calls.append((request.prompt, params))
        return self._source()

    def _source(self) -> Iterator[Chunk]:
        try:
            self.threads.add(threading.current_thread().name)
            for piece in self.pieces[:-1]:
                yield Chunk(text=piece)
            yield Chunk(text=self.pieces[-1], finish_reason='stop', usage=Usage(completion_tokens=len(self.pieces)))
        finally:
            self.closed_sources += 1


class MessagesEngine(PromptEngine):
    """An engine that takes messages (a chat endpoint) with native tools."""

    accepts_messages = True
    native_tools = True

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        if request.prompt is not None:
            return super()._stream(request, params)
        self.calls.append((request.messages, params))
        self.tools = (request.tools, request.tool_choice)
        return self._source()


# ---------------------------------------------------------------------- settings


def test_defaults_are_those_of_the_original_lagent():
    params = PromptEngine().gen_params
    assert (params.max_new_tokens, params.top_p, params.top_k, params.temperature) == (512, 0.8, 40, 0.8)
    assert params.repetition_penalty == 1.0 and params.stop_words == ()


def test_top_k_none_and_temperature_zero_are_accepted():
    params = PromptEngine(top_k=None, temperature=0).gen_params
    assert params.top_k is None and params.greedy


def test_extra_generation_keywords_of_the_lagent_docs_are_accepted():
    llm = PromptEngine(
        min_new_tokens=1,
        seed=7,
        ignore_eos=True,
        skip_special_tokens=False,
        timeout=30,
        session_id=3,
        request_id='r1',
        sequence_start=True,
        sequence_end=True,
    )
    assert llm.gen_params.seed == 7 and llm.gen_params.timeout == 30
    assert llm.generate('x', session_id=4, request_id='r2', sequence_start=False) == 'Hello!'


@pytest.mark.parametrize(
    ('keywords', 'field'),
    [
        ({'max_new_tokens': 0}, 'max_new_tokens'),
        ({'max_new_tokens': -5}, 'max_new_tokens'),
        ({'top_p': 0}, 'top_p'),
        ({'top_p': 1.01}, 'top_p'),
        ({'top_p': -0.5}, 'top_p'),
        ({'temperature': -0.1}, 'temperature'),
        ({'top_k': -1}, 'top_k'),
        ({'repetition_penalty': 0}, 'repetition_penalty'),
        ({'timeout': 0}, 'timeout'),
        ({'stop_words': ['ok', '']}, 'stop words must not be empty'),
        ({'stop_words': ''}, 'stop words must not be empty'),
        ({'max_tokens_typo': 5}, "(unknown keyword|unknown generation parameter) 'max_tokens_typo'"),
        ({'max_new_tokens': 'many'}, 'max_new_tokens'),
    ],
)
def test_invalid_settings_raise_value_error_naming_the_field(keywords, field):
    with pytest.raises(ValueError, match=field):
        PromptEngine(**keywords)
    llm = PromptEngine()
    with pytest.raises(ValueError, match=field):
        llm.generate('x', **keywords)
    with pytest.raises(ValueError, match=field):
        llm.stream(MESSAGES, **keywords)
    assert llm.calls == []  # nothing reached the engine


def test_unknown_keyword_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown keyword 'colour' for PromptEngine \(it takes: .*pieces"):
        PromptEngine(colour='red')
    with pytest.raises(ValueError, match='known: max_new_tokens, min_new_tokens'):
        PromptEngine().generate('x', colour='red')


def test_top_p_of_one_is_allowed():
    assert PromptEngine(top_p=1).gen_params.top_p == 1


def test_per_call_overrides_never_change_the_defaults():
    llm = PromptEngine(stop_words=['###'])
    before = llm.gen_params
    llm.generate('x', max_new_tokens=3, temperature=0, stop_words=['lo'], top_k=None)
    assert llm.calls[-1][1].max_new_tokens == 3 and llm.calls[-1][1].stop_words == ('lo',)
    assert llm.calls[-1][1].top_k is None and llm.calls[-1][1].greedy
    llm.chat(MESSAGES, top_p=0.5)
    list(llm.stream_chat(MESSAGES, seed=1))
    assert llm.gen_params is before
    assert llm.gen_params == GenerationParams(stop_words=('###',))
    llm.generate('x')
    assert llm.calls[-1][1] == before


def test_params_without_overrides_are_the_defaults_object():
    llm = PromptEngine()
    assert llm.params() is llm.gen_params


# ---------------------------------------------------------------------- templates


def test_meta_template_by_name_renders_and_brings_its_stop_words():
    llm = PromptEngine(meta_template='chatml')
    assert llm.gen_params.stop_words == ('<|im_end|>',)
    assert llm.prepare(MESSAGES).prompt == get_template('chatml').render(MESSAGES)


def test_explicit_stop_words_replace_the_templates():
    assert PromptEngine(meta_template='chatml', stop_words='STOP').gen_params.stop_words == ('STOP',)
    assert PromptEngine(meta_template='chatml', stop_words=[]).gen_params.stop_words == ()


def test_meta_template_as_role_dicts():
    llm = PromptEngine(meta_template=[dict(role='user', begin='<u>', end='</u>'), dict(role='assistant', begin='<a>')])
    assert llm.prepare([{'role': 'user', 'content': 'Hi'}]).prompt == '<u>Hi</u><a>'


@pytest.mark.parametrize(
    ('meta_template', 'match'),
    [
        ('no-such-template', "unknown template 'no-such-template'"),
        ([dict(role='user'), dict(role='user')], "role 'user' twice"),
        ([dict(role='user', fallback_role='ghost')], "unknown role 'ghost'"),
        ([dict(role='user', begin=3)], "role 'user' is malformed"),
        ({'role': 'user'}, 'must be a list'),
    ],
)
def test_malformed_meta_templates_raise_value_error(meta_template, match):
    with pytest.raises(ValueError, match=match):
        PromptEngine(meta_template=meta_template)


def test_both_templates_are_rejected():
    with pytest.raises(ValueError, match='either meta_template or chat_template'):
        PromptEngine(meta_template='chatml', chat_template='{{ messages }}')


def test_unknown_role_in_a_conversation_names_the_role_and_the_roles():
    llm = PromptEngine(meta_template='internlm2')
    with pytest.raises(ValueError, match=r"unknown role 'critic'.*system, user, assistant, environment"):
        llm.chat([{'role': 'critic', 'content': 'x'}])


def test_chat_template_renders_the_prompt_with_tools():
    source = (
        '{% if tools %}[{{ tools[0].function.name }}]{% endif %}{% for m in messages %}{{ m.content }};{% endfor %}'
    )
    llm = PromptEngine(chat_template=source)
    request = llm.prepare(MESSAGES, tools=[TOOL])
    assert request.prompt == '[weather]Be brief.;Hi;'
    assert PromptEngine(chat_template=ChatTemplate(source)).prepare(MESSAGES).prompt == 'Be brief.;Hi;'


def test_api_meta_template_sends_renamed_messages():
    llm = MessagesEngine(
        meta_template=[
            dict(role='system', api_role='system'),
            dict(role='user', api_role='user'),
            dict(role='assistant', api_role='assistant'),
            dict(role='environment', api_role='user'),
        ]
    )
    request = llm.prepare([*MESSAGES, {'role': 'environment', 'content': 'sunny'}], tools=[TOOL], tool_choice='auto')
    assert request.messages == [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi\nsunny'}]
    assert request.tools == [TOOL] and request.tool_choice == 'auto'


def test_messages_engine_without_template_gets_the_messages_and_tools():
    llm = MessagesEngine()
    assert llm.chat(MESSAGES) == 'Hello!'
    assert llm.calls[-1][0] == MESSAGES
    llm.complete(MESSAGES, tools=[TOOL], tool_choice={'type': 'function', 'function': {'name': 'weather'}})
    assert llm.tools == ([TOOL], {'type': 'function', 'function': {'name': 'weather'}})


def test_tool_choice_without_tools_is_not_sent():
    assert MessagesEngine().prepare(MESSAGES, tool_choice='required').tool_choice is None


def test_prompt_engine_without_template_joins_the_contents():
    assert PromptEngine().prepare(MESSAGES) == LLMRequest(prompt='Be brief.\nHi')


def test_an_empty_meta_template_means_no_template():
    assert PromptEngine(meta_template=[]).template is None
    assert MessagesEngine(meta_template=[]).prepare(MESSAGES).messages is not None


def test_raw_prompt_has_no_template_applied():
    llm = PromptEngine(meta_template='chatml')
    assert llm.generate('<raw>') == 'Hello!'
    assert llm.calls[-1][0] == '<raw>'


@pytest.mark.parametrize(
    ('engine', 'kwargs', 'inputs', 'tools', 'match'),
    [
        (PromptEngine, {}, 'raw prompt', [TOOL], 'tools need a conversation'),
        (PromptEngine, {'meta_template': 'chatml'}, MESSAGES, [TOOL], 'meta_template cannot render tools'),
        (PromptEngine, {}, MESSAGES, [TOOL], 'has no native tools'),
        (MessagesEngine, {}, MESSAGES, 'weather', 'tools must be a list'),
        (MessagesEngine, {}, MESSAGES, {'function': {'name': 'x'}}, 'tools must be a list'),
        (MessagesEngine, {}, MESSAGES, [{'type': 'function'}], 'tool 0 must be'),
        (MessagesEngine, {}, MESSAGES, [TOOL, 'weather'], 'tool 1 must be'),
        (MessagesEngine, {}, MESSAGES, [{'type': 'function', 'function': {'description': 'x'}}], 'no function name'),
    ],
)
def test_bad_tools_raise_value_error(engine, kwargs, inputs, tools, match):
    llm = engine(**kwargs)
    with pytest.raises(ValueError, match=match):
        llm.prepare(inputs, tools=tools)
    with pytest.raises(ValueError, match=match):
        llm.stream(inputs, tools=tools)


def test_api_template_on_a_prompt_only_engine_is_rejected():
    llm = PromptEngine(meta_template=[dict(role='user', api_role='user'), dict(role='assistant', api_role='assistant')])
    with pytest.raises(ValueError, match='takes prompts only'):
        llm.chat([{'role': 'user', 'content': 'x'}])


def test_engine_without_hooks_says_what_it_lacks():
    with pytest.raises(NotImplementedError, match='implements no _stream hook'):
        BaseLLM().generate('x')


# ---------------------------------------------------------------------- inputs and outputs


@pytest.mark.parametrize('inputs', ['a string', 42, None])
def test_chat_needs_a_conversation(inputs):
    with pytest.raises(ValueError, match='chat takes a conversation'):
        PromptEngine().chat(inputs)


def test_chat_needs_at_least_one_message():
    with pytest.raises(ValueError, match='at least one message'):
        PromptEngine().chat([])


def test_generate_batches_keep_the_shape_and_order():
    llm = PromptEngine()
    assert llm.generate(['a', 'b', 'c']) == ['Hello!'] * 3
    assert [prompt for prompt, _ in llm.calls] == ['a', 'b', 'c']
    with pytest.raises(ValueError, match='at least one prompt'):
        llm.generate([])
    with pytest.raises(TypeError, match='prompt 1 must be a str'):
        llm.generate(['a', 3])


def test_chat_batch_returns_one_reply_per_conversation():
    llm = PromptEngine(meta_template='chatml')
    assert llm.chat([MESSAGES, MESSAGES[1:]]) == ['Hello!', 'Hello!']
    assert [prompt for prompt, _ in llm.calls] == [
        get_template('chatml').render(MESSAGES),
        get_template('chatml').render(MESSAGES[1:]),
    ]


def test_batch_concurrency_runs_requests_in_threads_and_keeps_order():
    class Parallel(PromptEngine):
        batch_concurrency = 4

        def _stream(self, request, params):
            self.calls.append((request.prompt, params))
            time.sleep(0.01)
            return iter([Chunk(text=request.prompt.upper(), finish_reason='stop')])

    llm = Parallel()
    assert llm.generate(list('abcdefgh')) == list('ABCDEFGH')


def test_stream_generate_yields_cumulative_text():
    assert list(PromptEngine().stream_generate('x')) == ['Hel', 'Hello', 'Hello!']
    with pytest.raises(TypeError, match='one prompt string'):
        PromptEngine().stream_generate(['x'])


def test_stream_chat_steps_end_with_the_whole_response():
    steps = list(PromptEngine(meta_template='chatml').stream_chat(MESSAGES))
    assert [status for status, _, _ in steps] == [ModelStatusCode.STREAM_ING] * 3 + [ModelStatusCode.END]
    assert [text for _, text, _ in steps] == ['Hel', 'Hello', 'Hello!', 'Hello!']
    assert all(extra is None for _, _, extra in steps[:-1])
    assert steps[-1][2] == Response(text='Hello!', finish_reason='stop', usage=Usage(completion_tokens=3))


def test_stream_chat_ends_with_tool_calls_in_the_response():
    class ToolEngine(MessagesEngine):
        def _stream(self, request, params):
            yield Chunk(tool_calls=[ToolCallDelta(index=0, id='c1', name='weather', arguments='{"city":')])
            yield Chunk(tool_calls=[ToolCallDelta(index=0, arguments=' "Oslo"}')], finish_reason='tool_calls')

    steps = list(ToolEngine().stream_chat(MESSAGES, tools=[TOOL]))
    assert len(steps) == 1
    status, text, response = steps[0]
    assert status == ModelStatusCode.END and text == ''
    assert response.finish_reason == 'tool_calls'
    assert response.tool_calls[0].function.parsed_arguments() == {'city': 'Oslo'}


# ---------------------------------------------------------------------- stop words


@pytest.mark.parametrize(
    'pieces', [['Hello<|im_end|>junk'], ['Hel', 'lo<|im', '_end|>', 'junk'], list('Hello<|im_end|>junk')]
)
def test_stop_words_are_applied_on_the_client(pieces):
    llm = PromptEngine(pieces, meta_template='chatml')
    response = llm.complete(MESSAGES)
    assert response.text == 'Hello'
    assert response.finish_reason == 'stop'
    assert llm.closed_sources == 1
    assert list(llm.stream_generate('x'))[-1] == 'Hello'
    steps = list(llm.stream_chat(MESSAGES))
    assert all('<|' not in text for _, text, _ in steps)
    assert steps[-1][1] == 'Hello'


def test_a_held_prefix_is_released_when_the_reply_ends():
    llm = PromptEngine(['Hello <|im'], meta_template='chatml')
    assert llm.generate('x') == 'Hello <|im'


def test_usage_and_finish_reason_survive_stop_filtering():
    llm = PromptEngine(['Hello', ' world'], stop_words=['zzz'])
    response = llm.complete('x')
    assert response.text == 'Hello world' and response.usage == Usage(completion_tokens=2)


# ---------------------------------------------------------------------- closing


def test_closing_a_stream_early_closes_the_engines_source():
    llm = PromptEngine(['a', 'b', 'c', 'd'])
    stream = llm.stream('x')
    assert next(stream).text == 'a'
    assert llm.closed_sources == 0
    stream.close()
    assert llm.closed_sources == 1


@pytest.mark.parametrize('method', ['stream_chat', 'stream_generate'])
def test_leaving_a_derived_stream_closes_the_engines_source(method):
    llm = PromptEngine(['a', 'b', 'c', 'd'], meta_template='chatml')
    with getattr(llm, method)(MESSAGES if method == 'stream_chat' else 'x') as stream:
        next(stream)
    assert llm.closed_sources == 1


def test_a_stop_word_closes_the_source_before_it_is_exhausted():
    llm = PromptEngine(['a', 'STOP', 'never', 'read'], stop_words=['STOP'])
    assert [chunk.text for chunk in llm.stream('x')] == ['a', '']
    assert llm.closed_sources == 1


async def test_closing_an_async_stream_early_stops_the_worker_thread():
    llm = PromptEngine(['a'] * 1000)
    stream = llm.astream('x')
    assert (await stream.__anext__()).text == 'a'
    await stream.aclose()
    for _ in range(200):
        if llm.closed_sources:
            break
        await asyncio.sleep(0.01)
    assert llm.closed_sources == 1
    assert any(name.startswith('lagent-stream') for name in llm.threads)


async def test_async_engine_errors_reach_the_caller():
    class Broken(PromptEngine):
        def _stream(self, request, params):
            yield Chunk(text='partial')
            raise ConnectionError('engine went away')

    with pytest.raises(ConnectionError, match='went away'):
        await Broken().agenerate('x')


def test_context_manager_calls_close():
    class Closing(PromptEngine):
        closed = False

        def close(self):
            self.closed = True

    with Closing() as llm:
        pass
    assert llm.closed


async def test_async_context_manager_calls_close():
    class Closing(PromptEngine):
        closed = False

        def close(self):
            self.closed = True

    async with Closing() as llm:
        pass
    assert llm.closed


def test_repr_names_the_engine_and_model():
    assert repr(PromptEngine()) == "PromptEngine(path='prompt-engine')"


@pytest.mark.parametrize('method', ['stream', 'stream_chat', 'stream_generate'])
def test_breaking_out_of_a_loop_closes_the_engines_source(method):
    llm = PromptEngine(['a', 'b', 'c', 'd'])
    for _ in getattr(llm, method)('x' if method != 'stream_chat' else MESSAGES):
        break
    assert llm.closed_sources == 1  # the dropped stream closed its source at once


def test_joining_messages_without_a_template_warns_once_per_engine():
    llm = PromptEngine()
    with pytest.warns(UserWarning, match='has no template: the messages are joined'):
        llm.chat(MESSAGES)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        llm.chat(MESSAGES)  # not again
        PromptEngine(meta_template='chatml').chat(MESSAGES)  # never with a template
