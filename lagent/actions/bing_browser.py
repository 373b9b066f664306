"""``BingBrowser``: web search and page reading (needs the internet).

The search goes to one of several engines (a *searcher*): DuckDuckGo's HTML
page (no key), or the APIs of Bing, Brave and Serper (Google), each with a
key. :class:`ContentFetcher` reads pages as plain text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlparse

from lagent.actions._web import DEFAULT_TIMEOUT, WebError, WebReply, failure, fetch
from lagent.actions.base_action import BaseAction
from lagent.actions.parser import BaseParser
from lagent.actions.tool import tool_api
from lagent.schema import ActionReturn

__all__ = [
    'BaseSearch',
    'BingBrowser',
    'BingSearch',
    'BraveSearch',
    'ContentFetcher',
    'DuckDuckGoSearch',
    'GoogleSearch',
]

logger = logging.getLogger(__name__)

DEFAULT_BLACK_LIST = ('youtube.com', 'bilibili.com', 'researchgate.net')
"""Sites whose pages are rarely readable as text; left out of results by default."""


class BaseSearch:
    """A search engine: :meth:`search` returns ``{index: {'url', 'summ', 'title'}}``.

    Args:
        topk: Most results kept.
        black_list: Results whose URL contains one of these strings are left out
            (as are PDF links).
        timeout: Seconds one search may take.
    """

    service = 'search'
    """The engine's name, for error messages."""
    api_key: str | None = None
    """The engine's key, if it takes one (kept out of error messages)."""

    def __init__(self, topk: int = 3, black_list: Sequence[str] | None = DEFAULT_BLACK_LIST, timeout: float = 30):
        self.topk = topk
        self.black_list = list(black_list or ())
        self.timeout = timeout

    def search(self, query: str) -> dict[int, dict[str, str]]:
        """Search for ``query``.

        Raises:
            WebError: The engine could not be reached or answered with an error.
        """
        return self._filter_results(self._results(query))

    def _results(self, query: str) -> list[tuple[str, str, str]]:
        """``(url, snippet, title)`` of each result, best first."""
        raise NotImplementedError

    def _fetch(self, method: str, url: str, **request: Any) -> WebReply:
        """One request to the engine, within the search's timeout, its key kept out of errors.

        Raises:
            WebError: See :func:`~lagent.actions._web.fetch`.
        """
        secrets = (self.api_key,) if self.api_key else ()
        return fetch(self.service, method, url, timeout=self.timeout, secrets=secrets, **request)

    def _filter_results(self, results: list[tuple[str, str, str]]) -> dict[int, dict[str, str]]:
        kept: dict[int, dict[str, str]] = {}
        for url, snippet, title in results:
            if any(site in url for site in self.black_list) or url.lower().endswith('.pdf'):
                continue
            kept[len(kept)] = {'url': url, 'summ': snippet, 'title': title}
            if len(kept) >= self.topk:
                break
        return kept


class DuckDuckGoSearch(BaseSearch):
    """DuckDuckGo's HTML results page (no key needed).

    Args:
        topk: Most results kept.
        black_list: URL parts to leave out.
        base_url: The address of DuckDuckGo's HTML search.
        timeout: Seconds one search may take.
        **kwargs: Ignored (lagent 0.2 passed ``proxy`` here; use the ``HTTPS_PROXY`` variable).
    """

    service = 'DuckDuckGo'

    def __init__(
        self,
        topk: int = 3,
        black_list: Sequence[str] | None = DEFAULT_BLACK_LIST,
        *,
        base_url: str = 'https://html.duckduckgo.com/html/',
        timeout: float = 30,
        **kwargs: Any,
    ):
        super().__init__(topk, black_list, timeout)
        self.base_url = base_url

    def _results(self, query: str) -> list[tuple[str, str, str]]:
        reply = self._fetch('GET', self.base_url, params={'q': query})
        page = _DuckDuckGoPage()
        page.feed(reply.text())
        return page.results


