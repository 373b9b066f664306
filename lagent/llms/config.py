"""Build an engine from a config: a dict, or a JSON/YAML file holding one.

The config names the engine in ``type`` and gives its constructor keywords,
the way OpenCompass and AISBench model configs do::

    build_llm(dict(type='LMDeployClient', url='http://127.0.0.1:23333',
                   meta_template='internlm2', max_new_tokens=256))

``type`` is an engine class, a class name (``'LlamaCpp'``) or a short name
(``'llamacpp'``, ``'hf'``, ``'openai'``...) of the engine registry
(:mod:`lagent.llms.registry`), or a ``'module:Class'`` target (an engine of
your own: ``'my_engines:EchoLLM'``). Engine modules are imported only when
built, so the registry costs nothing at ``import lagent``. Keys the engine
does not take are rejected by name before it is constructed (a server engine
would otherwise start a child process first). A config without a template gets
the one of its model's family where the engine needs it (see
:mod:`lagent.llms.model_defaults`).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lagent._optional import import_optional
from lagent.llms.base import BaseLLM
from lagent.llms.model_defaults import with_model_defaults
from lagent.llms.registry import ENGINES, EngineSpec, engine_names, register_llm, resolve_engine
from lagent.schema import GenerationParams

__all__ = [
    'build_llm',
    'check_config_keys',
    'engine_names',
    'load_config',
    'register_llm',
    'required_keywords',
    'resolve_engine',
]

LLMConfig = Mapping[str, Any]


def build_llm(config: LLMConfig | str | os.PathLike[str]) -> BaseLLM:
    """Construct an engine from a config.

    Args:
        config: A mapping with ``type`` (engine class, registered name or
            ``'package.module:ClassName'``) and the
            engine's constructor keywords, or the path of a ``.json``,
            ``.yaml`` or ``.yml`` file holding one.

    Returns:
        The engine, ready to use.

    Raises:
        ValueError: No ``type``, an unknown engine, a key the engine does not take
            (named in the message), or an invalid generation parameter.
        OSError: The config file cannot be read.
        MissingExtraError: The engine's library (or pyyaml, for a YAML file) is not installed.
    """
    values = dict(load_config(config) if isinstance(config, (str, os.PathLike)) else config)
    if 'type' not in values:
        raise ValueError(f"an LLM config needs a 'type' (one of: {', '.join(engine_names())})")
    engine = resolve_engine(values.pop('type'))
    check_config_keys(engine, values)
    return engine(**with_model_defaults(engine, values))


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an LLM config from a JSON or YAML file.

    Raises:
        OSError: The file cannot be read.
        ValueError: The file does not parse, or does not hold a mapping.
        MissingExtraError: A YAML file, and pyyaml is not installed.
    """
    path = Path(path)
    text = path.read_text(encoding='utf-8')
    if path.suffix.lower() in ('.yaml', '.yml'):
        yaml = import_optional('yaml', package='pyyaml', extra='bench')
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f'{os.fspath(path)} is not valid YAML: {_one_line(exc)}') from None
    elif path.suffix.lower() == '.json':
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f'{os.fspath(path)} is not valid JSON: {exc}') from None
    else:
        raise ValueError(f'{os.fspath(path)}: an LLM config must be a .json, .yaml or .yml file')
    if not isinstance(data, dict):
        raise ValueError(f'{os.fspath(path)} must hold a mapping of engine keywords, got {type(data).__name__}')
    return data


def check_config_keys(engine: type, values: Mapping[str, Any]) -> None:
    """Check that ``engine(**values)`` would accept every key, without constructing it.

    Keywords an engine forwards through ``**kwargs`` to its base classes count,
    and those reaching :class:`BaseLLM` may be any
    :class:`~lagent.schema.GenerationParams` field; generation values are
    validated too.

    Raises:
        ValueError: A key the engine does not take (named, with the keys it does),
            or an invalid generation parameter.
    """
    accepted, open_ended = accepted_keywords(engine)
    unknown = [key for key in values if key not in accepted]
    if unknown and not open_ended:
        raise ValueError(
            f'{engine.__name__} does not take {", ".join(map(repr, unknown))}; it takes: {", ".join(sorted(accepted))}'
        )
    generation = {key: value for key, value in values.items() if key in GenerationParams.model_fields}
    if generation and issubclass(engine, BaseLLM):
        GenerationParams.create(**generation)


def accepted_keywords(engine: type) -> tuple[set[str], bool]:
    """Return the keywords ``engine``'s constructor accepts, following ``**kwargs``
    up the class hierarchy, and whether it accepts any keyword at all (a
    ``**kwargs`` that leads nowhere this function can see)."""
    accepted: set[str] = set()
    for cls in engine.__mro__:
        if cls is object:
            break
        if '__init__' not in vars(cls):
            continue
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
        accepted.update(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return accepted, False
        if cls is BaseLLM:
            accepted.update(GenerationParams.model_fields)
            return accepted, False
    return accepted, True


def _one_line(exc: BaseException) -> str:
    return ' '.join(str(exc).split())


def required_keywords(engine: type) -> list[str]:
    """Return the constructor keywords ``engine`` cannot do without (no default)."""
    parameters = list(inspect.signature(engine.__init__).parameters.values())[1:]  # drop self
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty]


_AGENT_KEYWORDS = frozenset(
    {'action_executor', 'plugin_executor', 'interpreter_executor', 'protocol', 'max_turn', 'tools', 'memory'}
)


def explain_unknown_keywords(engine: type, names: list[str]) -> str:
    """Say why ``engine`` rejects constructor keywords: whose keywords they are
    (an agent's, another engine's) or that nobody takes them."""
    reasons = []
    for name in names:
        if name in _AGENT_KEYWORDS:
            reasons.append(f'{name!r} is an agent keyword (e.g. ReAct(llm=..., {name}=...)), not an LLM one')
            continue
        owners = [spec.class_name for spec in ENGINES if name in _keywords_of(spec)]
        if owners:
            reasons.append(f'{name!r} is a keyword of {", ".join(dict.fromkeys(owners))}, not of {engine.__name__}')
        else:
            accepted, _ = accepted_keywords(engine)
            own = ', '.join(sorted(accepted - set(GenerationParams.model_fields)))
            reasons.append(
                f'unknown keyword {name!r} for {engine.__name__} (it takes: {own}, and generation parameters)'
            )
    return '; '.join(reasons)


def _keywords_of(spec: EngineSpec) -> set[str]:
    try:
        engine = spec.load()
    except (ImportError, ValueError):
        return set()
    accepted, _ = accepted_keywords(engine)
    return accepted - set(GenerationParams.model_fields)
