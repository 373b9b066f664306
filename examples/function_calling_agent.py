"""A function-calling agent with a calculator, on the embedded default model
(SmolLM2-135M-Instruct run by llama.cpp on the CPU), with default settings.

    python examples/function_calling_agent.py
    python examples/function_calling_agent.py "What is 19 * 23?"

With exactly one tool, the agent's first reply must call it (llama.cpp's
function calling then constrains the reply to valid JSON arguments), the
calculator computes the exact result, and the next reply answers from it.
Agents decode greedily, so the same question always takes the same steps.
Every run ends with an answer or says why it has none (see "How a run
finishes" in docs/agents.md).
"""

from __future__ import annotations

import sys

from lagent.actions import Calculator
from lagent.agents import AgentEvent, FunctionCallAgent
from lagent.llms.llama_cpp import default_llm

QUESTION = 'What is 37 * 12?'


class StepPrinter:
    """Prints the agent's steps as they happen: streamed text, tool calls, results, the answer."""

    def __init__(self) -> None:
        self.writing = False

    def __call__(self, event: AgentEvent) -> None:
        if event.kind == 'text_delta':
            if not self.writing:
                print('[assistant] ', end='')
                self.writing = True
            print(event.text, end='', flush=True)
            return
        if self.writing:
            print()
            self.writing = False
        if event.kind == 'tool_call':
            print(f'[tool call] {event.call.function.name} {event.call.function.arguments}')
        elif event.kind == 'tool_result':
            print(f'[tool result] {event.observation}')
        elif event.kind == 'final_answer':
            print(f'[answer {event.status.name}] {event.text}')


def main(question: str) -> None:
    with default_llm() as llm:
        agent = FunctionCallAgent(llm, [Calculator()])
        print(f'[user] {question}')
        show = StepPrinter()
        for event in agent.stream_chat(question):
            show(event)
    if event.status.name != 'END':
        sys.exit(f'no answer: {event.errmsg}')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else QUESTION)
