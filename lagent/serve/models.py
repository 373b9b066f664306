"""What a server serves: engines and agents under the names clients put in ``model``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Union

from lagent.actions import ActionExecutor
from lagent.agents import AgentMemory, BaseAgent, FunctionCallAgent
from lagent.agents.base import ToolsLike
from lagent.images import ImagePolicy
from lagent.llms.base import BaseLLM
from lagent.serve.errors import APIError

__all__ = ['ModelRegistry', 'Served', 'ServedAgent']


class ServedAgent:
    """An agent served as a model.

    Each conversation gets an agent of its own (an agent keeps one
    conversation), built on the same engine and sharing one set of tools; the
    tools run on the server.

    Args:
        llm: The engine the agent asks.
        tools: An :class:`~lagent.actions.ActionExecutor`, or the tools to build
            one from (then closed by :meth:`close`).
        agent: The agent class (any :class:`~lagent.agents.BaseAgent`).
        tool_timeout: Seconds a tool call may take, when the executor is built here.
        **agent_kwargs: Further keywords of the agent class (``max_turn``,
            ``system_prompt``, ``tool_choice``, generation settings...).

    Raises:
        TypeError: ``agent`` is not an agent class.
        ValueError: The agent class refused the keywords (checked by building one now).
    """

    def __init__(
        self,
        llm: BaseLLM,
        tools: ToolsLike = None,
        *,
        agent: type[BaseAgent] = FunctionCallAgent,
        tool_timeout: float | None = 30.0,
        **agent_kwargs: Any,
    ):
        if not (isinstance(agent, type) and issubclass(agent, BaseAgent)):
            raise TypeError(f'agent must be a lagent.agents.BaseAgent subclass, got {agent!r}')
        self.llm = llm
        self.agent_class = agent
        self.agent_kwargs = dict(agent_kwargs)
        self._owns_executor = not isinstance(tools, ActionExecutor)
        if isinstance(tools, ActionExecutor):
            self.executor = tools
        elif isinstance(tools, (str, bytes, Mapping)):
            raise TypeError('tools must be an ActionExecutor or a list of tools')
        else:
            self.executor = ActionExecutor(list(tools or ()), timeout=tool_timeout)
        try:
            self.make()  # a bad keyword fails now, not at the first request
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.agent_class.__name__}, llm={self.llm!r}, tools={self.executor.names!r})'

    def make(self, memory: AgentMemory | None = None) -> BaseAgent:
        """A new agent holding ``memory`` (a new conversation when ``None``)."""
        return self.agent_class(self.llm, self.executor, memory=memory, **self.agent_kwargs)

    def close(self) -> None:
        """Close the tools, if they were built here."""
        if self._owns_executor:
            self.executor.close()


Served = Union[BaseLLM, ServedAgent]
"""A served model: an engine, or an agent."""


class ModelRegistry:
    """The served models by name, routing requests by their ``model`` field.

    An engine still on the default :class:`~lagent.images.ImagePolicy` gets
    :meth:`ImagePolicy.for_server() <lagent.images.ImagePolicy.for_server>`:
    a client's image is never fetched nor read from this machine's files.

    Args:
        models: Engines and agents by the name clients will use.

    Raises:
        ValueError: No models, an empty name, or a value that is neither an engine nor a :class:`ServedAgent`.
    """

    def __init__(self, models: Mapping[str, Served]):
        if not models:
            raise ValueError('serve at least one model')
        for name, served in models.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f'a served model needs a non-empty name, got {name!r}')
            if not isinstance(served, (BaseLLM, ServedAgent)):
                raise ValueError(
                    f'model {name!r} must be an engine (BaseLLM) or a ServedAgent, got {type(served).__name__}'
                )
        self._models = dict(models)
        self.created = int(time.time())
        for engine in self.engines():
            # images in requests come from clients: no fetching, no local files, unless the engine was
            # given an image policy of its own
            if engine.image_policy == ImagePolicy():
                engine.image_policy = ImagePolicy.for_server()

    @property
    def names(self) -> list[str]:
        """The served names, in the order given."""
        return list(self._models)

    def get(self, name: str) -> Served:
        """The model called ``name``.

        Raises:
            APIError: 404 for a name that is not served.
        """
        served = self._models.get(name)
        if served is None:
            raise APIError(
                404,
                f'the model {name!r} does not exist; this server serves: {", ".join(self._models)}',
                param='model',
                code='model_not_found',
            )
        return served

    def listing(self) -> dict[str, Any]:
        """The ``GET /v1/models`` answer; ``lagent`` tells engines from agents."""
        return {'object': 'list', 'data': [self._describe(name, served) for name, served in self._models.items()]}

    def _describe(self, name: str, served: Served) -> dict[str, Any]:
        entry: dict[str, Any] = {'id': name, 'object': 'model', 'created': self.created, 'owned_by': 'lagent'}
        if isinstance(served, ServedAgent):
            entry['lagent'] = {
                'kind': 'agent',
                'agent': served.agent_class.__name__,
                'engine': type(served.llm).__name__,
                'tools': served.executor.names,
            }
        else:
            entry['lagent'] = {'kind': 'engine', 'engine': type(served).__name__, 'tool_calling': served.tool_calling}
        return entry

    def engines(self) -> list[BaseLLM]:
        """Every engine, served directly or behind an agent, once each."""
        found: dict[int, BaseLLM] = {}
        for served in self._models.values():
            llm = served.llm if isinstance(served, ServedAgent) else served
            found.setdefault(id(llm), llm)
        return list(found.values())

    def agents(self) -> Iterable[ServedAgent]:
        """The served agents."""
        return [served for served in self._models.values() if isinstance(served, ServedAgent)]
