"""``GoogleScholar``: scholarly articles through SerpApi's Google Scholar engine
(needs the internet and a key)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lagent.actions._web import DEFAULT_TIMEOUT, WebError, failure, fetch, service_key
from lagent.actions.base_action import BaseAction
from lagent.actions.parser import BaseParser
from lagent.actions.tool import tool_api
from lagent.schema import ActionReturn

__all__ = ['GoogleScholar']


class GoogleScholar(BaseAction):
    """Search Google Scholar for articles: titles, citation counts, publication details.

    Args:
        api_key: The SerpApi key; defaults to the ``SERPER_API_KEY`` environment
            variable (the name lagent 0.2 read).
        base_url: The SerpApi search address.
        timeout: Seconds one search may take.
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a lagent 0.2 call reads its input.
        enable: Whether the action is offered to models.

    Raises:
        ValueError: No API key.
    """

    def __init__(
        self,
        api_key: str | None = None,
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] | None = None,
        enable: bool = True,
        *,
        base_url: str = 'https://serpapi.com/search',
        timeout: float = DEFAULT_TIMEOUT,
    ):
        super().__init__(description, parser, enable)
        self.api_key = service_key(
            api_key, 'SERPER_API_KEY', owner='GoogleScholar', keyword='api_key', what='a SerpApi key'
        )
        self.base_url = base_url
        self.timeout = timeout

    def __repr__(self) -> str:
        return 'GoogleScholar()'

    @tool_api(explode_return=True)
    def search_google_scholar(
        self,
        query: str,
        cites: str | None = None,
        as_ylo: int | None = None,
        as_yhi: int | None = None,
        scisbd: int | None = None,
        cluster: str | None = None,
        hl: str | None = None,
        lr: str | None = None,
        start: int | None = None,
        num: int | None = None,
        as_sdt: str | None = None,
        safe: str | None = None,
        filter: str | None = None,
        as_vis: str | None = None,
    ) -> dict[str, list[Any]] | ActionReturn:
        """Search Google Scholar for scholarly articles matching a query.

        Args:
            query: What to search for.
            cites: The id of an article whose citing articles to list.
            as_ylo: The first publication year to include.
            as_yhi: The last publication year to include.
            scisbd: 1 or 2 to list only articles added in the last year, by date (1: abstracts only).
            cluster: The id of an article whose versions to list.
            hl: The interface language, e.g. "en".
            lr: Languages to limit the results to, e.g. "lang_en".
            start: The offset of the first result (0, 10, 20...).
            num: Most results to return (at most 20).
            as_sdt: A search type or filter.
            safe: "active" to filter adult content.
            filter: "0" to include similar and omitted results.
            as_vis: "1" to leave citations out.

        Returns:
            dict: article information
                - title: the titles of the first three articles
                - cited_by: how often each was cited
                - organic_id: their result ids
                - snippets: their snippets
                - pub_info: their publication details
        """
        params = {
            'engine': 'google_scholar',
            'q': query,
            'cites': cites,
            'as_ylo': as_ylo,
            'as_yhi': as_yhi,
            'scisbd': scisbd,
            'cluster': cluster,
            'hl': hl,
            'lr': lr,
            'start': start,
            'num': num,
            'as_sdt': as_sdt,
            'safe': safe,
            'filter': filter,
            'as_vis': as_vis,
            'api_key': self.api_key,
        }
        try:
            data = fetch(
                'Google Scholar', 'GET', self.base_url, params=params, timeout=self.timeout, secrets=(self.api_key,)
            ).json()
        except WebError as exc:
            return failure(exc)
        found: dict[str, list[Any]] = {'title': [], 'cited_by': [], 'organic_id': [], 'snippets': [], 'pub_info': []}
        for item in (data.get('organic_results') or [])[:3]:
            found['title'].append(item.get('title', ''))
            found['cited_by'].append(((item.get('inline_links') or {}).get('cited_by') or {}).get('total', 0))
            found['organic_id'].append(item.get('result_id', ''))
            found['snippets'].append(item.get('snippet', ''))
            found['pub_info'].append((item.get('publication_info') or {}).get('summary', ''))
        return found
