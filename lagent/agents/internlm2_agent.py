"""lagent 0.2's module of the InternLM2 agent, with its prompt constants.

The agent and its protocol are :class:`~lagent.agents.Internlm2Agent` and
:class:`~lagent.agents.Internlm2Protocol`; the Chinese prompts below are for
InternLM2 chat models, as in lagent 0.2 (worded anew).
"""

from __future__ import annotations

from lagent.agents.internlm2 import Internlm2Agent, Internlm2Protocol

__all__ = ['API_PREFIX', 'INTERPRETER_CN', 'META_CN', 'PLUGIN_CN', 'Internlm2Agent', 'Internlm2Protocol']

API_PREFIX = "This is one function of the tool '{tool_name}'. It does the following:\n{description}"
"""Introduces one method of a toolkit in a tool list (``{tool_name}``, ``{description}``)."""

META_CN = '开启工具和代码解释器时，请根据需要选择合适的工具来完成任务。'
"""The opening system prompt (Chinese)."""

INTERPRETER_CN = (
    '你可以在一个有状态的 Python 环境（类似 Jupyter 笔记本）中运行代码：把含有 Python 代码的消息发给解释器，'
    '代码就会在该环境中执行，你会看到它的输出。它适用于计算与数学问题、数据处理与分析、绘图、'
    '文本处理、演示编程概念，以及读写 CSV、JSON 等文件。'
)
"""Introduces the code interpreter (Chinese)."""

PLUGIN_CN = (
    '你可以使用以下工具：\n{prompt}\n'
    '如果已经获得足够的信息，请直接回答，不要做不必要的工具调用；只使用上面列出的工具，不要编造工具。'
)
"""Introduces the plugins (Chinese); ``{prompt}`` becomes their JSON list."""
