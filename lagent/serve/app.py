"""The aiohttp application: OpenAI's endpoints over engines and agents, sessions,
API keys, errors and the chat page.

=====================================  =====================================================
route                                  answer
=====================================  =====================================================
``GET /``                              the chat page (``static/``)
``GET /health``                        ``{"status": "ok"}``; 503 while shutting down
``GET /v1/models``                     the served engines and agents
``POST /v1/chat/completions``          an engine's or an agent's answer, streamed or whole
``POST /v1/completions``               an engine's completion of a raw prompt
``GET /v1/sessions/{id}``              an agent session's conversation
``DELETE /v1/sessions/{id}``           forget a session
=====================================  =====================================================

Every ``/v1/`` route needs one of the API keys, when keys are set. Every
generation (one request, streamed or not) holds one of ``max_concurrency``
slots; past that the answer is 429 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiohttp import web

from lagent.agents import AgentMemory, BaseAgent
from lagent.agents.events import FinalAnswer, ModelReply, TextDelta
from lagent.llms.base import BaseLLM
from lagent.schema import AgentStatusCode, Chunk, Response, Usage
from lagent.serve.errors import APIError, api_error_from
from lagent.serve.models import ModelRegistry, ServedAgent
from lagent.serve.protocol import (
    DONE,
    ChatCompletionRequest,
    ChunkEncoder,
    CompletionRequest,
    chat_answer,
    completion_answer,
    merge_chunks,
    parse_request,
)
from lagent.serve.sessions import SessionStore
from lagent.serve.sse import BatchReader, open_event_stream

__all__ = ['STATIC_DIR', 'ServerState', 'create_app']

logger = logging.getLogger(__name__)

T = TypeVar('T')
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATIC_DIR = Path(__file__).with_name('static')
"""The chat page's files."""

STATE_KEY: web.AppKey[ServerState] = web.AppKey('lagent_state')


class ServerState:
    """What the handlers of one application share.

    Args:
        registry: The served models.
        api_keys: Keys accepted in ``Authorization: Bearer`` (none: no authentication).
        max_concurrency: Most generations running at once.
        max_sessions: Most agent sessions kept.
    """

    def __init__(
        self, registry: ModelRegistry, *, api_keys: Iterable[str] = (), max_concurrency: int, max_sessions: int
    ):
        if max_concurrency < 1:
            raise ValueError(f'max_concurrency must be at least 1, got {max_concurrency}')
        self.registry = registry
        self.sessions = SessionStore(max_sessions)
        self.max_concurrency = max_concurrency
        self.draining = False
        """Set when the server stops taking requests."""
        self._keys = [key.encode() for key in api_keys if key]
        self._running: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.Event | None = None

    @property
    def active(self) -> int:
        """Generations running now."""
        return len(self._running)

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries one of the keys (always, without keys)."""
        if not self._keys:
            return True
        scheme, _, token = (header or '').partition(' ')
        given = token.strip().encode()
        # compare with every key, so the time taken does not tell which one nearly matched
        matches = [hmac.compare_digest(given, key) for key in self._keys]
        return scheme.lower() == 'bearer' and any(matches)

    @contextlib.contextmanager
    def generation(self) -> Iterator[None]:
        """Hold one generation slot.

        Raises:
            APIError: 503 while shutting down; 429 when every slot is taken.
        """
        if self.draining:
            raise APIError(503, 'the server is shutting down', code='shutting_down', headers={'Retry-After': '1'})
        if self.active >= self.max_concurrency:
            raise APIError(
                429,
                f'the server is running its limit of {self.max_concurrency} generations; retry shortly',
                code='server_busy',
                headers={'Retry-After': '1'},
            )
        task = asyncio.current_task()
        if task is not None:  # always, for a request handler
            self._running.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._running.discard(task)
            if not self._running and self._idle is not None:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no generation runs; return whether that happened within ``timeout`` seconds."""
        if not self._running:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def cancel_all(self) -> None:
        """Cancel every running generation (their engine streams are closed)."""
        for task in list(self._running):
            task.cancel()


