"""Several engines and agents from one config (a mapping, or a JSON/YAML file),
the way FastChat registers its API models from ``api_endpoints.json``::

    {
      "models": {
        "smollm2": {"type": "llamacpp", "max_new_tokens": 256},
        "upstream": {"type": "openai", "url": "http://127.0.0.1:8000", "model_name": "smollm2"}
      },
      "agents": {
        "calculator-agent": {
          "llm": "smollm2",
          "type": "FunctionCallAgent",
          "tools": ["calculator"],
          "max_turn": 4
        }
      }
    }

Each entry of ``models`` is an engine config as :func:`lagent.llms.build_llm`
takes it, served under its key. Each entry of ``agents`` names its engine in
``llm`` (a key of ``models``, or an engine config of its own, which is then
not served by itself), its class in ``type`` (``FunctionCallAgent`` by
default, ``ReAct``, ``Internlm2Agent`` or ``'package.module:Class'``), its
tools in ``tools`` (see :func:`lagent.actions.builtin.tools_by_name`); the
other keys are the agent's keywords (``max_turn``, ``system_prompt``,
``tool_choice``, generation settings...).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping
from typing import Any

from lagent.actions.builtin import tools_by_name
from lagent.agents import BaseAgent, FunctionCallAgent, Internlm2Agent, ReAct
from lagent.llms.base import BaseLLM
from lagent.llms.config import build_llm, load_config
from lagent.serve.models import Served, ServedAgent

__all__ = ['ServeConfig', 'is_serve_config', 'load_serve_config']

_AGENTS: dict[str, type[BaseAgent]] = {
    'FunctionCallAgent': FunctionCallAgent,
    'ReAct': ReAct,
    'Internlm2Agent': Internlm2Agent,
    'function_call': FunctionCallAgent,
    'react': ReAct,
    'internlm2': Internlm2Agent,
}
_SECTIONS = ('models', 'agents')


class ServeConfig:
    """The engines and agents a config describes, built and ready to serve.

    Attributes:
        models: Engines and agents by served name, for :class:`~lagent.serve.Server`.
    """

    def __init__(self, models: dict[str, Served], engines: list[BaseLLM]):
        self.models = models
        self._engines = engines

    def close(self) -> None:
        """Close every engine built for the config (stopping child servers) and the agents' tools."""
        for served in self.models.values():
            if isinstance(served, ServedAgent):
                served.close()
        for llm in self._engines:
            llm.close()

    def __enter__(self) -> ServeConfig:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def is_serve_config(data: Mapping[str, Any]) -> bool:
    """Whether a config lists models and agents to serve (rather than being one engine's config)."""
    return any(section in data for section in _SECTIONS)


def load_serve_config(config: Mapping[str, Any] | str | os.PathLike[str]) -> ServeConfig:
    """Build the engines and agents of a serve config.

    Args:
        config: A mapping with ``models`` and/or ``agents`` (see the module
            docstring), or the path of a ``.json``/``.yaml`` file holding one.

    Returns:
        The built models; close it (or give it to a server with ``close_models``) when done.

    Raises:
        ValueError: An unknown section, engine, agent class, tool or keyword,
            named in the message. Engines built before the error are closed.
        OSError: The file cannot be read.
    """
    data = dict(load_config(config) if isinstance(config, (str, os.PathLike)) else config)
    unknown = [key for key in data if key not in _SECTIONS]
    if unknown or not is_serve_config(data):
        raise ValueError(
            f'a serve config has the sections "models" and/or "agents"; got {", ".join(map(repr, data)) or "nothing"}'
        )
    models_section = _section(data, 'models')
    agents_section = _section(data, 'agents')
    built = ServeConfig({}, [])
    try:
        for name, engine_config in models_section.items():
            llm = _build_engine(engine_config, f'models.{name}')
            built._engines.append(llm)
            built.models[name] = llm
        for name, agent_config in agents_section.items():
            if name in built.models:
                raise ValueError(f'agents.{name}: the name is already used by a model')
            built.models[name] = _build_agent(agent_config, built, f'agents.{name}')
    except BaseException:
        built.close()
        raise
    if not built.models:
        raise ValueError('the serve config lists no models and no agents')
    return built


def _section(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    section = data.get(name) or {}
    if not isinstance(section, Mapping):
        raise ValueError(f'{name} must map names to configs, got {type(section).__name__}')
    for key, value in section.items():
        if not isinstance(value, Mapping):
            raise ValueError(f'{name}.{key} must be a mapping of keywords, got {type(value).__name__}')
    return dict(section)


def _build_engine(config: Mapping[str, Any], where: str) -> BaseLLM:
    try:
        return build_llm(config)
    except ValueError as exc:
        raise ValueError(f'{where}: {exc}') from None


def _build_agent(config: Mapping[str, Any], built: ServeConfig, where: str) -> ServedAgent:
    values = dict(config)
    engine = values.pop('llm', None)
    if isinstance(engine, str):
        llm = built.models.get(engine)
        if not isinstance(llm, BaseLLM):
            engines = ', '.join(key for key, value in built.models.items() if isinstance(value, BaseLLM))
            raise ValueError(f'{where}.llm: no model {engine!r} in "models" (models: {engines or "none"})')
    elif isinstance(engine, Mapping):
        llm = _build_engine(engine, f'{where}.llm')
        built._engines.append(llm)
    else:
        raise ValueError(f'{where}.llm: name a model of "models", or give an engine config')
    agent_class = _agent_class(values.pop('type', 'FunctionCallAgent'), where)
    tools = values.pop('tools', [])
    if isinstance(tools, str) or not isinstance(tools, list):
        raise ValueError(f'{where}.tools must be a list of tool names')
    try:
        return ServedAgent(llm, tools_by_name(tools), agent=agent_class, **values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f'{where}: {exc}') from None


def _agent_class(name: Any, where: str) -> type[BaseAgent]:
    if isinstance(name, str) and name in _AGENTS:
        return _AGENTS[name]
    if isinstance(name, str) and ':' in name:
        module_name, _, class_name = name.partition(':')
        agent = getattr(importlib.import_module(module_name), class_name, None)
        if inspect.isclass(agent) and issubclass(agent, BaseAgent):
            return agent
    known = ', '.join(name for name in _AGENTS if name[0].isupper())
    raise ValueError(f"{where}.type: unknown agent {name!r}; known: {known} (or 'package.module:Class')")
