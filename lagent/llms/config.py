"""Build an engine from a config: a dict, or a JSON/YAML file holding one.

The config names the engine in ``type`` and gives its constructor keywords,
the way OpenCompass and AISBench model configs do::

    build_llm(dict(type='LMDeployClient', url='http://127.0.0.1:23333',
                   meta_template='internlm2', max_new_tokens=256))

``type`` is an engine class, a class name (``'LlamaCpp'``) or a short name
(``'llamacpp'``, ``'hf'``, ``'openai'``...), looked up in one registry that
maps names to ``'module:Class'`` targets, or such a target itself (an engine
of your own: ``'my_engines:EchoLLM'``). Engine modules are imported only
when built, so the registry costs nothing at ``import lagent``. Keys the engine
does not take are rejected by name before it is constructed (a server engine
would otherwise start a child process first). A config without a template gets
the one of its model's family where the engine needs it (see
:mod:`lagent.llms.model_defaults`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lagent._optional import import_optional
from lagent.llms.base import BaseLLM
from lagent.llms.model_defaults import with_model_defaults
from lagent.schema import GenerationParams

__all__ = ['build_llm', 'engine_names', 'register_llm', 'resolve_engine']

LLMConfig = Mapping[str, Any]

_ENGINES: dict[str, str | type] = {
    # class names
    'LlamaCpp': 'lagent.llms.llama_cpp:LlamaCpp',
    'LlamaCppServer': 'lagent.llms.llama_cpp_server:LlamaCppServer',
    'HFTransformer': 'lagent.llms.hf_transformer:HFTransformer',
    'LMDeployPipeline': 'lagent.llms.lmdeploy_pipeline:LMDeployPipeline',
    'LMDeployServer': 'lagent.llms.lmdeploy_server:LMDeployServer',
    'LMDeployClient': 'lagent.llms.lmdeploy_client:LMDeployClient',
    'TritonClient': 'lagent.llms.triton:TritonClient',
    'OpenAICompatible': 'lagent.llms.openai_compatible:OpenAICompatible',
    'GPTAPI': 'lagent.llms.openai_compatible:GPTAPI',
    'ScriptedLLM': 'lagent.llms.scripted:ScriptedLLM',
    # short names (the CLI's --backend)
    'llamacpp': 'lagent.llms.llama_cpp:LlamaCpp',
    'llamacpp-server': 'lagent.llms.llama_cpp_server:LlamaCppServer',
    'hf': 'lagent.llms.hf_transformer:HFTransformer',
    'lmdeploy-pipeline': 'lagent.llms.lmdeploy_pipeline:LMDeployPipeline',
    'lmdeploy-server': 'lagent.llms.lmdeploy_server:LMDeployServer',
    'lmdeploy-client': 'lagent.llms.lmdeploy_client:LMDeployClient',
    'triton': 'lagent.llms.triton:TritonClient',
    'openai': 'lagent.llms.openai_compatible:OpenAICompatible',
}


def register_llm(name: str, target: str | type[BaseLLM], *, override: bool = False) -> None:
    """Make an engine buildable by name (in configs and on the command line).

    Args:
        name: The name a config's ``type`` (or ``lagent --backend``) will use.
        target: The engine class, or ``'package.module:ClassName'`` to import it lazily.
        override: Replace an existing entry of that name.

    Raises:
        ValueError: The name is taken (and ``override`` is false), or the target is malformed.
    """
    if not name or not isinstance(name, str):
        raise ValueError('an engine name must be a non-empty string')
    if name in _ENGINES and not override:
        raise ValueError(f'engine {name!r} is already registered; pass override=True to replace it')
    if isinstance(target, str):
        module, _, attribute = target.partition(':')
        if not module or not attribute:
            raise ValueError(f"engine target must look like 'package.module:ClassName', got {target!r}")
    elif not inspect.isclass(target):
        raise ValueError(f'engine target must be a class or a "module:Class" string, got {type(target).__name__}')
    _ENGINES[name] = target


def engine_names() -> list[str]:
    """Return every name an engine can be built by, sorted."""
    return sorted(_ENGINES)


def resolve_engine(engine: str | type[BaseLLM]) -> type[BaseLLM]:
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
    target = _ENGINES.get(engine, engine if ':' in engine else None)
    if target is None:
        raise ValueError(
            f"unknown engine {engine!r}; known: {', '.join(engine_names())} (or 'package.module:ClassName')"
        )
    if inspect.isclass(target):
        return target
    module_name, _, class_name = target.partition(':')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the module exists but one of its own imports failed: show that
        raise ValueError(f'engine {engine!r}: no module named {exc.name!r}') from None
    engine_class = getattr(module, class_name, None)
    if not inspect.isclass(engine_class):
        raise ValueError(f'engine {engine!r}: {module_name!r} has no class {class_name!r}')
    return engine_class


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
