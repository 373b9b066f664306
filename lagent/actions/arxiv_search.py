"""``ArxivSearch``: article metadata from arXiv's search API (needs the internet)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from typing import Any

from lagent.actions._web import DEFAULT_TIMEOUT, WebError, failure, fetch
from lagent.actions.base_action import BaseAction
from lagent.actions.parser import BaseParser
from lagent.actions.tool import tool_api
from lagent.schema import ActionReturn

__all__ = ['ArxivSearch']

_ATOM = '{http://www.w3.org/2005/Atom}'


class ArxivSearch(BaseAction):
    """Search arXiv.org for scientific articles (physics, mathematics, computer
    science, quantitative biology and finance, statistics, electrical
    engineering, economics) and read their metadata and abstracts.

    Args:
        top_k_results: How many articles to return.
        max_query_len: Longest query sent, in characters (longer ones are cut).
        doc_content_chars_max: Characters kept of each abstract.
        base_url: The arXiv API address (a query goes to ``<base_url>/query``).
        timeout: Seconds one search may take.
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a lagent 0.2 call reads its input.
        enable: Whether the action is offered to models.
    """

    def __init__(
        self,
        top_k_results: int = 3,
        max_query_len: int = 300,
        doc_content_chars_max: int = 1500,
        *,
        base_url: str = 'https://export.arxiv.org/api',
        timeout: float = DEFAULT_TIMEOUT,
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] | None = None,
        enable: bool = True,
    ):
        super().__init__(description, parser, enable)
        self.top_k_results = top_k_results
        self.max_query_len = max_query_len
        self.doc_content_chars_max = doc_content_chars_max
        self.base_url = base_url.rstrip('/')
        self.timeout = timeout

    @tool_api(explode_return=True)
    def get_arxiv_article_information(self, query: str) -> dict | ActionReturn:
        """Search arXiv and return the publication date, title, authors and abstract of the best matches.

        Args:
            query: What to search for.

        Returns:
            dict: article information
                * content (str): the articles found, separated by blank lines
        """
        params = {'search_query': f'all:{query[: self.max_query_len]}', 'start': 0, 'max_results': self.top_k_results}
        try:
            reply = fetch('arXiv', 'GET', f'{self.base_url}/query', params=params, timeout=self.timeout)
            entries = _entries(reply.body)
        except WebError as exc:
            return failure(exc)
        articles = [self._describe(entry) for entry in entries[: self.top_k_results]]
        return {'content': '\n\n'.join(articles) if articles else 'No arXiv article was found.'}

    def _describe(self, entry: ElementTree.Element) -> str:
        published = (_text(entry, 'updated') or _text(entry, 'published'))[:10]
        authors = ', '.join(_text(author, 'name') for author in entry.findall(f'{_ATOM}author'))
        summary = ' '.join(_text(entry, 'summary').split())[: self.doc_content_chars_max]
        title = ' '.join(_text(entry, 'title').split())
        return f'Published: {published}\nTitle: {title}\nAuthors: {authors}\nSummary: {summary}'


def _entries(body: bytes) -> list[ElementTree.Element]:
    try:
        feed = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise WebError(f'arXiv: the reply is not an Atom feed ({exc})') from None
    return feed.findall(f'{_ATOM}entry')


def _text(element: ElementTree.Element, tag: str) -> str:
    found = element.find(f'{_ATOM}{tag}')
    return (found.text or '').strip() if found is not None else ''
