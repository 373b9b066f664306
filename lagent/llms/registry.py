"""The one registry of engines: what each is called, where its class lives,
how it is pointed at a server, and which pip extra it needs.

``build_llm`` configs, the command line's ``--backend``, the lazy exports of
:mod:`lagent.llms` and the engine table of the docs all read this list, so an
engine is added in one place. Entries name their class as ``'module:Class'``
and nothing is imported until an engine is built.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

__all__ = ['ENGINES', 'EngineSpec', 'engine_names', 'engine_table', 'find_engine', 'register_llm', 'resolve_engine']


@dataclass(frozen=True)
class EngineSpec:
    """One engine of the registry."""

    name: str
    """Short name, as ``--backend`` and a config's ``type`` take it (``'llamacpp'``)."""
    target: str | type
    """The engine class, or ``'package.module:ClassName'`` to import it when built."""
    aliases: tuple[str, ...] = ()
    """Other names it is known by (its class name is always one)."""
    url_keyword: str | None = None
    """The constructor keyword that takes a server address (``--url``); ``None``:
    the engine runs its own model."""
    model_keyword: str | None = 'path'
    """The constructor keyword that takes the model (``--model``): a path for
    engines that load it, a served model's name for clients."""
    extra: str | None = None
    """The pip extra that installs its library (``pip install "lagent[extra]"``)."""
    summary: str = ''
    """What it runs, in a few words (the docs table)."""
    needs_cuda: bool = False
    """Whether it runs only with a CUDA device."""

    @property
    def class_name(self) -> str:
        """The name of the engine class."""
        if isinstance(self.target, str):
            return self.target.rpartition(':')[2]
        return self.target.__name__

    @property
    def names(self) -> tuple[str, ...]:
        """Every name this engine is found by."""
        return tuple(dict.fromkeys((self.name, self.class_name, *self.aliases)))

    def load(self) -> type:
        """Import and return the engine class.

        Raises:
            ValueError: The module or the class does not exist.
        """
        if inspect.isclass(self.target):
            return self.target
        module_name, _, class_name = self.target.partition(':')
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise  # the module exists but one of its own imports failed: show that
            raise ValueError(f'engine {self.name!r}: no module named {exc.name!r}') from None
        engine_class = getattr(module, class_name, None)
        if not inspect.isclass(engine_class):
            raise ValueError(f'engine {self.name!r}: {module_name!r} has no class {class_name!r}')
        return engine_class


ENGINES: list[EngineSpec] = [
    EngineSpec(
        'llamacpp',
        'lagent.llms.llama_cpp:LlamaCpp',
        extra='llamacpp',
        summary='llama.cpp in process (the embedded default)',
    ),
    EngineSpec(
        'llamacpp-server',
        'lagent.llms.llama_cpp_server:LlamaCppServer',
        extra='llamacpp',
        summary='llama.cpp server as a child process',
    ),
    EngineSpec(
        'hf',
        'lagent.llms.hf_transformer:HFTransformer',
        extra='hf',
        summary='transformers in process (install torch first)',
    ),
    EngineSpec(
        'lmdeploy-pipeline',
        'lagent.llms.lmdeploy_pipeline:LMDeployPipeline',
        extra='lmdeploy',
        summary='lmdeploy pipeline in process (CUDA)',
        needs_cuda=True,
    ),
    EngineSpec(
        'lmdeploy-server',
        'lagent.llms.lmdeploy_server:LMDeployServer',
        extra='lmdeploy',
        summary='`lmdeploy serve api_server` as a child process (CUDA)',
        needs_cuda=True,
    ),
    EngineSpec(
        'lmdeploy-client',
        'lagent.llms.lmdeploy_client:LMDeployClient',
        url_keyword='url',
        model_keyword='model_name',
        summary='a running lmdeploy api_server',
    ),
    EngineSpec(
        'triton',
        'lagent.llms.triton:TritonClient',
        url_keyword='tritonserver_addr',
        model_keyword='model_name',
        extra='triton',
        summary='Triton Inference Server (TensorRT-LLM, vLLM backends)',
    ),
    EngineSpec(
        'openai',
        'lagent.llms.openai_compatible:OpenAICompatible',
        url_keyword='url',
        model_keyword='model_name',
        summary='any OpenAI-compatible server',
    ),
    EngineSpec(
        'gptapi',
        'lagent.llms.openai_compatible:GPTAPI',
        url_keyword='api_base',
        model_keyword='model_type',
        summary="`OpenAICompatible` with the original lagent's keywords",
    ),
    EngineSpec(
        'router',
        'lagent.llms.router:Router',
        model_keyword=None,
        summary='several engines as one: least-in-flight, failover, circuit breaker',
    ),
    EngineSpec(
        'scripted',
        'lagent.llms.scripted:ScriptedLLM',
        model_keyword=None,
        summary='scripted replies, for testing agents',
    ),
]
"""Every engine lagent knows, in the order the docs list them; :func:`register_llm` adds more."""


