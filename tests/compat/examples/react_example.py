# lagent 0.1.3's examples/react_example.py (InternLM/lagent, Apache-2.0), run by tests/compat; lines marked REWRITTEN reached the internet.
from lagent.actions.action_executor import ActionExecutor
from lagent.actions.python_interpreter import PythonInterpreter
from lagent.agents.react import ReAct
from lagent.llms.openai import GPTAPI


def input_prompt():
    print('\ndouble enter to end input >>> ', end='')
    sentinel = ''  # ends when this string is seen
    return '\n'.join(iter(input, sentinel))


def main():
    # set OPEN_API_KEY in your environment or directly pass it with key=''
    # REWRITTEN: the server address (the original called api.openai.com)
    import os
    model = GPTAPI(model_type='gpt-3.5-turbo', openai_api_base=os.environ['EXAMPLE_OPENAI_API_BASE'])

    chatbot = ReAct(
        llm=model,
        action_executor=ActionExecutor(actions=[PythonInterpreter()]),
    )

    while True:
        try:
            prompt = input_prompt()
        except UnicodeDecodeError:
            print('UnicodeDecodeError')
            continue
        if prompt == 'exit':
            exit(0)

        agent_return = chatbot.chat(prompt)
        print(agent_return.response)


if __name__ == '__main__':
    main()
