"""Serve engines and agents over OpenAI's HTTP API, with a chat page; and the
clients that talk to a served agent.

:class:`Server` puts any engine, or an agent with its tools
(:class:`ServedAgent`), behind ``/v1/chat/completions``, ``/v1/completions``
and ``/v1/models``, so any OpenAI client can use it; ``lagent serve`` is the
same from the command line. :class:`AgentClient` and
:class:`AsyncAgentClient` talk to a served agent and get its steps back as
the agent's own events. This package needs only lagent's core dependencies.
"""

from lagent.serve.client import AgentClient, AsyncAgentClient
from lagent.serve.config import ServeConfig, load_serve_config
from lagent.serve.models import ServedAgent
from lagent.serve.server import Server, ServerThread

__all__ = [
    'AgentClient',
    'AsyncAgentClient',
    'ServeConfig',
    'ServedAgent',
    'Server',
    'ServerThread',
    'load_serve_config',
]