class BingSearch(BaseSearch):
    """Bing's Web Search API.

    Args:
        api_key: The ``Ocp-Apim-Subscription-Key``.
        region: The market (``mkt``), e.g. ``'en-US'``.
        topk: Most results kept.
        black_list: URL parts to leave out.
        base_url: The API address.
        timeout: Seconds one search may take.
        **kwargs: Ignored (lagent 0.2 passed ``proxy`` here).
    """

    service = 'Bing'

    def __init__(
        self,
        api_key: str,
        region: str = 'zh-CN',
        topk: int = 3,
        black_list: Sequence[str] | None = DEFAULT_BLACK_LIST,
        *,
        base_url: str = 'https://api.bing.microsoft.com/v7.0/search',
        timeout: float = 30,
        **kwargs: Any,
    ):
        super().__init__(topk, black_list, timeout)
        self.api_key = api_key
        self.market = region
        self.base_url = base_url

    def _results(self, query: str) -> list[tuple[str, str, str]]:
        params = {'q': query, 'mkt': self.market, 'count': self.topk * 2}
        headers = {'Ocp-Apim-Subscription-Key': self.api_key}
        data = self._fetch('GET', self.base_url, params=params, headers=headers).json()
        pages = {page.get('id'): page for page in (data.get('webPages') or {}).get('value') or []}
        news = data.get('news') or {}
        results = []
        for item in ((data.get('rankingResponse') or {}).get('mainline') or {}).get('items') or []:
            value = item.get('value') or {}
            if item.get('answerType') == 'WebPages' and value.get('id') in pages:
                page = pages[value['id']]
                results.append((page.get('url', ''), page.get('snippet', ''), page.get('name', '')))
            elif item.get('answerType') == 'News' and value.get('id') == news.get('id'):
                results.extend(
                    (n.get('url', ''), n.get('description', ''), n.get('name', '')) for n in news.get('value') or []
                )
        if not results:  # no ranking: the pages in their order
            results = [(page.get('url', ''), page.get('snippet', ''), page.get('name', '')) for page in pages.values()]
        return results


class BraveSearch(BaseSearch):
    """Brave's Search API.

    Args:
        api_key: The ``X-Subscription-Token``.
        region: The ``country`` code.
        language: The ``search_lang`` code.
        extra_snippests: Ask for extra snippets per result (spelled as in lagent 0.2).
        topk: Most results kept.
        black_list: URL parts to leave out.
        search_type: ``'web'`` or ``'news'``.
        base_url: The API address (``<base_url>/<search_type>/search``).
        timeout: Seconds one search may take.
        **kwargs: Further query parameters of the API.
    """

    service = 'Brave'

    def __init__(
        self,
        api_key: str,
        region: str = 'ALL',
        language: str = 'zh-hans',
        extra_snippests: bool = True,
        topk: int = 3,
        black_list: Sequence[str] | None = DEFAULT_BLACK_LIST,
        *,
        search_type: str = 'web',
        base_url: str = 'https://api.search.brave.com/res/v1',
        timeout: float = 30,
        **kwargs: Any,
    ):
        super().__init__(topk, black_list, timeout)
        self.api_key = api_key
        self.market = region
        self.language = language
        self.extra_snippets = extra_snippests
        self.search_type = search_type
        self.base_url = base_url.rstrip('/')
        self.kwargs = {key: value for key, value in kwargs.items() if key != 'proxy'}

    def _results(self, query: str) -> list[tuple[str, str, str]]:
        params = {
            'q': query,
            'country': self.market,
            'search_lang': self.language,
            'extra_snippets': str(self.extra_snippets).lower(),
            'count': self.topk,
            **self.kwargs,
        }
        headers = {'X-Subscription-Token': self.api_key, 'Accept': 'application/json'}
        url = f'{self.base_url}/{self.search_type}/search'
        data = self._fetch('GET', url, params=params, headers=headers).json()
        items = (data.get('web') or {}).get('results') if self.search_type == 'web' else data.get('results')
        results = []
        for item in items or []:
            snippet = ' '.join(filter(None, [item.get('description'), *(item.get('extra_snippets') or [])]))
            results.append((item.get('url', ''), snippet, item.get('title', '')))
        return results