def create_app(state: ServerState, *, max_body_bytes: int = 4 << 20) -> web.Application:
    """Build the application serving ``state``'s models.

    Args:
        state: The models, keys and limits.
        max_body_bytes: Largest request body accepted (larger: 413).
    """
    app = web.Application(client_max_size=max_body_bytes, middlewares=[_errors, _authentication])
    app[STATE_KEY] = state
    routes = _Routes(state)
    app.router.add_get('/', routes.page)
    app.router.add_get('/health', routes.health)
    app.router.add_get('/v1/models', routes.models)
    app.router.add_post('/v1/chat/completions', routes.chat_completions)
    app.router.add_post('/v1/completions', routes.completions)
    app.router.add_get('/v1/sessions/{session_id}', routes.get_session)
    app.router.add_delete('/v1/sessions/{session_id}', routes.delete_session)
    app.router.add_static('/static', STATIC_DIR, append_version=False)
    return app


# ---------------------------------------------------------------------- middlewares


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure in OpenAI's error format."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_http_error(request, exc))
    except Exception as exc:
        error = api_error_from(exc)
        if error.status >= 500:
            logger.error('%s %s failed: %s', request.method, request.path, error.message, exc_info=exc)
        return error_response(error)


@web.middleware
async def _authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse ``/v1/`` requests without a valid API key."""
    if request.path.startswith('/v1/') and not request.app[STATE_KEY].authorized(request.headers.get('Authorization')):
        if 'Authorization' in request.headers:
            raise APIError(401, 'incorrect API key provided', code='invalid_api_key')
        raise APIError(401, 'missing API key: send it as "Authorization: Bearer <key>"', code='invalid_api_key')
    return await handler(request)


def error_response(error: APIError) -> web.Response:
    """The HTTP answer of an error."""
    return web.Response(
        status=error.status, body=error.encode(), content_type='application/json', headers=error.headers
    )


def _http_error(request: web.Request, exc: web.HTTPException) -> APIError:
    if exc.status == 404:
        return APIError(404, f'no such endpoint: {request.method} {request.path}', code='not_found')
    if exc.status == 405:
        return APIError(405, f'{request.method} is not allowed on {request.path}', code='method_not_allowed')
    if exc.status == 413:
        return APIError(413, f'the request body is too large ({exc.text})', code='body_too_large')
    return APIError(exc.status, exc.text or exc.reason)


# ---------------------------------------------------------------------- routes


class _Routes:
    def __init__(self, state: ServerState):
        self.state = state

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / 'index.html', headers={'Cache-Control': 'no-cache'})

    async def health(self, request: web.Request) -> web.Response:
        if self.state.draining:
            return web.json_response({'status': 'draining'}, status=503)
        return web.json_response({'status': 'ok', 'active': self.state.active})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.registry.listing())

    async def get_session(self, request: web.Request) -> web.Response:
        session = self.state.sessions.get(request.match_info['session_id'])
        return web.json_response(session.describe())

    async def delete_session(self, request: web.Request) -> web.Response:
        session = self.state.sessions.delete(request.match_info['session_id'])
        return web.json_response({'id': session.id, 'object': 'session.deleted', 'deleted': True})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body: CompletionRequest = parse_request(CompletionRequest, await _read_json(request))
        served = self.state.registry.get(body.model)
        if isinstance(served, ServedAgent):
            raise APIError(
                400,
                f'{body.model!r} is an agent; talk to it at /v1/chat/completions',
                param='model',
                code='agent_model',
            )
        kwargs = _generation_kwargs(served, body)
        with self.state.generation():
            if body.stream:
                chunks = served.astream(body.prompt, **kwargs)
                return await stream_answer(request, chunks, _ChunkStream(ChunkEncoder(body.model, 'completion'), body))
            response = await served.acomplete(body.prompt, **kwargs)
        return web.json_response(completion_answer(body.model, response), dumps=_dumps)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body: ChatCompletionRequest = parse_request(ChatCompletionRequest, await _read_json(request))
        served = self.state.registry.get(body.model)
        if isinstance(served, ServedAgent):
            return await self._agent_chat(request, body, served)
        if body.session_id is not None:
            raise APIError(
                400,
                f'session_id: {body.model!r} is an engine, not an agent; send the whole conversation',
                param='session_id',
            )
        if body.tools and served.tool_calling != 'native':
            raise APIError(
                400,
                f'tools: {body.model!r} has no native tool calling as configured; serve an agent to call tools',
                param='tools',
            )
        kwargs = _generation_kwargs(served, body)
        tools = dict(tools=body.tools, tool_choice=body.tool_choice)
        with self.state.generation():
            if body.stream:
                chunks = served.astream(body.messages, **tools, **kwargs)
                return await stream_answer(request, chunks, _ChunkStream(ChunkEncoder(body.model, 'chat'), body))
            response = await served.acomplete(body.messages, **tools, **kwargs)
        return web.json_response(chat_answer(body.model, response), dumps=_dumps)

    async def _agent_chat(
        self, request: web.Request, body: ChatCompletionRequest, served: ServedAgent
    ) -> web.StreamResponse:
        if body.tools is not None:
            raise APIError(
                400,
                f'tools: {body.model!r} is an agent with its own tools ({", ".join(served.executor.names)}); '
                'leave tools out',
                param='tools',
            )
        fields = body.sampling_fields()
        if fields:
            raise APIError(
                400,
                f'{fields[0]}: {body.model!r} is an agent and uses the generation settings it was configured with',
                param=fields[0],
            )
        *history, question = body.messages
        if question.role != 'user':
            raise APIError(400, "messages: the last message must be the user's", param='messages')
        with self.state.generation():
            if body.session_id is None:
                return await self._run_agent(request, body, served.make(AgentMemory(history)), None)
            session = self.state.sessions.claim(body.session_id, body.model, served)
            try:
                session.agent.memory.extend(history)
                return await self._run_agent(request, body, session.agent, session.id)
            finally:
                self.state.sessions.release(session)

    async def _run_agent(
        self, request: web.Request, body: ChatCompletionRequest, agent: BaseAgent, session_id: str | None
    ) -> web.StreamResponse:
        question = body.messages[-1]
        if body.stream:
            answer = _AgentStream(ChunkEncoder(body.model, 'chat'), body, session_id)
            return await stream_answer(request, agent.astream_chat(question), answer)
        result = await agent.achat(question)
        usage = _total_usage(step.response.usage for step in result.steps if isinstance(step, ModelReply))
        extension = {
            'session_id': session_id,
            'status': int(result.status),
            'steps': [step.model_dump(mode='json') for step in result.steps],
        }
        finish = _agent_finish(result.status)
        response = Response(text=result.answer, finish_reason=finish, usage=usage)
        return web.json_response(chat_answer(body.model, response, extension=extension), dumps=_dumps)


# ---------------------------------------------------------------------- streaming answers


async def stream_answer(request: web.Request, source: AsyncIterator[T], answer: _Answer[T]) -> web.StreamResponse:
    """Stream ``source`` as Server-Sent Events, each write holding what arrived since the last.

    An error before the first item is raised (and answered with its status);
    after it, the stream ends with an in-band error event. Leaving early (the
    client went away) closes ``source``.
    """
    async with BatchReader(source) as reader:
        batch = await reader.take()
        response = await open_event_stream(request)
        data = b''
        try:
            while batch:
                data = answer.render(batch)
                if reader.exhausted:  # the rest goes in the same write (a short answer: one write in all)
                    break
                if data:
                    await response.write(data)
                data = b''
                try:
                    batch = await reader.take()
                except Exception as exc:  # the engine or agent failed
                    error = api_error_from(exc)
                    logger.warning('%s %s failed mid-stream: %s', request.method, request.path, error.message)
                    await _end_with_error(response, error)
                    return response
        except asyncio.CancelledError:
            if request.app[STATE_KEY].draining:  # cut short by the shutdown, not by the client: say so
                with contextlib.suppress(Exception):
                    await _end_with_error(
                        response, APIError(503, 'the server shut down before the answer was complete')
                    )
            raise
        await response.write_eof(data + answer.closing() + DONE)
    return response


async def _end_with_error(response: web.StreamResponse, error: APIError) -> None:
    await response.write_eof(ChunkEncoder.error(error))


class _Answer(Generic[T]):
    """How the items of a stream become events (one answer's state)."""

    def render(self, batch: list[T]) -> bytes:
        raise NotImplementedError

    def closing(self) -> bytes:
        raise NotImplementedError


class _ChunkStream(_Answer[Chunk]):
    """An engine's chunks as ``chat.completion.chunk`` or ``text_completion`` events."""

    def __init__(self, encoder: ChunkEncoder, body: ChatCompletionRequest | CompletionRequest):
        self.encoder = encoder
        self.include_usage = body.include_usage
        self.usage: Usage | None = None
        self.finished = False

    def render(self, batch: list[Chunk]) -> bytes:
        chunk = merge_chunks(batch)
        if chunk.usage is not None:
            self.usage = chunk.usage
            chunk = Chunk(chunk.text, chunk.finish_reason, None, chunk.tool_calls)
        if chunk.finish_reason is not None:
            self.finished = True
        elif not chunk.text and not chunk.tool_calls:
            return b''
        return self.encoder.chunk(chunk)

    def closing(self) -> bytes:
        data = b'' if self.finished else self.encoder.chunk(Chunk(finish_reason='stop'))
        if self.include_usage:
            data += self.encoder.usage(self.usage)
        return data


class _AgentStream(_Answer[Any]):
    """An agent's events as ``chat.completion.chunk`` events: each carries its
    event in ``lagent.event``; the final answer's text is the ``content``."""

    def __init__(self, encoder: ChunkEncoder, body: ChatCompletionRequest, session_id: str | None):
        self.encoder = encoder
        self.include_usage = body.include_usage
        self.session_id = session_id
        self.usages: list[Usage | None] = []
        self.finish = 'stop'

    def render(self, batch: list[Any]) -> bytes:
        parts = []
        encoder = self.encoder
        if encoder.first:
            parts.append(encoder.chunk(Chunk(), {'session_id': self.session_id}))
        for event in _join_text_deltas(batch):
            if isinstance(event, ModelReply):
                self.usages.append(event.response.usage)
            if isinstance(event, FinalAnswer):
                self.finish = _agent_finish(event.status)
                parts.append(encoder.chunk(Chunk(event.text), {'event': event.model_dump(mode='json')}))
            else:
                parts.append(encoder.chunk(Chunk(), {'event': event.model_dump(mode='json')}))
        return b''.join(parts)

    def closing(self) -> bytes:
        data = self.encoder.chunk(Chunk(finish_reason=self.finish))
        if self.include_usage:
            data += self.encoder.usage(_total_usage(self.usages))
        return data


def _join_text_deltas(events: list[Any]) -> list[Any]:
    """Consecutive text deltas of the same turn as one."""
    joined: list[Any] = []
    for event in events:
        last = joined[-1] if joined else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta) and last.turn == event.turn:
            joined[-1] = TextDelta(turn=event.turn, text=last.text + event.text)
        else:
            joined.append(event)
    return joined


