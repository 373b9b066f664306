"""The web tools against a local server speaking their services' APIs, and
without a network: they fail at call time with a clear message, within their
timeout, and never leak their keys."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from lagent.actions import ActionExecutor
from lagent.actions._web import WebError, fetch
from lagent.actions.arxiv_search import ArxivSearch
from lagent.actions.bing_browser import BingBrowser, ContentFetcher
from lagent.actions.bing_map import BINGMap
from lagent.actions.google_scholar_search import GoogleScholar
from lagent.actions.google_search import GoogleSearch
from lagent.schema import ActionStatusCode
from tests.actions.web_services import WebServices, web_services
from tests.fixtures.servers import closed_port_url
from tests.fixtures.trickle_server import TrickleServer, trickle_server
from tests.fixtures.waiting import wait_until


@pytest.fixture(scope='module')
def services() -> Iterator[WebServices]:
    with web_services() as running:
        yield running


def text_of(result) -> str:
    assert result.state == ActionStatusCode.SUCCESS, result.errmsg
    return result.format_result()


# ---------------------------------------------------------------------- each service, as its API speaks


def test_arxiv_search_reads_the_atom_feed(services: WebServices) -> None:
    arxiv = ArxivSearch(top_k_results=2, doc_content_chars_max=40, base_url=f'{services.url}/api')
    with ActionExecutor([arxiv]) as executor:
        result = executor('ArxivSearch.get_arxiv_article_information', '{"query": "attention"}')
    content = json.loads(text_of(result))['content']
    first, second = content.split('\n\n')
    assert first.splitlines() == [
        'Published: 2023-08-02',
        'Title: Attention Is All You Need',
        'Authors: Ashish Vaswani, Noam Shazeer',
        'Summary: The dominant sequence transduction model',
    ]
    assert second.startswith('Published: 2019-05-24\nTitle: BERT')
    request = services.last('/api/query')
    assert request.query == {'search_query': ['all:attention'], 'start': ['0'], 'max_results': ['2']}


def test_google_search_posts_to_serper_with_the_key_header(services: WebServices) -> None:
    search = GoogleSearch(api_key='serper-key-123', base_url=f'{services.url}/serper')
    result = search.run('capital of China', k=2)
    snippets = text_of(result)
    assert 'Beijing: Capital of China.' in snippets and 'Beijing Population: 21.9 million.' in snippets
    assert 'Beijing is the capital.' in snippets and 'Visit Beijing.' not in snippets  # k=2
    request = services.last('/serper/search')
    assert request.method == 'POST' and request.body == {'q': 'capital of China', 'num': 2}
    assert request.headers['X-API-KEY'] == 'serper-key-123'


def test_google_search_reports_an_error_status_and_never_the_key(services: WebServices) -> None:
    result = GoogleSearch(api_key='wrong-key-456', base_url=f'{services.url}/serper').run('x')
    assert result.state == ActionStatusCode.API_ERROR and result.errmsg == '403'
    result = GoogleSearch(api_key='wrong-key-456', base_url=closed_port_url()).run('x')
    assert result.state == ActionStatusCode.HTTP_ERROR
    assert 'cannot connect' in result.errmsg and 'wrong-key-456' not in result.errmsg


def test_google_search_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('SERPER_API_KEY', raising=False)
    with pytest.raises(ValueError, match='SERPER_API_KEY'):
        GoogleSearch()
    monkeypatch.setenv('SERPER_API_KEY', 'from-env-789')
    assert GoogleSearch().api_key == 'from-env-789'


def test_google_scholar_sends_the_engine_and_reads_organic_results(services: WebServices) -> None:
    scholar = GoogleScholar(api_key='serpapi-key-123', base_url=f'{services.url}/serpapi/search')
    result = scholar('{"query": "attention", "as_ylo": 2017}', 'search_google_scholar')
    found = json.loads(text_of(result))
    assert found == {
        'title': ['Attention is all you need'],
        'cited_by': [100000],
        'organic_id': ['abc123'],
        'snippets': ['The dominant sequence transduction models...'],
        'pub_info': ['A Vaswani, N Shazeer - NeurIPS, 2017'],
    }
    request = services.last('/serpapi/search')
    assert request.query['engine'] == ['google_scholar'] and request.query['as_ylo'] == ['2017']
    assert 'cites' not in request.query  # unset options are not sent


def test_google_scholar_error_hides_the_key(services: WebServices) -> None:
    result = GoogleScholar(api_key='bad-serpapi-key', base_url=f'{services.url}/serpapi/search')(
        '{"query": "x"}', 'search_google_scholar'
    )
    assert result.state == ActionStatusCode.API_ERROR and 'HTTP 401' in result.errmsg
    assert 'bad-serpapi-key' not in result.errmsg


def test_bing_map_distance_route_coordinates_and_nearby(services: WebServices) -> None:
    maps = BINGMap(key='maps-key-123', base_url=f'{services.url}/REST/V1')
    assert json.loads(text_of(maps('{"start": "Beijing", "end": "Tianjin"}', 'get_distance'))) == {'distance': 118.4}
    assert json.loads(text_of(maps('{"start": "A", "end": "B"}', 'get_route'))) == {'route': ['Head north', 'Arrive']}
    assert json.loads(text_of(maps('{"location": "Beijing"}', 'get_coordinates'))) == {
        'latitude': 39.9,
        'longitude': 116.4,
    }
    nearby = json.loads(text_of(maps('{"search_term": "noodles", "places": "Beijing"}', 'search_nearby')))
    assert nearby == {'places': [{'name': 'Noodle Bar', 'address': '1 Main St', 'phone': '555'}]}
    assert services.last('/REST/V1/LocalSearch').query['userCircularMapView'] == ['39.9,116.4,5000']
    route = services.last('/REST/V1/Routes/Driving')
    assert route.query['wp.0'] == ['A'] and route.query['wp.1'] == ['B'] and route.query['key'] == ['maps-key-123']


def test_bing_map_refused_key_is_an_api_error_without_the_key(services: WebServices) -> None:
    result = BINGMap(key='refused-maps-key', base_url=f'{services.url}/REST/V1').get_distance('a', 'b')
    assert result.state == ActionStatusCode.API_ERROR and 'Access was denied' in result.errmsg
    assert 'refused-maps-key' not in result.errmsg


def test_bing_browser_searches_duckduckgo_then_reads_the_chosen_pages(services: WebServices) -> None:
    browser = BingBrowser(base_url=f'{services.url}/ddg/html/')
    with ActionExecutor([browser]) as executor:
        found = json.loads(text_of(executor('BingBrowser.search', '{"query": "pages"}')))
        assert found == {
            '0': {'url': f'{services.url}/page/1', 'summ': 'The first result.', 'title': 'Page one'},
            '1': {'url': f'{services.url}/page/2', 'summ': 'The second result.', 'title': 'Page two'},
        }
        selected = json.loads(text_of(executor('BingBrowser.select', '{"select_ids": [1]}')))
        assert list(selected) == ['1']
        assert selected['1']['content'] == 'Heading 2\nFirst paragraph.\nSecond & last.'
        assert 'summ' not in selected['1']
        opened = json.loads(text_of(executor('BingBrowser.open_url', json.dumps({'url': f'{services.url}/page/1'}))))
        assert opened['content'].startswith('Heading 1') and 'secret' not in opened['content']
    assert services.last('/ddg/html/').query == {'q': ['pages']}


def test_bing_browser_select_before_search_is_an_error_for_the_model() -> None:
    result = BingBrowser()('{"select_ids": [0]}', 'select')
    assert result.state == ActionStatusCode.API_ERROR and 'search first' in result.errmsg


@pytest.mark.parametrize(
    ('searcher', 'options', 'path', 'expected'),
    [
        ('BingSearch', {'api_key': 'bing-key-123', 'region': 'en-US'}, '/bing/v7.0/search', 'https://a.example/'),
        ('BraveSearch', {'api_key': 'brave-key-123'}, '/brave', 'https://c.example/'),
        ('GoogleSearch', {'api_key': 'serper-key-123'}, '/serper', 'https://en.wikipedia.org/wiki/Beijing'),
    ],
)
def test_bing_browser_speaks_each_search_api(
    services: WebServices, searcher: str, options: dict, path: str, expected: str
) -> None:
    browser = BingBrowser(searcher, topk=5, base_url=services.url + path, **options)
    found = json.loads(text_of(browser('{"query": "q"}', 'search')))
    urls = [item['url'] for item in found.values()]
    assert urls[0] == expected
    assert not any('youtube.com' in url or url.endswith('.pdf') for url in urls)  # black list and PDFs
    if searcher == 'BingSearch':
        request = services.last('/bing/')
        assert request.headers['Ocp-Apim-Subscription-Key'] == 'bing-key-123' and request.query['mkt'] == ['en-US']
    if searcher == 'BraveSearch':
        assert services.last('/brave/').headers['X-Subscription-Token'] == 'brave-key-123'
        assert found['0']['summ'] == 'Brave result. More.'


def test_unknown_searcher_is_refused() -> None:
    with pytest.raises(ValueError, match='unknown searcher_type'):
        BingBrowser('AltaVista')


# ---------------------------------------------------------------------- no network, slow and broken servers


def test_without_a_network_every_tool_fails_at_call_time_with_a_clear_message() -> None:
    nowhere = closed_port_url()
    calls = [
        (ArxivSearch(base_url=nowhere), '{"query": "x"}', 'get_arxiv_article_information'),
        (GoogleScholar(api_key='k' * 10, base_url=nowhere), '{"query": "x"}', 'search_google_scholar'),
        (BINGMap(key='k' * 10, base_url=nowhere), '{"start": "a", "end": "b"}', 'get_distance'),
        (BingBrowser(base_url=nowhere), '{"query": "x"}', 'search'),
    ]
    for action, command, method in calls:
        started = time.monotonic()
        result = action(command, method)
        assert result.state == ActionStatusCode.HTTP_ERROR, (action, result)
        assert 'cannot connect' in result.errmsg and 'network' in result.errmsg
        assert time.monotonic() - started < 5
    read, reason = ContentFetcher().fetch(nowhere)
    assert not read and 'cannot connect' in reason


def test_default_addresses_are_the_real_services() -> None:
    assert ArxivSearch().base_url == 'https://export.arxiv.org/api'
    assert GoogleSearch(api_key='x' * 8).base_url == 'https://google.serper.dev'
    assert BINGMap(key='x' * 8).base_url.startswith('https://dev.virtualearth.net/REST/V1')


def test_a_server_that_never_answers_times_out(services: WebServices) -> None:
    started = time.monotonic()
    with pytest.raises(WebError, match=r'test: no reply within 0.5s'):
        fetch('test', 'GET', f'{services.url}/slow', params={'seconds': 10}, timeout=0.5)
    assert time.monotonic() - started < 2


def test_a_server_that_trickles_bytes_is_cut_off_at_the_deadline(services: WebServices) -> None:
    started = time.monotonic()
    with pytest.raises(WebError, match=r'no reply within|longer than'):
        fetch('test', 'GET', f'{services.url}/trickle', timeout=1)
    assert time.monotonic() - started < 3


@pytest.fixture
def trickling() -> Iterator[TrickleServer]:
    with trickle_server() as server:
        yield server


def assert_cut_off_at(started: float, timeout: float, server: TrickleServer) -> None:
    assert time.monotonic() - started < timeout + 1.0
    assert wait_until(lambda: server.disconnects, 3)  # the connection was closed, not left to trickle on


@pytest.mark.parametrize('path', ['/slow-headers', '/slow-body'])
def test_a_server_that_trickles_bytes_cannot_stretch_a_tool_call_past_its_deadline(
    trickling: TrickleServer, path: str
) -> None:
    arxiv = ArxivSearch(base_url=f'{trickling.url}{path}', timeout=0.5)
    started = time.monotonic()
    result = arxiv('{"query": "x"}', 'get_arxiv_article_information')
    assert result.state == ActionStatusCode.HTTP_ERROR and result.errmsg == 'arXiv: no reply within 0.5s'
    assert_cut_off_at(started, 0.5, trickling)


def test_a_page_that_trickles_in_is_given_up_at_the_deadline(trickling: TrickleServer) -> None:
    started = time.monotonic()
    read, reason = ContentFetcher(timeout=0.5).fetch(f'{trickling.url}/slow-body.html')
    assert not read and reason == 'web page: no reply within 0.5s'
    assert_cut_off_at(started, 0.5, trickling)


def test_the_deadline_holds_through_a_proxy_from_the_environment(
    trickling: TrickleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ('no_proxy', 'NO_PROXY', 'all_proxy', 'ALL_PROXY'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('http_proxy', trickling.url)  # the proxy trickles its answer
    monkeypatch.setenv('HTTP_PROXY', trickling.url)
    started = time.monotonic()
    result = GoogleSearch(api_key='proxied-key-123', base_url='http://serper.invalid', timeout=0.5).run('x')
    assert result.state == ActionStatusCode.HTTP_ERROR and 'no reply within 0.5s' in result.errmsg
    assert trickling.paths == ['/search']  # the request went through the proxy
    assert_cut_off_at(started, 0.5, trickling)


def test_huge_and_malformed_replies_are_errors(services: WebServices) -> None:
    with pytest.raises(WebError, match='larger than 1000 bytes'):
        fetch('test', 'GET', f'{services.url}/huge', max_bytes=1000)
    with pytest.raises(WebError, match='not JSON'):
        fetch('test', 'GET', f'{services.url}/notjson').json()
    with pytest.raises(WebError, match='HTTP 404'):
        fetch('test', 'GET', f'{services.url}/missing')
    result = ArxivSearch(base_url=f'{services.url}/notjson')('{"query": "x"}', 'get_arxiv_article_information')
    assert result.state == ActionStatusCode.API_ERROR and 'arXiv: HTTP 404' in result.errmsg
