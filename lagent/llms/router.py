"""``Router``: several engines behind one, so a fleet of servers behaves like one engine.

Each request goes to one backend engine, chosen by a policy among the healthy
ones; a request that fails before its first token is sent to another backend,
and a failing backend is ejected for a cooldown (a circuit breaker)::

    request ──► policy picks a healthy backend ──► backend.stream(...)
                   ▲                                  │
                   │ failed before the first token:   │ first token: committed,
                   │ eject it (after max_failures),   │ the rest streams from it;
                   └─ try another, until the deadline │ a later failure is raised

The Router renders nothing itself: a conversation goes to each backend as it
is, and the backend applies its own template, so backends with different
prompt formats can serve side by side. Generation settings given to the
Router (in its constructor, or per call) are forwarded to the backend and
override the backend's own; those not given leave each backend's defaults
alone. Stop words given to the Router are added to the backend's own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

from lagent.errors import EngineUnavailableError, LLMError, RateLimitError, RequestError
from lagent.llms.base import BaseLLM, LLMRequest
from lagent.llms.streaming import aclose_source, close_source
from lagent.schema import Chunk, GenerationParams, Response, ToolCallDelta

__all__ = ['POLICIES', 'BackendStats', 'Router', 'models_endpoint_check']

logger = logging.getLogger(__name__)

POLICIES = ('least_in_flight', 'round_robin', 'weighted')
"""How a backend is chosen: fewest requests in flight (ties in turn), in turn, or in
proportion to ``weights`` (smooth weighted round robin)."""

EngineLike = Union[BaseLLM, Mapping[str, Any]]
HealthCheck = Callable[[BaseLLM], object]
_TEMPLATE_KEYWORDS = ('meta_template', 'chat_template')
_HEALTH_JOIN_S = 10.0


@dataclass(frozen=True)
class BackendStats:
    """A snapshot of one backend of a :class:`Router`."""

    name: str
    """How the backend is shown (the name given, or its position and repr)."""
    state: Literal['healthy', 'ejected', 'probing']
    """``'ejected'``: cooling down after failures; ``'probing'``: one trial request
    is testing it after its cooldown."""
    in_flight: int
    """Requests it is answering now."""
    requests: int
    """Requests sent to it."""
    errors: int
    """Requests that failed on it (before or after their first token)."""
    failovers: int
    """Of those, requests that failed before their first token and went to another backend."""
    mean_ttft_s: float | None
    """Mean time to the first token of its answered requests."""
    mean_latency_s: float | None
    """Mean time of its completed requests."""
    last_error: str | None
    """The last error it gave."""


class _Backend:
    """One engine behind the router: its counters and its circuit breaker (guarded by the router's lock)."""

    def __init__(self, index: int, engine: BaseLLM, name: str, weight: float):
        self.index = index
        self.engine = engine
        self.name = name
        self.weight = weight
        self.current_weight = 0.0
        self.in_flight = 0
        self.requests = 0
        self.errors = 0
        self.failovers = 0
        self.ttft_sum = 0.0
        self.ttft_count = 0
        self.latency_sum = 0.0
        self.latency_count = 0
        self.last_error: str | None = None
        self.consecutive_failures = 0
        self.ejected_until: float | None = None
        self.probing = False

    def admits(self, now: float) -> bool:
        """Healthy, or cooled down and not already being probed."""
        if self.ejected_until is None:
            return True
        return now >= self.ejected_until and not self.probing

    def snapshot(self) -> BackendStats:
        if self.ejected_until is None:
            state: Literal['healthy', 'ejected', 'probing'] = 'healthy'
        else:
            state = 'probing' if self.probing else 'ejected'
        return BackendStats(
            name=self.name,
            state=state,
            in_flight=self.in_flight,
            requests=self.requests,
            errors=self.errors,
            failovers=self.failovers,
            mean_ttft_s=self.ttft_sum / self.ttft_count if self.ttft_count else None,
            mean_latency_s=self.latency_sum / self.latency_count if self.latency_count else None,
            last_error=self.last_error,
        )


class Router(BaseLLM):
    """An engine that spreads requests over several engines: the same contract, sync and async.

    Args:
        engines: The backends: engines, or engine configs for
            :func:`~lagent.llms.build_llm` (``{'type': 'LMDeployClient', 'url': ...}``).
            The router owns them: closing it closes them.
        policy: How a backend is chosen among the healthy ones (:data:`POLICIES`).
        weights: One positive weight per engine, for the ``'weighted'`` policy.
        names: How each backend is shown in :meth:`stats` and logs (default: its
            position and repr, ``'0: OpenAICompatible(url=...)'``).
        max_failures: Consecutive failures after which a backend is ejected.
        cooldown: Seconds an ejected backend rests before one trial request (or a
            passing health check) brings it back.
        failover_timeout: Seconds a request may spend looking for a backend that
            starts answering; when it runs out (or every backend has failed it or is
            ejected), :class:`~lagent.errors.EngineUnavailableError` is raised. An
            attempt in progress ends by the backend's own connect and idle timeouts.
        health_check: Called with each backend's engine every
            ``health_check_interval`` seconds in a background thread; raising
            ejects the backend, returning brings an ejected one back
            (:func:`models_endpoint_check` asks a served engine for its models).
            ``None``: no background checks; the first request after a cooldown is
            the check.
        health_check_interval: Seconds between two rounds of health checks.
        **gen_params: Generation settings forwarded to every backend (they override
            the backend's own); see :class:`~lagent.schema.GenerationParams`.

    Raises:
        ValueError: No engines, an unknown policy, bad weights, a template given to
            the router (give it to the engines), or an invalid generation setting.

    Example:
        >>> from lagent.llms import ScriptedLLM
        >>> router = Router([ScriptedLLM(['a', 'c']), ScriptedLLM(['b'])], policy='round_robin')
        >>> [router.generate('hi') for _ in range(3)]
        ['a', 'b', 'c']
    """

    accepts_messages = True
    native_tools = True

    def __init__(
        self,
        engines: Sequence[EngineLike],
        policy: str = 'least_in_flight',
        *,
        weights: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        max_failures: int = 1,
        cooldown: float = 10.0,
        failover_timeout: float = 30.0,
        health_check: HealthCheck | None = None,
        health_check_interval: float = 5.0,
        **gen_params: Any,
    ):
        for name in _TEMPLATE_KEYWORDS:
            if name in gen_params and gen_params[name] is None:
                del gen_params[name]  # "no template" is what a router has anyway
        given_templates = [name for name in _TEMPLATE_KEYWORDS if name in gen_params]
        if given_templates:
            raise ValueError(
                f'a Router renders no prompts, so it takes no {given_templates[0]}: give templates to its engines'
            )
        _check_settings(policy, max_failures, cooldown, failover_timeout, health_check_interval)
        if isinstance(engines, (str, Mapping)) or not isinstance(engines, Sequence) or not engines:
            raise ValueError('a Router needs a non-empty list of engines (or engine configs)')
        count = len(engines)
        weights = _check_per_engine('weights', weights, count, default=1.0)
        names = _check_per_engine('names', names, count, default=None)
        super().__init__(path=None)
        self.gen_params = GenerationParams.create(**gen_params)  # only what was given: the rest is each backend's
        self.policy = policy
        self.max_failures = max_failures
        self.cooldown = cooldown
        self.failover_timeout = failover_timeout
        self._lock = threading.Lock()
        self._turn = 0
        self._backends: list[_Backend] = []
        try:
            for index, engine in enumerate(engines):
                built = _as_engine(engine, index)
                name = names[index] or f'{index}: {built!r}'
                self._backends.append(_Backend(index, built, name, float(weights[index])))
        except BaseException:
            for backend in self._backends:
                backend.engine.close()
            raise
        self.batch_concurrency = sum(max(1, b.engine.batch_concurrency) for b in self._backends)
        self._health_stop = threading.Event()
        self._health_thread: threading.Thread | None = None
        if health_check is not None:
            self._health_thread = threading.Thread(
                target=self._check_health_forever,
                args=(health_check, health_check_interval),
                name='lagent-router-health',
                daemon=True,
            )
            self._health_thread.start()

    def __repr__(self) -> str:
        return f'Router(policy={self.policy!r}, engines=[{", ".join(b.name for b in self._backends)}])'

    @property
    def engines(self) -> list[BaseLLM]:
        """The backend engines, in the order given."""
        return [backend.engine for backend in self._backends]

    @property
    def tool_calling(self) -> Literal['native', 'template', 'none']:
        """How tools travel: the backends' common way, or ``'none'`` if they differ."""
        ways = {backend.engine.tool_calling for backend in self._backends}
        return ways.pop() if len(ways) == 1 else 'none'

    def stats(self) -> list[BackendStats]:
        """A snapshot of every backend: health, requests in flight, errors and latency."""
        with self._lock:
            return [backend.snapshot() for backend in self._backends]

    # ------------------------------------------------------------------ hooks

    def _stream(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        return self._sync_failover(request, params, _open_stream)

    def _answer(self, request: LLMRequest, params: GenerationParams) -> Iterator[Chunk]:
        return self._sync_failover(request, params, _open_answer)

    def _astream(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        return self._async_failover(request, params, _aopen_stream)

    def _aanswer(self, request: LLMRequest, params: GenerationParams) -> AsyncIterator[Chunk]:
        return self._async_failover(request, params, _aopen_answer)

    def close(self) -> None:
        """Stop the health checks and close every backend engine."""
        self._stop_health_checks()
        for backend in self._backends:
            backend.engine.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self._stop_health_checks()
        for backend in self._backends:
            await backend.engine.aclose()

    # ------------------------------------------------------------------ failover

    def _sync_failover(
        self, request: LLMRequest, params: GenerationParams, open_on: Callable[..., Iterator[Chunk]]
    ) -> Iterator[Chunk]:
        attempt = _Failover(self, request, params)
        while True:
            backend = attempt.next_backend()
            if isinstance(backend, float):
                time.sleep(backend)
                continue
            args, kwargs = attempt.call_for(backend)
            began = time.monotonic()
            source: Iterator[Chunk] | None = None
            held: list[Chunk] = []
            try:
                source = open_on(backend.engine, args, kwargs)
                for chunk in source:
                    held.append(chunk)
                    if _has_content(chunk):
                        break
            except Exception as exc:
                close_source(source)
                attempt.failed_before_first_token(backend, exc, began)
                continue
            except BaseException:
                close_source(source)
                attempt.abandoned(backend, began)
                raise
            attempt.committed(backend, began)
            try:
                yield from held
                yield from source
            except Exception as exc:
                attempt.failed_after_first_token(backend, exc, began)
                raise
            except BaseException:  # the caller closed the stream early
                attempt.abandoned(backend, began)
                raise
            else:
                attempt.finished(backend, began)
            finally:
                close_source(source)
            return

    async def _async_failover(
        self, request: LLMRequest, params: GenerationParams, open_on: Callable[..., AsyncIterator[Chunk]]
    ) -> AsyncIterator[Chunk]:
        attempt = _Failover(self, request, params)
        while True:
            backend = attempt.next_backend()
            if isinstance(backend, float):
                await asyncio.sleep(backend)
                continue
            args, kwargs = attempt.call_for(backend)
            began = time.monotonic()
            source: AsyncIterator[Chunk] | None = None
            held: list[Chunk] = []
            try:
                source = open_on(backend.engine, args, kwargs)
                async for chunk in source:
                    held.append(chunk)
                    if _has_content(chunk):
                        break
            except Exception as exc:
                await aclose_source(source)
                attempt.failed_before_first_token(backend, exc, began)
                continue
            except BaseException:
                await aclose_source(source)
                attempt.abandoned(backend, began)
                raise
            attempt.committed(backend, began)
            try:
                for chunk in held:
                    yield chunk
                async for chunk in source:
                    yield chunk
            except Exception as exc:
                attempt.failed_after_first_token(backend, exc, began)
                raise
            except BaseException:
                attempt.abandoned(backend, began)
                raise
            else:
                attempt.finished(backend, began)
            finally:
                await aclose_source(source)
            return

    # ------------------------------------------------------------------ choosing and accounting

    def _choose(self, exclude: set[int], now: float) -> _Backend | None:
        """Pick a backend for a request (marking a cooled-down one as probing), or ``None``."""
        with self._lock:
            candidates = [b for b in self._backends if b.index not in exclude and b.admits(now)]
            if not candidates:
                return None
            if self.policy == 'weighted':
                total = sum(b.weight for b in candidates)
                for backend in candidates:
                    backend.current_weight += backend.weight
                chosen = max(candidates, key=lambda b: b.current_weight)
                chosen.current_weight -= total
            else:
                if self.policy == 'least_in_flight':
                    fewest = min(b.in_flight for b in candidates)
                    candidates = [b for b in candidates if b.in_flight == fewest]
                chosen = self._next_in_turn(candidates)
            if chosen.ejected_until is not None:
                chosen.probing = True
            chosen.in_flight += 1
            chosen.requests += 1
            return chosen

    def _next_in_turn(self, candidates: list[_Backend]) -> _Backend:
        count = len(self._backends)
        indices = {b.index: b for b in candidates}
        for offset in range(count):
            index = (self._turn + offset) % count
            if index in indices:
                self._turn = index + 1
                return indices[index]
        raise AssertionError('no candidate')  # pragma: no cover - candidates is never empty here

    def _next_readmission(self, exclude: set[int]) -> float | None:
        """When the earliest ejected backend not in ``exclude`` may take a trial request."""
        with self._lock:
            times = [
                b.ejected_until
                for b in self._backends
                if b.index not in exclude and b.ejected_until is not None and not b.probing
            ]
        return min(times) if times else None

    def _record(
        self, backend: _Backend, *, error: BaseException | None = None, ttft: float | None = None,
        latency: float | None = None, failover: bool = False, breaker: bool = True, done: bool = True,
        release_probe: bool = False,
    ) -> None:  # fmt: skip
        with self._lock:
            if done:
                backend.in_flight -= 1
            if release_probe:
                backend.probing = False
            if ttft is not None:
                backend.ttft_sum += ttft
                backend.ttft_count += 1
                backend.consecutive_failures = 0
                backend.ejected_until = None
                backend.probing = False
            if latency is not None:
                backend.latency_sum += latency
                backend.latency_count += 1
            if error is None:
                return
            backend.errors += 1
            backend.failovers += int(failover)
            backend.last_error = f'{type(error).__name__}: {error}'
            if not breaker:
                return
            backend.consecutive_failures += 1
            if backend.probing or backend.consecutive_failures >= self.max_failures:
                was_healthy = backend.ejected_until is None
                backend.ejected_until = time.monotonic() + self.cooldown
                backend.probing = False
                if was_healthy:
                    logger.warning('backend %s ejected for %.1fs: %s', backend.name, self.cooldown, backend.last_error)

    # ------------------------------------------------------------------ health checks

    def _check_health_forever(self, check: HealthCheck, interval: float) -> None:
        while not self._health_stop.wait(interval):
            for backend in self._backends:
                if self._health_stop.is_set():
                    return
                try:
                    check(backend.engine)
                except Exception as exc:
                    self._health_result(backend, exc)
                else:
                    self._health_result(backend, None)

    def _health_result(self, backend: _Backend, error: BaseException | None) -> None:
        with self._lock:
            if error is None:
                if backend.ejected_until is not None and not backend.probing:
                    logger.info('backend %s passed its health check: back in rotation', backend.name)
                    backend.ejected_until = None
                    backend.consecutive_failures = 0
                return
            backend.last_error = f'health check: {type(error).__name__}: {error}'
            if backend.ejected_until is None:
                logger.warning('backend %s failed its health check: ejected (%s)', backend.name, backend.last_error)
            backend.ejected_until = time.monotonic() + self.cooldown

    def _stop_health_checks(self) -> None:
        self._health_stop.set()
        thread, self._health_thread = self._health_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(_HEALTH_JOIN_S)  # a check that hangs is left behind (a daemon thread), never waited for


class _Failover:
    """The state of one request across its attempts (shared by the sync and async loops)."""

    def __init__(self, router: Router, request: LLMRequest, params: GenerationParams):
        self.router = router
        self.request = request
        self.forwarded = params.model_dump(include=params.model_fields_set)
        self.deadline = time.monotonic() + router.failover_timeout
        self.tried: set[int] = set()
        self.last_error: BaseException | None = None

    def next_backend(self) -> _Backend | float:
        """The backend to try next, or seconds to wait for an ejected one's cooldown.

        Raises:
            EngineUnavailableError: No backend is left to try before the deadline.
        """
        now = time.monotonic()
        if now < self.deadline:
            backend = self.router._choose(self.tried, now)
            if backend is not None:
                return backend
            readmission = self.router._next_readmission(self.tried)
            if readmission is not None and readmission < self.deadline:
                return max(0.0, readmission - now) + 0.001
        tried = len(self.tried)
        reason = (
            f'{tried} of {len(self.router._backends)} backends failed this request'
            if tried
            else 'every backend is ejected after failures'
        )
        if now >= self.deadline:
            reason += f' and the failover timeout ({self.router.failover_timeout:g}s) ran out'
        if self.last_error is not None:
            reason += f'; last error: {type(self.last_error).__name__}: {self.last_error}'
        raise EngineUnavailableError(f'Router: no backend could answer: {reason}') from self.last_error

    def call_for(self, backend: _Backend) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of the backend's public call for this request."""
        kwargs = dict(self.forwarded)
        if 'stop_words' in kwargs:
            kwargs['stop_words'] = tuple(dict.fromkeys((*backend.engine.gen_params.stop_words, *kwargs['stop_words'])))
        if self.request.prompt is not None:
            return (self.request.prompt,), kwargs
        return (self.request.messages,), {
            **kwargs,
            'tools': self.request.tools,
            'tool_choice': self.request.tool_choice,
        }

    def failed_before_first_token(self, backend: _Backend, exc: Exception, began: float) -> None:
        """Fail over for errors a backend fault explains; raise the others (e.g. a refused request)."""
        retryable = _is_backend_fault(exc)
        self.router._record(backend, error=exc, failover=retryable, breaker=retryable)
        if not retryable:
            raise exc
        logger.warning('backend %s failed before the first token (%s: %s); failing over', backend.name,
                       type(exc).__name__, exc)  # fmt: skip
        self.tried.add(backend.index)
        self.last_error = exc

    def committed(self, backend: _Backend, began: float) -> None:
        self.router._record(backend, ttft=time.monotonic() - began, done=False)

    def failed_after_first_token(self, backend: _Backend, exc: Exception, began: float) -> None:
        logger.warning('backend %s failed mid-reply (%s: %s); not retried: text was already sent', backend.name,
                       type(exc).__name__, exc)  # fmt: skip
        self.router._record(backend, error=exc, latency=time.monotonic() - began, breaker=_is_backend_fault(exc))

    def finished(self, backend: _Backend, began: float) -> None:
        self.router._record(backend, latency=time.monotonic() - began)

    def abandoned(self, backend: _Backend, began: float) -> None:
        """The caller stopped the request (closed the stream, was cancelled): no verdict on the backend."""
        self.router._record(backend, release_probe=True)


# ---------------------------------------------------------------------- opening a backend


def _open_stream(engine: BaseLLM, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Chunk]:
    return engine.stream(*args, **kwargs)


def _open_answer(engine: BaseLLM, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Iterator[Chunk]:
    return iter([_as_chunk(engine.complete(*args, **kwargs))])


def _aopen_stream(engine: BaseLLM, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AsyncIterator[Chunk]:
    return engine.astream(*args, **kwargs)


async def _aopen_answer(engine: BaseLLM, args: tuple[Any, ...], kwargs: dict[str, Any]) -> AsyncIterator[Chunk]:
    yield _as_chunk(await engine.acomplete(*args, **kwargs))


def _as_chunk(response: Response) -> Chunk:
    """A whole reply as one chunk."""
    deltas = [
        ToolCallDelta(index=index, id=call.id, name=call.function.name, arguments=call.function.arguments)
        for index, call in enumerate(response.tool_calls)
    ]
    return Chunk(
        text=response.text,
        finish_reason=response.finish_reason or 'stop',
        usage=response.usage,
        tool_calls=deltas or None,
    )


def _has_content(chunk: Chunk) -> bool:
    """Whether a chunk commits the request to its backend (anything but an empty keep-alive)."""
    return bool(chunk.text or chunk.tool_calls or chunk.finish_reason is not None)


def _is_backend_fault(exc: BaseException) -> bool:
    """Errors another backend might not have: connection, timeout, 5xx, 429, stream and
    availability errors; never a refused request (4xx) or a misuse of the API."""
    if isinstance(exc, RateLimitError):
        return True
    return isinstance(exc, LLMError) and not isinstance(exc, RequestError)


# ---------------------------------------------------------------------- construction


def _as_engine(engine: EngineLike, index: int) -> BaseLLM:
    if isinstance(engine, BaseLLM):
        return engine
    if isinstance(engine, Mapping):
        from lagent.llms.config import build_llm

        return build_llm(engine)
    raise ValueError(f'engine {index} must be an engine or an engine config, got {type(engine).__name__}')


def _check_settings(policy: str, max_failures: int, cooldown: float, failover_timeout: float, interval: float) -> None:
    if policy not in POLICIES:
        raise ValueError(f'unknown policy {policy!r}; choose one of: {", ".join(POLICIES)}')
    if max_failures < 1:
        raise ValueError(f'max_failures must be at least 1, got {max_failures}')
    for name, value in (('cooldown', cooldown), ('failover_timeout', failover_timeout),
                        ('health_check_interval', interval)):  # fmt: skip
        if not value > 0:
            raise ValueError(f'{name} must be positive, got {value}')


def _check_per_engine(name: str, values: Sequence[Any] | None, count: int, *, default: Any) -> list[Any]:
    if values is None:
        return [default] * count
    items = list(values)
    if len(items) != count:
        raise ValueError(f'{name} must have one entry per engine ({count}), got {len(items)}')
    if name == 'weights' and not all(isinstance(w, (int, float)) and w > 0 for w in items):
        raise ValueError(f'weights must be positive numbers, got {items}')
    return items


def models_endpoint_check(engine: BaseLLM) -> None:
    """A health check for served OpenAI-compatible engines (``OpenAICompatible``,
    ``LMDeployClient``...): their server must list its models at ``/v1/models``.

    Raises:
        TypeError: The engine is not a served OpenAI-compatible engine.
        LLMError: The server did not answer.
    """
    from lagent.llms.openai_compatible import OpenAICompatible

    if not isinstance(engine, OpenAICompatible):
        raise TypeError(f'models_endpoint_check needs an OpenAI-compatible engine, got {type(engine).__name__}')
    engine.transport.get_json('/models', timeout=engine.transport.connect_timeout)
