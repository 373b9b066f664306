"""A streaming chat loop on the embedded default model (SmolLM2-135M-Instruct).

    python examples/streaming_chat.py

Type a message and press Enter; the reply appears as it is generated. An
empty line or Ctrl-D ends the chat.
"""

from __future__ import annotations

from lagent.llms.llama_cpp import default_llm
from lagent.schema import ModelStatusCode


def main() -> None:
    history: list[dict[str, str]] = []
    with default_llm(max_new_tokens=256, temperature=0.7) as llm:
        while True:
            try:
                message = input('you> ').strip()
            except EOFError:
                break
            if not message:
                break
            history.append({'role': 'user', 'content': message})
            shown = ''
            print('bot> ', end='', flush=True)
            for status, text, _ in llm.stream_chat(history):
                if status == ModelStatusCode.STREAM_ING:
                    print(text[len(shown) :], end='', flush=True)
                    shown = text
            print(text[len(shown) :])
            history.append({'role': 'assistant', 'content': text})


if __name__ == '__main__':
    main()
