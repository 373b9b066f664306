"""Agent conversations kept on the server between requests, by ``session_id``."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from lagent.agents import BaseAgent
from lagent.serve.errors import APIError
from lagent.serve.models import ServedAgent

__all__ = ['Session', 'SessionStore']


@dataclass
class Session:
    """One conversation with a served agent."""

    id: str
    """The client's ``session_id``."""
    model: str
    """The served agent it belongs to."""
    agent: BaseAgent
    """The agent holding the conversation in its memory."""
    busy: bool = field(default=False)
    """Whether a request is running on it (one at a time)."""

    def describe(self) -> dict[str, Any]:
        """The ``GET /v1/sessions/{id}`` answer."""
        messages = [message.model_dump(mode='json', exclude_none=True) for message in self.agent.memory]
        return {'id': self.id, 'object': 'session', 'model': self.model, 'busy': self.busy, 'messages': messages}


class SessionStore:
    """The sessions of a server, the least recently used forgotten first beyond ``max_sessions``.

    Args:
        max_sessions: Most sessions kept; a new one beyond that evicts the least
            recently used idle one.

    Raises:
        ValueError: ``max_sessions`` below 1.
    """

    def __init__(self, max_sessions: int = 1000):
        if max_sessions < 1:
            raise ValueError(f'max_sessions must be at least 1, got {max_sessions}')
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session:
        """The session called ``session_id``.

        Raises:
            APIError: 404 for an unknown session.
        """
        session = self._sessions.get(session_id)
        if session is None:
            raise APIError(404, f'no session {session_id!r}', param='session_id', code='session_not_found')
        return session

    def claim(self, session_id: str, model: str, served: ServedAgent) -> Session:
        """The session to run a request on, created if new, marked busy until :meth:`release`.

        Raises:
            APIError: 400 if the session belongs to another model, 409 if a
                request is already running on it, 503 if every kept session is busy.
        """
        session = self._sessions.get(session_id)
        if session is None:
            self._make_room()
            session = Session(id=session_id, model=model, agent=served.make())
            self._sessions[session_id] = session
        elif session.model != model:
            raise APIError(
                400,
                f'session {session_id!r} belongs to model {session.model!r}, not {model!r}',
                param='session_id',
                code='session_model_mismatch',
            )
        if session.busy:
            raise APIError(
                409,
                f'session {session_id!r} is answering another request; wait for it to finish',
                param='session_id',
                code='session_busy',
            )
        session.busy = True
        self._sessions.move_to_end(session_id)
        return session

    def release(self, session: Session) -> None:
        """Mark a session idle again."""
        session.busy = False

    def delete(self, session_id: str) -> Session:
        """Forget a session.

        Raises:
            APIError: 404 for an unknown session, 409 while a request runs on it.
        """
        session = self.get(session_id)
        if session.busy:
            raise APIError(409, f'session {session_id!r} is answering a request', code='session_busy')
        del self._sessions[session_id]
        return session

    def _make_room(self) -> None:
        if len(self._sessions) < self.max_sessions:
            return
        for session_id, session in self._sessions.items():
            if not session.busy:
                del self._sessions[session_id]
                return
        raise APIError(
            503,
            f'all {self.max_sessions} sessions are busy; retry later',
            code='sessions_full',
            headers={'Retry-After': '1'},
        )
