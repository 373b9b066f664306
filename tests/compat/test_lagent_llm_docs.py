"""The snippets of lagent's LLM documentation ("Model": TritonClient,
LMDeployServer, LMDeployClient, LMDeployPipeline), run as written against real
servers of the test fixtures.

Only what points at a machine changes: the service address becomes the
fixture's, the model the fixtures serve (Triton's ``ensemble``; for lmdeploy,
``smollm2``: lmdeploy's own pipeline, api_server and command line on the CPU
engine of ``tests/fixtures/lmdeploy_cpu.py``), the lmdeploy server's
``server_name``/``server_port`` a free loopback port, and the calls'
``max_new_tokens=2048`` becomes 64: the fixtures' model has a context of 2048
tokens, prompt included.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lagent.llms.process import free_port
from lagent.schema import ModelStatusCode

TRITON_CLIENT = """
from lagent.llms.lmdepoly_wrapper import TritonClient
from lagent.llms.meta_template import INTERNLM2_META as META
chatbot = TritonClient(
    tritonserver_addr='Your service addr',
    model_name='internlm2-chat-7b',
    meta_template=META,
    session_len=16384 * 2,
    max_new_tokens=1024,
    top_p=0.8,
    top_k=None,
    temperature=0,
    repetition_penalty=1.0,
    stop_words=['<|im_end|>']
)
"""

TRITON_GENERATE = """
response = chatbot.generate(
    inputs='hello',
    session_id=2967,
    request_id='1',
    sequence_start=True,
    sequence_end=True,
    max_new_tokens=2048,
    temperature=0.8
)
"""

STREAM_CHAT_TRITON = """
for status, res, _ in chatbot.stream_chat(
    inputs=[
        dict(
            role='system',
            content='You are InternLM (书生·浦语), a helpful, honest, and harmless AI assistant developed by Shanghai AI Laboratory (上海人工智能实验室).',
        ),
        dict(
            role='user',
            content='hello'
        )
    ],
    session_id=2967,
    request_id='1',
    sequence_start=True,
    sequence_end=True,
    max_new_tokens=2048,
    temperature=0.8
):
    print(res, end='\\n', flush=True)
"""

LMDEPLOY_SERVER = """
from lagent.llms.lmdepoly_wrapper import LMDeployServer
from lagent.llms.meta_template import INTERNLM2_META as META
chatbot = LMDeployServer(
    path='internlm/internlm2-chat-7b',
    model_name='internlm2-chat-7b',
    server_name='0.0.0.0',
    server_port=23333,
    tp=1,
    meta_template=META,
    max_new_tokens=1024,
    top_p=0.8,
    top_k=None,
    temperature=0,
    repetition_penalty=1.0,
    stop_words=['<|im_end|>']
)
"""

LMDEPLOY_CLIENT = """
from lagent.llms.lmdepoly_wrapper import LMDeployClient
from lagent.llms.meta_template import INTERNLM2_META as META
chatbot = LMDeployClient(
    url='Your service addr',
    model_name='internlm2-chat-7b',
    meta_template=META,
    max_new_tokens=1024,
    top_p=0.8,
    top_k=None,
    temperature=0,
    repetition_penalty=1.0,
    stop_words=['<|im_end|>']
)
"""

LMDEPLOY_GENERATE = """
response = chatbot.generate(
    inputs='hello',
    session_id=2967,
    sequence_start=True,
    sequence_end=True,
    ignore_eos=False,
    timeout=30,
    max_new_tokens=2048,
    temperature=0.8
)
"""

LMDEPLOY_STREAM_CHAT = """
for status, res, _ in chatbot.stream_chat(
    inputs=[
        dict(
            role='system',
            content='You are InternLM (书生·浦语), a helpful, honest, and harmless AI assistant developed by Shanghai AI Laboratory (上海人工智能实验室).',
        ),
        dict(
            role='user',
            content='hello'
        )
    ],
    session_id=2967,
    sequence_start=True,
    sequence_end=True,
    stream=True,
    ignore_eos=False,
    timeout=30,
    max_new_tokens=2048,
    temperature=0.8
):
    print(res, end='\\n', flush=True)
"""

PIPELINE = """
from lagent.llms.lmdepoly_wrapper import LMDeployPipeline
from lagent.llms.meta_template import INTERNLM2_META as META
chatbot = LMDeployPipeline(
    path='internlm/internlm2-chat-7b',
    model_name='internlm2-chat-7b',
    meta_template=META,
    max_new_tokens=1024,
    top_p=0.8,
    top_k=None,
    temperature=0,
    repetition_penalty=1.0,
    stop_words=['<|im_end|>']
)
"""


SHORTER = {'max_new_tokens=2048': 'max_new_tokens=64'}


PIPELINE_GENERATE = """
response = chatbot.generate(
    inputs='hello',
    max_new_tokens=2048,
    temperature=0.8
)
"""


def run(snippets: list[str], replacements: dict[str, str]) -> dict[str, object]:
    replacements = {**SHORTER, **replacements}
    namespace: dict[str, object] = {}
    for snippet in snippets:
        for old, new in replacements.items():
            snippet = snippet.replace(old, new)
        exec(compile(snippet, '<lagent docs>', 'exec'), namespace)
    return namespace


def check_stream(namespace: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    assert namespace['status'] == ModelStatusCode.END
    assert isinstance(namespace['response'], str)
    printed = capsys.readouterr().out
    assert printed.endswith(f'{namespace["res"]}\n')  # each step printed the whole text so far


@pytest.mark.slow
def test_triton_client_snippets(triton_addr: str, capsys: pytest.CaptureFixture[str]) -> None:
    snippets = [TRITON_CLIENT, TRITON_GENERATE, STREAM_CHAT_TRITON]
    namespace = run(
        snippets, {'Your service addr': triton_addr, "model_name='internlm2-chat-7b'": "model_name='ensemble'"}
    )
    check_stream(namespace, capsys)
    namespace['chatbot'].close()


@pytest.mark.slow
def test_lmdeploy_client_snippets(llamacpp_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    namespace = run([LMDEPLOY_CLIENT, LMDEPLOY_GENERATE, LMDEPLOY_STREAM_CHAT], {'Your service addr': llamacpp_url})
    check_stream(namespace, capsys)
    namespace['chatbot'].close()


@pytest.mark.slow
def test_lmdeploy_server_snippets(
    lmdeploy_command: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv('PATH', f'{lmdeploy_command.parent}{os.pathsep}{os.environ.get("PATH", "")}')
    port = free_port('127.0.0.1')
    replacements = {
        "path='internlm/internlm2-chat-7b'": "path='smollm2'",
        "server_name='0.0.0.0'": "server_name='127.0.0.1'",
        'server_port=23333': f'server_port={port}',
    }
    namespace = run([LMDEPLOY_SERVER, LMDEPLOY_GENERATE, LMDEPLOY_STREAM_CHAT], replacements)
    try:
        check_stream(namespace, capsys)
    finally:
        namespace['chatbot'].close()


@pytest.mark.slow
def test_lmdeploy_pipeline_snippets() -> None:
    from tests.fixtures.lmdeploy_cpu import cpu_engine

    with cpu_engine() as engines:
        namespace = run([PIPELINE, PIPELINE_GENERATE], {"path='internlm/internlm2-chat-7b'": "path='smollm2'"})
        assert isinstance(namespace['response'], str) and engines.built
        namespace['chatbot'].close()
