"""``GoogleSearch``: Google results through the Serper API (needs the internet and a key)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lagent.actions._web import DEFAULT_TIMEOUT, WebError, fetch, service_key
from lagent.actions.base_action import BaseAction
from lagent.actions.parser import BaseParser
from lagent.actions.tool import tool_api
from lagent.schema import ActionReturn, ActionStatusCode

__all__ = ['GoogleSearch']

RESULT_KEYS = {'search': 'organic', 'news': 'news', 'places': 'places', 'images': 'images'}
"""Where each Serper search type puts its results."""


class GoogleSearch(BaseAction):
    """Search Google (through serper.dev) for short, up-to-date answers to a question.

    Args:
        api_key: The Serper API key; defaults to the ``SERPER_API_KEY`` environment variable.
        timeout: Seconds one search may take.
        search_type: ``'search'``, ``'news'``, ``'places'`` or ``'images'``.
        base_url: The Serper API address.
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a lagent 0.2 call reads its input.
        enable: Whether the action is offered to models.

    Raises:
        ValueError: No API key, or an unknown ``search_type``.
    """

    result_key_for_type = RESULT_KEYS

    def __init__(
        self,
        api_key: str | None = None,
        timeout: float = 5,
        search_type: str = 'search',
        *,
        base_url: str = 'https://google.serper.dev',
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] | None = None,
        enable: bool = True,
    ):
        super().__init__(description, parser, enable)
        api_key = service_key(
            api_key, 'SERPER_API_KEY', owner='GoogleSearch', keyword='api_key', what='a Serper API key'
        )
        if search_type not in RESULT_KEYS:
            raise ValueError(f'search_type must be one of {", ".join(RESULT_KEYS)}, got {search_type!r}')
        self.api_key = api_key
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.search_type = search_type
        self.base_url = base_url.rstrip('/')

    def __repr__(self) -> str:
        return f'GoogleSearch(search_type={self.search_type!r})'

    @tool_api
    def run(self, query: str, k: int = 10) -> ActionReturn:
        """Search Google for a short answer to a specific question.

        Args:
            query: The search query.
            k: How many results to read.
        """
        status, response = self._search(query, num=k)
        if status == -1:
            return ActionReturn(errmsg=str(response), state=ActionStatusCode.HTTP_ERROR)
        if status != 200:
            return ActionReturn(errmsg=str(status), state=ActionStatusCode.API_ERROR)
        snippets = self._parse_results(response, k)
        return ActionReturn(result=[{'type': 'text', 'content': str(snippets)}], state=ActionStatusCode.SUCCESS)

    def _search(self, search_term: str, search_type: str | None = None, **kwargs: Any) -> tuple[int, Any]:
        """Ask Serper; return ``(200, results)``, ``(status, message)`` for an error
        status, or ``(-1, message)`` when there was no reply."""
        body = {'q': search_term, **{key: value for key, value in kwargs.items() if value is not None}}
        headers = {'X-API-KEY': self.api_key, 'Content-Type': 'application/json'}
        url = f'{self.base_url}/{search_type or self.search_type}'
        try:
            reply = fetch(
                'Serper', 'POST', url, json_body=body, headers=headers, timeout=self.timeout, secrets=(self.api_key,)
            )
            return reply.status, reply.json()
        except WebError as exc:
            return (-1 if exc.status is None else exc.status), str(exc)

    def _parse_results(self, results: dict[str, Any], k: int = 10) -> list[str]:
        """The answer box when there is one, else knowledge-graph facts and result snippets."""
        answer = results.get('answerBox') or {}
        for key in ('answer', 'snippet', 'snippetHighlighted'):
            if answer.get(key):
                value = answer[key]
                return [value.replace('\n', ' ')] if isinstance(value, str) else list(value)
        snippets = []
        graph = results.get('knowledgeGraph') or {}
        title = graph.get('title', '')
        if graph.get('type'):
            snippets.append(f'{title}: {graph["type"]}.')
        if graph.get('description'):
            snippets.append(graph['description'])
        snippets.extend(f'{title} {name}: {value}.' for name, value in (graph.get('attributes') or {}).items())
        for result in (results.get(RESULT_KEYS[self.search_type]) or [])[:k]:
            if result.get('snippet'):
                snippets.append(result['snippet'])
            snippets.extend(f'{name}: {value}.' for name, value in (result.get('attributes') or {}).items())
        return snippets or ['No good Google Search Result was found']