def find_engine(name: str) -> EngineSpec | None:
    """The engine registered under ``name`` (a short name, class name or alias), if any."""
    for spec in reversed(ENGINES):  # the latest registration of a name wins
        if name in spec.names:
            return spec
    return None


def engine_names() -> list[str]:
    """Every name an engine can be built by, sorted."""
    return sorted({name for spec in ENGINES for name in spec.names})


def register_llm(
    name: str,
    target: str | type,
    *,
    url_keyword: str | None = None,
    model_keyword: str | None = 'path',
    extra: str | None = None,
    override: bool = False,
) -> None:
    """Make an engine buildable by name (in configs and on the command line).

    Args:
        name: The name a config's ``type`` (or ``lagent --backend``) will use.
        target: The engine class, or ``'package.module:ClassName'`` to import it lazily.
        url_keyword: Its constructor keyword for a server address, if it talks to one
            (``--url`` sets it).
        model_keyword: Its constructor keyword for the model (``--model`` sets it).
        extra: The pip extra its library needs, if any.
        override: Replace an existing engine of that name.

    Raises:
        ValueError: The name is taken (and ``override`` is false), or the target is malformed.
    """
    if not name or not isinstance(name, str):
        raise ValueError('an engine name must be a non-empty string')
    if isinstance(target, str):
        module, _, attribute = target.partition(':')
        if not module or not attribute:
            raise ValueError(f"engine target must look like 'package.module:ClassName', got {target!r}")
    elif not inspect.isclass(target):
        raise ValueError(f'engine target must be a class or a "module:Class" string, got {type(target).__name__}')
    existing = find_engine(name)
    if existing is not None and not override:
        raise ValueError(f'engine {name!r} is already registered; pass override=True to replace it')
    ENGINES.append(EngineSpec(name, target, url_keyword=url_keyword, model_keyword=model_keyword, extra=extra))


def resolve_engine(engine: Any) -> type:
    """Return the engine class a config's ``type`` names (importing its module now):
    a class, a registered name, or ``'package.module:ClassName'``.

    Raises:
        ValueError: The name is not registered (the message lists the names that
            are), or the target's module or class does not exist.
        MissingExtraError: The engine's library is not installed.
    """
    if inspect.isclass(engine):
        return engine
    if not isinstance(engine, str):
        raise ValueError(f"an engine 'type' must be a class or a name, got {type(engine).__name__}")
    spec = find_engine(engine)
    if spec is None and ':' in engine:
        spec = EngineSpec(engine, engine)
    if spec is None:
        raise ValueError(
            f"unknown engine {engine!r}; known: {', '.join(engine_names())} (or 'package.module:ClassName')"
        )
    return spec.load()


def engine_table() -> str:
    """The engines as the Markdown table of the README: what each runs, its class,
    its ``--backend`` name and its pip extra."""
    rows = ['| engine | class | `--backend` | extra |', '|---|---|---|---|']
    for spec in ENGINES:
        extra = f'`{spec.extra}`' if spec.extra else '—'
        rows.append(f'| {spec.summary} | `{spec.class_name}` | `{spec.name}` | {extra} |')
    return '\n'.join(rows)
