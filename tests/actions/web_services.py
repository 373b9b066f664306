"""A local HTTP server speaking the APIs of the web tools' services (arXiv's
Atom feed, Serper, SerpApi's Google Scholar, Bing Maps, Bing and Brave web
search, DuckDuckGo's HTML page) plus plain pages and faulty endpoints.

It answers from canned data in each service's own format and records every
request (method, path, query, headers, JSON body) so tests can check that the
tools speak the protocol.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

from tests.fixtures.threaded_http import serve_in_thread

ATOM = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>arXiv Query</title>
  <entry>
    <id>http://arxiv.org/abs/1706.03762v7</id>
    <updated>2023-08-02T00:41:18Z</updated>
    <published>2017-06-12T17:57:34Z</published>
    <title>Attention Is All
      You Need</title>
    <summary>  The dominant sequence transduction models are based on complex recurrent or
      convolutional neural networks.</summary>
    <author><name>Ashish Vaswani</name></author>
    <author><name>Noam Shazeer</name></author>
  </entry>
  <entry>
    <id>http://arxiv.org/abs/1810.04805v2</id>
    <updated>2019-05-24T20:37:26Z</updated>
    <title>BERT</title>
    <summary>We introduce a new language representation model.</summary>
    <author><name>Jacob Devlin</name></author>
  </entry>
</feed>"""

SERPER = {
    'knowledgeGraph': {'title': 'Beijing', 'type': 'Capital of China', 'attributes': {'Population': '21.9 million'}},
    'organic': [
        {
            'title': 'Beijing - Wikipedia',
            'link': 'https://en.wikipedia.org/wiki/Beijing',
            'snippet': 'Beijing is the capital.',
        },
        {'title': 'Video', 'link': 'https://www.youtube.com/watch?v=1', 'snippet': 'A video.'},
        {'title': 'City guide', 'link': 'https://guide.example/beijing', 'snippet': 'Visit Beijing.'},
    ],
}

SCHOLAR = {
    'organic_results': [
        {
            'title': 'Attention is all you need',
            'result_id': 'abc123',
            'snippet': 'The dominant sequence transduction models...',
            'publication_info': {'summary': 'A Vaswani, N Shazeer - NeurIPS, 2017'},
            'inline_links': {'cited_by': {'total': 100000}},
        }
    ]
}

BING_MAPS = {
    'Routes/Driving': {
        'travelDistance': 118.4,
        'routeLegs': [
            {'itineraryItems': [{'instruction': {'text': 'Head north'}}, {'instruction': {'text': 'Arrive'}}]}
        ],
    },
    'Locations': {'point': {'coordinates': [39.9, 116.4]}},
    'LocalSearch': {'name': 'Noodle Bar', 'Address': {'formattedAddress': '1 Main St'}, 'PhoneNumber': '555'},
}

BING_WEB = {
    'webPages': {
        'value': [
            {'id': 'w0', 'url': 'https://a.example/', 'snippet': 'First page.', 'name': 'A'},
            {'id': 'w1', 'url': 'https://b.example/doc.pdf', 'snippet': 'A PDF.', 'name': 'B'},
        ]
    },
    'rankingResponse': {
        'mainline': {
            'items': [
                {'answerType': 'WebPages', 'value': {'id': 'w0'}},
                {'answerType': 'WebPages', 'value': {'id': 'w1'}},
            ]
        }
    },
}

BRAVE = {
    'web': {
        'results': [
            {'url': 'https://c.example/', 'title': 'C', 'description': 'Brave result.', 'extra_snippets': ['More.']}
        ]
    }
}

PAGE = """<html><head><title>T</title><style>p {color: red}</style></head>
<body><script>var secret = 1;</script><h1>Heading</h1><p>First paragraph.</p><p>Second &amp; last.</p></body></html>"""


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class WebServices:
    """The running server: its base URL and the requests it received."""

    url: str
    requests: list[Recorded] = field(default_factory=list)

    def last(self, path_prefix: str) -> Recorded:
        """The last request whose path starts with ``path_prefix``."""
        return [request for request in self.requests if request.path.startswith(path_prefix)][-1]


def duckduckgo_html(base: str) -> str:
    """A results page shaped like DuckDuckGo's HTML search, linking to pages of this server."""
    links = [(f'{base}/page/1', 'Page one', 'The first result.'), (f'{base}/page/2', 'Page two', 'The second result.')]
    rows = ''.join(
        f'<div class="result"><h2><a class="result__a" href="//duckduckgo.com/l/?uddg={quote(url, safe="")}&rut=x">'
        f'{title}</a></h2><a class="result__snippet" href="#">{snippet}</a></div>'
        for url, title, snippet in links
    )
    return f'<html><body>{rows}</body></html>'


@contextmanager
def web_services() -> Iterator[WebServices]:
    """Run the server on a free loopback port for the duration of the block."""
    services = WebServices(url='')

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._handle('GET')

        def do_POST(self) -> None:
            self._handle('POST')

        def _handle(self, method: str) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get('Content-Length') or 0)
            raw = self.rfile.read(length) if length else b''
            body = (
                json.loads(raw) if raw and self.headers.get('Content-Type', '').startswith('application/json') else raw
            )
            query = parse_qs(parsed.query)
            services.requests.append(Recorded(method, parsed.path, query, dict(self.headers), body))
            path = parsed.path
            if path == '/api/query':
                self._send(200, ATOM.encode(), 'application/atom+xml; charset=utf-8')
            elif path in ('/serper/search', '/serper/news'):
                if self.headers.get('X-API-KEY') not in ('serper-key-123', 'Your SERPER_API_KEY'):
                    self._json(403, {'message': 'Unauthorized.'})
                else:
                    self._json(200, SERPER if path.endswith('search') else {'news': SERPER['organic']})
            elif path == '/serpapi/search':
                self._json(200 if query.get('api_key') == ['serpapi-key-123'] else 401, SCHOLAR)
            elif path.startswith('/REST/V1/'):
                service = path[len('/REST/V1/') :]
                if query.get('key') != ['maps-key-123']:
                    self._json(401, {'errorDetails': ['Access was denied.']})
                else:
                    self._json(200, {'resourceSets': [{'resources': [BING_MAPS[service]]}]})
            elif path == '/bing/v7.0/search':
                self._json(200, BING_WEB)
            elif path == '/brave/web/search':
                self._json(200, BRAVE)
            elif path == '/ddg/html/':
                self._send(200, duckduckgo_html(services.url).encode(), 'text/html; charset=utf-8')
            elif path.startswith('/page/'):
                self._send(200, PAGE.replace('Heading', f'Heading {path[-1]}').encode(), 'text/html')
            elif path == '/slow':
                time.sleep(float(query.get('seconds', ['30'])[0]))
                self._json(200, {})
            elif path == '/trickle':
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', '100000')
                self.end_headers()
                try:
                    for _ in range(100000):
                        self.wfile.write(b' ')
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:
                    pass
            elif path == '/huge':
                self._send(200, b'x' * (2 * 1024 * 1024), 'text/plain')
            elif path == '/notjson':
                self._send(200, b'<html>not json</html>', 'text/html')
            else:
                self._json(404, {'error': f'no such path {path}'})

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body).encode(), 'application/json')

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header('Content-Type', content_type)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *items: object) -> None:
            pass

    with serve_in_thread(Handler, 'web-services') as url:
        services.url = url
        yield services
