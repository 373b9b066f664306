"""The call examples of the original lagent LLM documentation (TritonClient,
LMDeployPipeline, LMDeployServer, LMDeployClient), run as users copied them.

Each class's examples run in order in one namespace. Only what names a
machine is replaced: the model id ``internlm/internlm2-chat-7b`` by the CPU
engine's scripted model (lmdeploy's own code runs; the replies are instant),
``'Your service addr'`` by the address of a real server (the Triton server of
the fixtures, whose model of instant replies is ``scripted``; for
LMDeployClient, the server the LMDeployServer example started), and the server
address ``0.0.0.0:23333`` by a free loopback port. ``LMDeployServer`` runs the ``lmdeploy`` first on PATH,
here the CPU engine's; ``LMDeployPipeline`` is built under ``cpu_engine()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from lagent.llms.base import BaseLLM
from lagent.llms.process import free_port
from lagent.schema import ModelStatusCode
from tests.fixtures.lmdeploy_cpu import cpu_engine, model_folder

TRITON = [
    """
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
""",
    """
response = chatbot.generate(
    inputs='hello',
    session_id=2967,
    request_id='1',
    sequence_start=True,
    sequence_end=True,
    max_new_tokens=2048,
    temperature=0.8
)
""",
    """
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
""",
]

PIPELINE = [
    """
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
""",
    """
response = chatbot.generate(
    inputs='hello',
    max_new_tokens=2048,
    temperature=0.8
)
""",
]

SERVER = [
    """
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
""",
    """
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
""",
    """
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
""",
]

CLIENT = [
    """
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
""",
    """
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
""",
    SERVER[2],  # the same stream_chat example
]


def run(examples: list[str], replacements: dict[str, str], namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the examples in order in one namespace, after the replacements (each must apply)."""
    namespace = {} if namespace is None else namespace
    for index, example in enumerate(examples):
        code = example
        for old, new in replacements.items():
            code = code.replace(old, new)
        exec(compile(code, f'<lagent docs example {index}>', 'exec'), namespace)
    source = ''.join(examples)
    unused = [old for old in replacements if old not in source]
    assert not unused, f'replacements that match nothing: {unused}'
    return namespace


def check_results(namespace: dict[str, Any]) -> None:
    assert isinstance(namespace['response'], str) and namespace['response'].strip()
    if 'status' in namespace:
        assert namespace['status'] == ModelStatusCode.END and namespace['res'].strip()


@pytest.fixture(scope='module')
def model() -> str:
    return repr(str(model_folder('scripted')))


def test_triton_client_examples(triton_addr: str) -> None:
    namespace = run(TRITON, {"'Your service addr'": repr(triton_addr), "'internlm2-chat-7b'": "'scripted'"})
    try:
        check_results(namespace)
    finally:
        namespace['chatbot'].close()


def test_lmdeploy_pipeline_examples(model: str) -> None:
    with cpu_engine():
        namespace = run(PIPELINE[:1], {"'internlm/internlm2-chat-7b'": model})
    try:
        run(PIPELINE[1:], {}, namespace)
        check_results(namespace)
    finally:
        namespace['chatbot'].close()


def test_lmdeploy_server_and_client_examples(
    model: str, lmdeploy_command: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('PATH', f'{lmdeploy_command.parent}{os.pathsep}{os.environ.get("PATH", "")}')
    address = {"'internlm/internlm2-chat-7b'": model, "'0.0.0.0'": "'127.0.0.1'", '23333': str(free_port())}
    server = run(SERVER, address)
    try:
        check_results(server)
        assert server['chatbot'].model_name == 'internlm2-chat-7b'
        client = run(CLIENT, {"'Your service addr'": repr(server['chatbot'].process.url)})
        check_results(client)
        assert client['res'] == server['res']  # the same scripted model, the same conversation
        client['chatbot'].close()
    finally:
        llm: BaseLLM = server['chatbot']
        llm.close()