def _agent_finish(status: AgentStatusCode) -> str:
    """``'stop'`` for an answer, ``'length'`` for a run that used all its turns."""
    return 'stop' if status == AgentStatusCode.END else 'length'


def _total_usage(usages: Iterable[Usage | None]) -> Usage | None:
    counted = [usage for usage in usages if usage is not None]
    if not counted:
        return None
    prompt = sum(usage.prompt_tokens for usage in counted)
    completion = sum(usage.completion_tokens for usage in counted)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


# ---------------------------------------------------------------------- requests


async def _read_json(request: web.Request) -> Any:
    """The request's JSON body.

    Raises:
        APIError: 415 for another content type, 400 for malformed JSON.
        web.HTTPRequestEntityTooLarge: The body is over the size limit.
    """
    if request.content_type != 'application/json':
        shown = request.content_type or 'none'
        raise APIError(
            415,
            f'send the body as JSON with "Content-Type: application/json" (got {shown!r})',
            code='unsupported_media_type',
        )
    data = await request.read()
    try:
        return json.loads(data)
    except ValueError as exc:
        raise APIError(400, f'the body is not valid JSON: {exc}', code='invalid_json') from None


def _generation_kwargs(llm: BaseLLM, body: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    """The engine's per-call settings for a request; ``stop`` adds to the engine's own stop words."""
    kwargs = body.generation_kwargs()
    if body.stop is not None:
        words = [body.stop] if isinstance(body.stop, str) else body.stop
        kwargs['stop_words'] = tuple(dict.fromkeys((*llm.gen_params.stop_words, *words)))
    return kwargs


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)
