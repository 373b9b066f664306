"""The function-calling agent of ``function_calling_agent.py``, on a model served
by ``lmdeploy serve api_server`` and reached through ``LMDeployClient``.

    lmdeploy serve api_server internlm/internlm2_5-7b-chat --server-port 23333
    python examples/lmdeploy_client_agent.py http://127.0.0.1:23333 "What is 37 * 12?"

The server URL comes from the first argument or ``LMDEPLOY_URL``. lmdeploy's
chat endpoint supports native tool calls for the models it has tool parsers
for, so the model chooses its tools itself (``tool_choice='auto'``).
"""

from __future__ import annotations

import os
import sys

from function_calling_agent import StepPrinter

from lagent.actions import Calculator, PythonInterpreter
from lagent.agents import FunctionCallAgent
from lagent.llms.lmdeploy_client import LMDeployClient

QUESTION = 'What is 37 * 12?'


def main(url: str, question: str) -> None:
    with LMDeployClient(url=url) as llm, PythonInterpreter() as python:
        agent = FunctionCallAgent(llm, [Calculator(), python], temperature=0, max_new_tokens=512)
        print(f'[user] {question}')
        show = StepPrinter()
        for event in agent.stream_chat(question):
            show(event)


if __name__ == '__main__':
    server = sys.argv[1] if len(sys.argv) > 1 else os.environ.get('LMDEPLOY_URL', 'http://127.0.0.1:23333')
    main(server, sys.argv[2] if len(sys.argv) > 2 else QUESTION)
