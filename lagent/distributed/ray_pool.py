"""Workers as Ray actors, on a local Ray instance or a cluster (the ``ray`` extra)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from lagent._optional import import_optional
from lagent.distributed.agent_config import AgentConfig, gpus_needed
from lagent.distributed.pools import WorkerLost
from lagent.distributed.tasks import Task
from lagent.distributed.worker import AgentWorker

__all__ = ['RayOptions', 'RayPool']

logger = logging.getLogger(__name__)

_CLOSE_TIMEOUT_S = 60.0


@dataclass
class RayOptions:
    """Run a batch's workers as Ray actors, and what each one reserves.

    Args:
        address: The cluster to join, as ``ray.init`` takes it (``'auto'``,
            ``'HOST:PORT'``, ``'ray://HOST:PORT'``); ``None`` starts a local Ray
            instance (or joins the cluster ``RAY_ADDRESS`` names). A Ray already
            initialized in this process is used as it is.
        num_cpus: CPUs each worker reserves.
        num_gpus: GPUs each worker reserves; ``None``: as many as its engine
            config asks for (``tp`` for the lmdeploy engines, see
            :func:`~lagent.distributed.agent_config.gpus_needed`).
        resources: Custom Ray resources each worker reserves.
        init_kwargs: Further ``ray.init`` keywords (``runtime_env``...).
    """

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float | None = None
    resources: Mapping[str, float] = field(default_factory=dict)
    init_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def needs(self, config: AgentConfig) -> dict[str, float]:
        """The Ray resources one worker for ``config`` reserves."""
        gpus = gpus_needed(config.llm) if self.num_gpus is None else self.num_gpus
        return {'CPU': self.num_cpus, 'GPU': gpus, **self.resources}


class _RayAgentWorker(AgentWorker):
    """An :class:`AgentWorker` that records its Ray node id as its node."""

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class RayPool:
    """Workers as Ray actors (no restarts by Ray: a lost worker's task is the
    scheduler's to retry elsewhere).

    Raises:
        MissingExtraError: Ray is not installed.
        ValueError: No node of the cluster has the resources one worker needs.
    """

    def __init__(self, config: AgentConfig, options: RayOptions):
        ray = import_optional('ray', package='ray', extra='ray')
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=options.address, logging_level=logging.WARNING, **options.init_kwargs)
        try:
            needs = options.needs(config)
            _check_a_node_fits(ray, needs)
            self._actor_class = ray.remote(_RayAgentWorker).options(
                num_cpus=needs.pop('CPU'),
                num_gpus=needs.pop('GPU'),
                resources=needs,
                max_restarts=0,
                max_task_retries=0,
            )
            self._config = ray.put(config)
        except BaseException:
            self._shutdown()
            raise
        self._actors: dict[Any, Any] = {}  # actor -> the future of its start

    def spawn(self, slot: int) -> tuple[Any, Any]:
        actor = self._actor_class.remote(self._config, slot)
        started = actor.start.remote()
        self._actors[actor] = started
        return actor, started

    def submit(self, worker: Any, task: Task) -> Any:
        return worker.run.remote(task)

    def wait(self, futures: Collection[Any]) -> list[Any]:
        pending = list(futures)
        ready, rest = self._ray.wait(pending, num_returns=1)
        if rest:  # collect the others that are done too
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return ready

    def result(self, future: Any) -> Any:
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(future)
        except exceptions.RayTaskError as exc:  # the method raised: raise what it raised
            cause = getattr(exc, 'cause', None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except exceptions.RayError as exc:  # the actor died, or its node
            raise WorkerLost(f'{type(exc).__name__}: {_first_line(exc)}') from exc

    def discard(self, worker: Any) -> None:
        with contextlib.suppress(Exception):
            self._ray.kill(worker, no_restart=True)
        self._actors.pop(worker, None)

    def close(self, *, wait: bool) -> None:
        ray = self._ray
        try:
            if wait and self._actors:  # close the workers that started (one never placed has nothing to close)
                starts = list(self._actors.values())
                started, _ = ray.wait(starts, num_returns=len(starts), timeout=0)
                closing = [actor.close.remote() for actor, start in self._actors.items() if start in started]
                ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_TIMEOUT_S)
            for actor in self._actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
            self._actors.clear()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False


def _check_a_node_fits(ray: Any, needs: Mapping[str, float]) -> None:
    wanted = {name: amount for name, amount in needs.items() if amount}
    nodes = [node.get('Resources', {}) for node in ray.nodes() if node.get('Alive')]
    if any(all(have.get(name, 0) >= amount for name, amount in wanted.items()) for have in nodes):
        return
    offered = '; '.join(', '.join(f'{name}={have.get(name, 0):g}' for name in wanted) or 'nothing' for have in nodes)
    raise ValueError(
        f'no node of the Ray cluster has what one worker needs '
        f'({", ".join(f"{name}={amount:g}" for name, amount in wanted.items())}); the nodes have: {offered or "none"}'
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ''