class GoogleSearch(BaseSearch):
    """Google results through the Serper API.

    Args:
        api_key: The Serper API key.
        topk: Most results kept.
        black_list: URL parts to leave out.
        search_type: ``'search'`` or ``'news'``.
        base_url: The API address (``<base_url>/<search_type>``).
        timeout: Seconds one search may take.
        **kwargs: Further fields of the API's request.
    """

    service = 'Serper'

    def __init__(
        self,
        api_key: str,
        topk: int = 3,
        black_list: Sequence[str] | None = DEFAULT_BLACK_LIST,
        *,
        search_type: str = 'search',
        base_url: str = 'https://google.serper.dev',
        timeout: float = 30,
        **kwargs: Any,
    ):
        super().__init__(topk, black_list, timeout)
        self.api_key = api_key
        self.search_type = search_type
        self.base_url = base_url.rstrip('/')
        self.kwargs = {key: value for key, value in kwargs.items() if key != 'proxy'}

    def _results(self, query: str) -> list[tuple[str, str, str]]:
        body = {'q': query, 'num': self.topk, **self.kwargs}
        headers = {'X-API-KEY': self.api_key, 'Content-Type': 'application/json'}
        url = f'{self.base_url}/{self.search_type}'
        data = self._fetch('POST', url, json_body=body, headers=headers).json()
        results = []
        answer = data.get('answerBox') or {}
        text = answer.get('answer') or answer.get('snippet') or answer.get('snippetHighlighted')
        if text:
            results.append(('', text if isinstance(text, str) else ' '.join(text), ''))
        for result in (data.get('news' if self.search_type == 'news' else 'organic') or [])[: self.topk]:
            results.append((result.get('link', ''), result.get('snippet', ''), result.get('title', '')))
        return results


class ContentFetcher:
    """Reads a web page as plain text.

    Args:
        timeout: Seconds one page may take.
    """

    def __init__(self, timeout: float = 5):
        self.timeout = timeout

    def fetch(self, url: str) -> tuple[bool, str]:
        """Return ``(True, text)`` for a page read, ``(False, reason)`` when it could not be."""
        try:
            reply = fetch('web page', 'GET', url, timeout=self.timeout)
        except WebError as exc:
            return False, str(exc)
        if 'html' not in reply.content_type and reply.content_type:
            return True, reply.text()
        page = _PageText()
        page.feed(reply.text())
        return True, re.sub(r'\n\s*\n+', '\n', page.text()).strip()


_SEARCHERS: dict[str, type[BaseSearch]] = {
    'DuckDuckGoSearch': DuckDuckGoSearch,
    'BingSearch': BingSearch,
    'BraveSearch': BraveSearch,
    'GoogleSearch': GoogleSearch,
}


