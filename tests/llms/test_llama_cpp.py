"""LlamaCpp on the real SmolLM2-135M-Instruct: what the shared contract suite does
not cover (chat template, llama.cpp function calling, threads, cancellation,
lifecycle, missing extras)."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import llama_cpp
import pytest

from lagent.errors import EngineUnavailableError, LLMError, MissingExtraError
from lagent.llms.llama_cpp import LlamaCpp, default_llm
from lagent.schema import ModelStatusCode
from tests.fixtures.waiting import wait_until

PROMPT = '<|im_start|>user\nWrite a sentence about the sea.<|im_end|>\n<|im_start|>assistant\n'
GREEDY = dict(temperature=0, max_new_tokens=24)
MULTIPLY = {
    'type': 'function',
    'function': {
        'name': 'multiply',
        'description': 'Multiply two integers.',
        'parameters': {
            'type': 'object',
            'properties': {'a': {'type': 'integer'}, 'b': {'type': 'integer'}},
            'required': ['a', 'b'],
        },
    },
}
ASK_TOOL = [
    {'role': 'system', 'content': 'You are a helpful assistant.'},
    {'role': 'user', 'content': 'What is 37 * 12? Use the multiply tool.'},
]
FORCE_MULTIPLY = {'type': 'function', 'function': {'name': 'multiply'}}
TOOL_RESULT = 'The product is 444.'


def _after_the_tool_ran(assistant_content: str | None) -> list[dict]:
    """ASK_TOOL answered by a multiply call (given with ``assistant_content``) and its result."""
    call = {'id': 'call_7', 'type': 'function', 'function': {'name': 'multiply', 'arguments': '{"a": 37, "b": 12}'}}
    return [
        *ASK_TOOL,
        {'role': 'assistant', 'content': assistant_content, 'tool_calls': [call]},
        {'role': 'tool', 'tool_call_id': 'call_7', 'content': TOOL_RESULT},
    ]


@pytest.fixture
def llm(llamacpp_engines) -> LlamaCpp:
    return llamacpp_engines()


@pytest.fixture
def own_llm(smollm2_path: Path):
    """An engine of the test's own, for tests that close it."""
    engine = LlamaCpp(smollm2_path)
    yield engine
    engine.close()


def _stream_workers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == 'lagent-stream']


def test_greedy_reply_and_usage_equal_raw_llama_cpp(llm: LlamaCpp, smollm2_path: Path) -> None:
    raw = llama_cpp.Llama(str(smollm2_path), n_ctx=2048, verbose=False)
    try:
        expected = raw.create_completion(PROMPT, max_tokens=24, temperature=0)
    finally:
        raw.close()
    response = llm.complete(PROMPT, **GREEDY)
    assert response.text == expected['choices'][0]['text']
    assert response.finish_reason == expected['choices'][0]['finish_reason']
    assert response.usage is not None
    assert response.usage.model_dump() == expected['usage']


def test_default_llm_is_the_embedded_smollm2(smollm2_path: Path) -> None:
    with default_llm() as llm:
        assert Path(llm.path) == smollm2_path
        assert llm.chat([{'role': 'user', 'content': 'Say hello.'}], temperature=0, max_new_tokens=8).strip()


def test_chat_without_template_uses_the_gguf_chat_template(llm: LlamaCpp) -> None:
    conversation = [{'role': 'user', 'content': 'Name three colours.'}]
    request = llm.prepare(conversation)
    assert request.prompt is None and request.messages == conversation
    response = llm.complete(conversation, **GREEDY)
    assert response.text.strip()
    assert '<|im_end|>' not in response.text and '<|im_start|>' not in response.text
    # the GGUF template adds SmolLM's system prompt: far more prompt tokens than the user's words
    assert response.usage is not None and response.usage.prompt_tokens > 20
    assert 0 < response.usage.completion_tokens <= 24


