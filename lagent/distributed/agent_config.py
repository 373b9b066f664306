"""``AgentConfig``: how each worker of a batch builds its agent, once."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from lagent.agents.base import BaseAgent
from lagent.llms.base import BaseLLM
from lagent.llms.config import build_llm, check_config_keys, resolve_engine
from lagent.llms.registry import find_engine

__all__ = ['AgentConfig', 'gpus_needed']

LLMSpec = Union[Mapping[str, Any], Callable[[], BaseLLM]]
"""An engine config for :func:`lagent.llms.build_llm`, or a function that returns an engine."""


@dataclass
class AgentConfig:
    """What each worker of a batch builds once: an engine, and an agent around it.

    The config travels to the workers (threads get a deep copy, Ray actors a
    pickled copy), so every worker has its own engine, tools and memory.

    Args:
        llm: An engine config for :func:`lagent.llms.build_llm` (``type`` and
            the engine's keywords), or a function of no arguments that returns
            an engine (it must be picklable to run on Ray).
        agent: The agent class, or the name of one in :mod:`lagent.agents`
            (``'FunctionCallAgent'``, ``'ReAct'``, ``'Internlm2Agent'``) or
            ``'package.module:ClassName'``.
        tools: The tools to give the agent (anything an
            :class:`~lagent.actions.ActionExecutor` accepts).
        options: Further keywords of the agent (``max_turn``, ``system_prompt``,
            generation settings...).

    Raises:
        ValueError: An unknown agent or engine, an engine config key the engine
            does not take, or an agent keyword the agent does not take.

    Example:
        >>> config = AgentConfig(llm={'type': 'ScriptedLLM', 'replies': ['4'] * 10}, options={'max_turn': 2})
        >>> config.build().chat('What is 2 + 2?').answer
        '4'
    """

    llm: LLMSpec
    agent: str | type[BaseAgent] = 'FunctionCallAgent'
    tools: Sequence[Any] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.llm, Mapping):
            config = dict(self.llm)
            if 'type' not in config:
                raise ValueError("the agent's llm config needs a 'type'")
            check_config_keys(resolve_engine(config.pop('type')), config)
        elif not callable(self.llm):
            raise ValueError(f'llm must be an engine config (a mapping) or a function, got {type(self.llm).__name__}')
        agent_class = resolve_agent(self.agent)
        parameters = inspect.signature(agent_class).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            unknown = [name for name in self.options if name not in parameters]
            if unknown:
                raise ValueError(f'{agent_class.__name__} does not take {", ".join(map(repr, unknown))}')
        if isinstance(self.tools, (str, bytes, Mapping)):
            raise ValueError('tools must be a list of tools')

    def build(self) -> BaseAgent:
        """Build the engine and the agent (in the worker)."""
        llm = build_llm(self.llm) if isinstance(self.llm, Mapping) else self.llm()
        try:
            return resolve_agent(self.agent)(llm, list(self.tools), **self.options)
        except BaseException:
            llm.close()
            raise


def resolve_agent(agent: str | type[BaseAgent]) -> type[BaseAgent]:
    """Return the agent class ``agent`` names (a class, a name in :mod:`lagent.agents`,
    or ``'package.module:ClassName'``).

    Raises:
        ValueError: No such agent class.
    """
    if isinstance(agent, str):
        module_name, _, name = agent.rpartition(':') if ':' in agent else ('lagent.agents', '', agent)
        try:
            found = getattr(importlib.import_module(module_name), name, None)
        except ModuleNotFoundError as exc:
            raise ValueError(f'agent {agent!r}: no module named {exc.name!r}') from None
    else:
        found = agent
    if not (inspect.isclass(found) and issubclass(found, BaseAgent)):
        raise ValueError(
            f'unknown agent {agent!r}: give an agent class, FunctionCallAgent, ReAct, Internlm2Agent '
            "or 'package.module:ClassName'"
        )
    return found


def gpus_needed(llm: LLMSpec) -> float:
    """How many GPUs an engine config asks for: ``tp`` (default 1) for engines that
    run only with CUDA (the lmdeploy pipeline and server), 1 for ``HFTransformer``
    on a ``cuda`` device, 0 otherwise (and for a
    function, whose needs cannot be seen: declare them yourself)."""
    if not isinstance(llm, Mapping):
        return 0
    engine = resolve_engine(llm['type'])
    specs = [find_engine(cls.__name__) for cls in engine.__mro__]
    if any(spec is not None and spec.needs_cuda for spec in specs):
        return int(llm.get('tp', 1))
    if any(cls.__name__ == 'HFTransformer' for cls in engine.__mro__) and str(llm.get('device', '')).startswith('cuda'):
        return 1
    return 0