class BingBrowser(BaseAction):
    """Search the web, then read the pages found.

    Args:
        searcher_type: ``'DuckDuckGoSearch'`` (no key), ``'BingSearch'``,
            ``'BraveSearch'`` or ``'GoogleSearch'`` (Serper); or a
            :class:`BaseSearch` subclass.
        timeout: Seconds reading one page may take.
        black_list: URL parts to leave out of results.
        topk: Most results per query.
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a lagent 0.2 call reads its input.
        enable: Whether the action is offered to models.
        **kwargs: For the searcher (``api_key``, ``region``, ``base_url``, ``timeout``...).

    Raises:
        ValueError: An unknown ``searcher_type``.
    """

    def __init__(
        self,
        searcher_type: str | type[BaseSearch] = 'DuckDuckGoSearch',
        timeout: float = 5,
        black_list: Sequence[str] | None = DEFAULT_BLACK_LIST,
        topk: int = 20,
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] | None = None,
        enable: bool = True,
        **kwargs: Any,
    ):
        searcher = _SEARCHERS.get(searcher_type) if isinstance(searcher_type, str) else searcher_type
        if searcher is None:
            raise ValueError(f'unknown searcher_type {searcher_type!r}; one of {", ".join(_SEARCHERS)}')
        kwargs.setdefault('timeout', DEFAULT_TIMEOUT)
        self.searcher = searcher(black_list=black_list, topk=topk, **kwargs)
        self.fetcher = ContentFetcher(timeout=timeout)
        self.search_results: dict[int, dict[str, str]] | None = None
        super().__init__(description, parser, enable)

    @tool_api
    def search(self, query: str | list[str]) -> dict[int, dict[str, str]] | ActionReturn:
        """Search the web; returns numbered results (url, summary, title) to select from.

        Args:
            query: A search query, or a list of them.
        """
        queries = [query] if isinstance(query, str) else list(query)
        merged: dict[str, dict[str, str]] = {}
        errors = []
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(queries)))) as pool:
            for outcome in pool.map(self._search_one, queries):
                if isinstance(outcome, WebError):
                    errors.append(outcome)
                    continue
                for result in outcome.values():
                    if result['url'] in merged:
                        merged[result['url']]['summ'] += '\n' + result['summ']
                    else:
                        merged[result['url']] = dict(result)
        if errors and not merged:
            return failure(errors[0])
        for error in errors:
            logger.warning('one search failed: %s', error)
        self.search_results = dict(enumerate(merged.values()))
        return self.search_results

    @tool_api
    def select(self, select_ids: list[int]) -> dict[int, dict[str, str]]:
        """Read the pages of chosen search results (at most 4).

        Args:
            select_ids: The numbers of the results to read.

        Raises:
            ValueError: There are no search results yet.
        """
        if not self.search_results:
            raise ValueError('no search results to select from: search first')
        chosen = [index for index in dict.fromkeys(select_ids) if index in self.search_results][:4]
        with ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
            pages = list(pool.map(lambda index: self.fetcher.fetch(self.search_results[index]['url']), chosen))
        selected = {}
        for index, (read, content) in zip(chosen, pages, strict=True):
            if read:
                page = {key: value for key, value in self.search_results[index].items() if key != 'summ'}
                selected[index] = {**page, 'content': content[:8192]}
        return selected

    @tool_api
    def open_url(self, url: str) -> dict[str, str]:
        """Read one web page as text.

        Args:
            url: The page's address.
        """
        read, content = self.fetcher.fetch(url)
        return {'type': 'text', 'content': content} if read else {'error': content}

    def _search_one(self, query: str) -> dict[int, dict[str, str]] | WebError:
        try:
            return self.searcher.search(query)
        except WebError as exc:
            return exc


class _DuckDuckGoPage(HTMLParser):
    """The results of DuckDuckGo's HTML page: links of class ``result__a``,
    snippets of class ``result__snippet``."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[tuple[str, str, str]] = []
        self._field: str | None = None
        self._text: list[str] = []
        self._url = ''

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get('class') or '').split()
        if 'result__a' in classes:
            self._field, self._text, self._url = 'title', [], _target(dict(attrs).get('href') or '')
        elif 'result__snippet' in classes and self.results:
            self._field, self._text = 'snippet', []

    def handle_endtag(self, tag: str) -> None:
        if self._field is None or tag not in ('a', 'td', 'div'):
            return
        text = ' '.join(''.join(self._text).split())
        if self._field == 'title':
            self.results.append((self._url, '', text))
        else:
            url, _, title = self.results[-1]
            self.results[-1] = (url, text, title)
        self._field = None

    def handle_data(self, data: str) -> None:
        if self._field is not None:
            self._text.append(data)


def _target(href: str) -> str:
    """The result's own address (DuckDuckGo links through ``/l/?uddg=<url>``)."""
    parsed = urlparse(href)
    if parsed.path.endswith('/l/'):
        return parse_qs(parsed.query).get('uddg', [href])[0]
    return href


class _PageText(HTMLParser):
    """The visible text of an HTML page (scripts, styles and the head left out)."""

    _SKIPPED = frozenset({'script', 'style', 'noscript', 'head', 'template', 'svg'})
    _BLOCKS = frozenset({'p', 'div', 'br', 'li', 'tr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'section', 'article'})

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self._parts.append('\n')

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skipping:
            self._skipping -= 1
        elif tag in self._BLOCKS:
            self._parts.append('\n')

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self._parts.append(data)

    def text(self) -> str:
        return ''.join(self._parts)