def test_chat_with_a_meta_template_renders_the_prompt_itself(llamacpp_engines) -> None:
    chatml = [
        dict(role='user', begin='<|im_start|>user\n', end='<|im_end|>\n'),
        dict(role='assistant', begin='<|im_start|>assistant\n', end='<|im_end|>\n', generate=True),
    ]
    llm = llamacpp_engines(meta_template=chatml)
    conversation = [{'role': 'user', 'content': 'Write a sentence about the sea.'}]
    assert llm.prepare(conversation).prompt == PROMPT
    assert llm.chat(conversation, **GREEDY) == llm.generate(PROMPT, **GREEDY)


def test_tools_with_automatic_choice_return_a_tool_call(llm: LlamaCpp) -> None:
    response = llm.complete(ASK_TOOL, tools=[MULTIPLY], **GREEDY)
    assert response.finish_reason == 'tool_calls'
    assert len(response.tool_calls) == 1
    call = response.tool_calls[0]
    assert call.function.name == 'multiply' and call.id
    arguments = call.function.parsed_arguments()
    assert set(arguments) == {'a', 'b'} and all(isinstance(value, int) for value in arguments.values())
    assert response.usage is not None and response.usage.prompt_tokens > 50


def test_tools_with_a_forced_choice_stream_tool_call_deltas(llm: LlamaCpp) -> None:
    chunks = list(llm.stream(ASK_TOOL, tools=[MULTIPLY], tool_choice=FORCE_MULTIPLY, **GREEDY))
    deltas = [delta for chunk in chunks for delta in chunk.tool_calls or []]
    assert len(deltas) > 2, 'the arguments should arrive in pieces'
    assert {delta.name for delta in deltas} == {'multiply'}
    assert chunks[-1].finish_reason == 'tool_calls'
    steps = list(llm.stream_chat(ASK_TOOL, tools=[MULTIPLY], tool_choice=FORCE_MULTIPLY, **GREEDY))
    status, _, response = steps[-1]
    assert status == ModelStatusCode.END and response is not None
    assert response.tool_calls[0].function.arguments == ''.join(delta.arguments for delta in deltas)
    assert set(response.tool_calls[0].function.parsed_arguments()) == {'a', 'b'}


def test_a_tool_call_message_without_content_is_accepted_with_tools(llm: LlamaCpp) -> None:
    response = llm.complete(_after_the_tool_ran(None), tools=[MULTIPLY], tool_choice=FORCE_MULTIPLY, **GREEDY)
    assert response.tool_calls and response.tool_calls[0].function.name == 'multiply'


def _evaluated_text(llm: LlamaCpp) -> str:
    """What the llama.cpp context holds after the last generation: its prompt and reply."""
    llama = llm._llama
    return llama.detokenize(llama.input_ids[: llama.n_tokens].tolist(), special=True).decode('utf-8')


def test_the_function_calling_prompt_shows_the_model_a_tool_result(llm: LlamaCpp) -> None:
    # content '' isolates this from the None-content case above
    response = llm.complete(_after_the_tool_ran(''), tools=[MULTIPLY], tool_choice=FORCE_MULTIPLY, **GREEDY)
    assert response.tool_calls
    evaluated = _evaluated_text(llm)
    assert 'functions.multiply:' in evaluated, 'the function-calling template rendered the prompt'
    assert TOOL_RESULT in evaluated
    result_turn = evaluated[evaluated.index(TOOL_RESULT) - 80 :]
    assert 'call_7' in result_turn and 'multiply' in result_turn, 'the result names its call'
    assert '<|im_start|>tool' not in evaluated, 'no turn whose content the template drops'


def test_max_new_tokens_bounds_a_tool_call_llama_cpp_will_not_stream(llm: LlamaCpp) -> None:
    # SmolLM2 writes this call's arguments in 15 tokens
    response = llm.complete(ASK_TOOL, tools=[MULTIPLY], temperature=0, max_new_tokens=5)
    assert response.usage is not None and response.usage.completion_tokens == 5
    assert response.finish_reason == 'length'
    assert response.tool_calls and response.tool_calls[0].function.name == 'multiply'


def test_tools_answered_in_text_give_the_text(llm: LlamaCpp) -> None:
    response = llm.complete([{'role': 'user', 'content': 'Say hello.'}], tools=[MULTIPLY], **GREEDY)
    assert response.tool_calls == []
    assert response.text.strip() and 'functions.' not in response.text


def test_tool_choice_none_ignores_the_tools(llm: LlamaCpp) -> None:
    response = llm.complete(ASK_TOOL, tools=[MULTIPLY], tool_choice='none', **GREEDY)
    assert response.tool_calls == [] and response.text.strip()


def test_tool_choice_llama_cpp_cannot_do_is_refused(llm: LlamaCpp) -> None:
    with pytest.raises(ValueError, match='required'):
        llm.complete(ASK_TOOL, tools=[MULTIPLY], tool_choice='required')


def test_ignore_eos_generates_exactly_max_new_tokens(llm: LlamaCpp) -> None:
    natural = llm.complete(PROMPT, temperature=0, max_new_tokens=60)
    assert natural.finish_reason == 'stop'
    assert natural.usage is not None
    forced = llm.complete(PROMPT, temperature=0, max_new_tokens=natural.usage.completion_tokens + 8, ignore_eos=True)
    assert forced.finish_reason == 'length'
    assert forced.usage is not None and forced.usage.completion_tokens == natural.usage.completion_tokens + 8


def test_same_seed_same_sample(llm: LlamaCpp) -> None:
    first = llm.generate(PROMPT, temperature=1.0, top_k=0, seed=1234, max_new_tokens=16)
    assert llm.generate(PROMPT, temperature=1.0, top_k=0, seed=1234, max_new_tokens=16) == first


def test_threads_share_one_engine_one_generation_at_a_time(llm: LlamaCpp) -> None:
    expected = llm.generate(PROMPT, **GREEDY)
    results: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(llm.generate(PROMPT, **GREEDY))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert results == [expected] * 3


def test_a_second_stream_in_the_same_thread_fails_instead_of_deadlocking(llm: LlamaCpp) -> None:
    with llm.stream(PROMPT, **GREEDY) as stream:
        next(stream)
        with pytest.raises(LLMError, match='one generation at a time'):
            llm.generate(PROMPT, **GREEDY)
    assert llm.generate(PROMPT, **GREEDY)


async def test_closing_an_async_stream_stops_generation(llm: LlamaCpp) -> None:
    stream = llm.astream(PROMPT, temperature=0, max_new_tokens=2000, ignore_eos=True)
    await stream.__anext__()
    await stream.aclose()
    assert await asyncio.to_thread(wait_until, lambda: not _stream_workers(), 120)
    # the context holds what was evaluated: the prompt and the few tokens before the close, not 2000
    assert llm._llama.n_tokens < 200
    assert await llm.agenerate(PROMPT, temperature=0, max_new_tokens=4)


async def test_cancelling_the_reading_task_stops_generation(llm: LlamaCpp) -> None:
    first = asyncio.Event()

    async def read() -> None:
        async for _ in llm.astream(PROMPT, temperature=0, max_new_tokens=2000, ignore_eos=True):
            first.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(wait_until, lambda: not _stream_workers(), 120)
    assert llm._llama.n_tokens < 200


def test_close_frees_the_model_and_later_calls_fail_clearly(own_llm: LlamaCpp) -> None:
    assert own_llm.generate(PROMPT, temperature=0, max_new_tokens=2)
    own_llm.close()
    own_llm.close()  # twice is fine
    with pytest.raises(EngineUnavailableError, match='closed'):
        own_llm.generate(PROMPT)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match='no GGUF file'):
        LlamaCpp(tmp_path / 'absent.gguf')


def test_a_file_llama_cpp_cannot_load_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / 'bogus.gguf'
    bogus.write_bytes(b'not a gguf file')
    with pytest.raises(EngineUnavailableError, match=r'bogus\.gguf'):
        LlamaCpp(bogus)


def test_missing_llama_cpp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, 'llama_cpp', None)
    with pytest.raises(MissingExtraError, match=r'pip install "lagent\[llamacpp\]"'):
        LlamaCpp()


def test_missing_default_model_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr('importlib.util.find_spec', lambda name, *args: None)
    with pytest.raises(MissingExtraError, match=r'pip install "lagent\[llamacpp\]"'):
        default_llm()
