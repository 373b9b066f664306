"""Model adapters: what lagent knows about a model family, found from a model's path.

A :class:`ModelAdapter` maps a model to engine defaults: the registered
template its prompts use, its stop words, the format in which it writes tool
calls and whether it reads images. :func:`find_model_adapter` looks a model
up the way FastChat's ``--model`` does, from every name the model gives away::

    find_model_adapter('/models/Qwen2.5-7B-Instruct').template   # 'qwen'
    find_model_adapter('/models/model.gguf')                     # GGUF metadata: general.basename...

The names tried, in order: the last component of the path, the whole path,
then for a ``.gguf`` file the ``general.basename``, ``general.name`` and
``general.architecture`` of its metadata (spaces read as dashes), and for a model directory the
``model_type`` of its ``config.json``. For each name the adapters are asked
newest first, so an adapter registered with :func:`register_model_adapter`
wins over a built-in one, and the built-in vision families (registered after
the text families) win over the text family they extend.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lagent.prompts.gguf_metadata import read_gguf_metadata
from lagent.prompts.registry import get_template

__all__ = [
    'TOOL_CALL_FORMATS',
    'ModelAdapter',
    'ModelInfo',
    'describe_model',
    'find_model_adapter',
    'get_model_adapter',
    'list_model_adapters',
    'register_model_adapter',
]

TOOL_CALL_FORMATS = ('hermes', 'llama3-json', 'mistral', 'internlm2', 'glm4', 'deepseek3')
"""How models write tool calls in their text:

* ``'hermes'``: ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` (Qwen 2/2.5, and
  lagent's own text protocol in :class:`~lagent.agents.FunctionCallAgent`);
* ``'llama3-json'``: a bare ``{"name": ..., "parameters": ...}`` object (Llama 3.1+);
* ``'mistral'``: ``[TOOL_CALLS] [{"name": ..., "arguments": ...}]`` (Mistral v0.3+);
* ``'internlm2'``: ``<|action_start|><|plugin|>{...}<|action_end|>``;
* ``'glm4'``: the function name on a line of its own, then its JSON arguments;
* ``'deepseek3'``: ``<｜tool▁calls▁begin｜>...<｜tool▁calls▁end｜>`` (DeepSeek-V3 / R1).
"""

_GGUF_NAME_KEYS = ('general.basename', 'general.name', 'general.architecture')
_GGUF_KEYS = {*_GGUF_NAME_KEYS, 'tokenizer.chat_template'}
_TEMPLATE_FILES = ('chat_template.jinja', 'chat_template.json')


@dataclass(frozen=True)
class ModelAdapter:
    """Engine defaults for a family of models.

    Subclass it and override :meth:`match` to recognise models by other means
    than regular expressions.

    Attributes:
        name: The adapter's registry name.
        template: The registered template (see :func:`~lagent.prompts.get_template`)
            of the family's prompt format; ``None``: none is registered.
        patterns: Regular expressions matched case-insensitively against the
            model's names; empty: the patterns of ``template``.
        stop_words: Strings that end a reply; ``None``: the template's.
        tool_call_format: How the family writes tool calls (one of
            :data:`TOOL_CALL_FORMATS`), ``None`` if it has no tool-call format.
        vision: The family reads images.
        reference: Where the family's format is defined.
    """

    name: str
    template: str | None = None
    patterns: tuple[str, ...] = ()
    stop_words: tuple[str, ...] | None = None
    tool_call_format: str | None = None
    vision: bool = False
    reference: str = ''
    _compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError('a model adapter name must be a non-empty string')
        if self.template is not None:
            get_template(self.template)  # raises ValueError naming the registered templates
        if self.tool_call_format is not None and self.tool_call_format not in TOOL_CALL_FORMATS:
            raise ValueError(
                f'model adapter {self.name!r}: unknown tool_call_format {self.tool_call_format!r} '
                f'(known: {", ".join(TOOL_CALL_FORMATS)})'
            )
        object.__setattr__(self, 'patterns', tuple(self.patterns))
        if self.stop_words is not None:
            object.__setattr__(self, 'stop_words', tuple(self.stop_words))
        patterns = self.patterns or (get_template(self.template).patterns if self.template else ())
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                raise ValueError(
                    f'pattern {pattern!r} of model adapter {self.name!r} is not a valid regular expression: {exc}'
                ) from None
        object.__setattr__(self, '_compiled', tuple(compiled))

    def match(self, name: str) -> bool:
        """Whether ``name`` (a model path, file name, or GGUF/config name) belongs to this family."""
        return any(pattern.search(name) for pattern in self._compiled)

    @property
    def default_stop_words(self) -> tuple[str, ...]:
        """The stop words to use: the adapter's own, else its template's."""
        if self.stop_words is not None:
            return self.stop_words
        return get_template(self.template).stop_words if self.template else ()


@dataclass(frozen=True)
class ModelInfo:
    """What a model's path gives away, as :func:`describe_model` reads it.

    Attributes:
        path: The model as given.
        names: The names adapters are matched against, most telling first.
        has_chat_template: Whether the model carries its own chat template
            (``None``: cannot tell, e.g. a model served elsewhere).
    """

    path: str
    names: tuple[str, ...]
    has_chat_template: bool | None = None


def describe_model(model: str | os.PathLike[str]) -> ModelInfo:
    """Read the names of a model (see the module docstring) and whether it brings a chat template.

    Only small files are read: a GGUF file's header, a model directory's
    ``config.json`` and ``tokenizer_config.json``.

    Raises:
        ValueError: ``model`` is an empty string.
    """
    text = os.fspath(model).rstrip('/\\')
    if not text:
        raise ValueError('a model path or name must not be empty')
    names = [re.split(r'[/\\]', text)[-1], text]
    has_template: bool | None = None
    path = Path(text).expanduser()
    if path.suffix.lower() == '.gguf' and path.is_file():
        metadata = read_gguf_metadata(path, keys=_GGUF_KEYS)
        # GGUF names are written with spaces ('Meta Llama 3.1 8B Instruct'); model paths use dashes
        names += ['-'.join(str(metadata[key]).split()) for key in _GGUF_NAME_KEYS if metadata.get(key)]
        has_template = bool(metadata.get('tokenizer.chat_template'))
    elif path.is_dir():
        model_type = _json_field(path / 'config.json', 'model_type')
        if isinstance(model_type, str) and model_type:
            names.append(model_type)
        has_template = bool(_json_field(path / 'tokenizer_config.json', 'chat_template')) or any(
            (path / name).is_file() for name in _TEMPLATE_FILES
        )
    return ModelInfo(path=os.fspath(model), names=tuple(dict.fromkeys(names)), has_chat_template=has_template)


def _json_field(path: Path, key: str) -> object:
    try:
        data = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None


_ADAPTERS: dict[str, ModelAdapter] = {}


def register_model_adapter(adapter: ModelAdapter, *, override: bool = False) -> ModelAdapter:
    """Register an adapter; it is asked before every adapter registered earlier.

    Args:
        adapter: The adapter (an instance of :class:`ModelAdapter` or of a subclass).
        override: Replace an adapter registered under the same name.

    Returns:
        The adapter.

    Raises:
        ValueError: The name is taken (and ``override`` is false).
        TypeError: ``adapter`` is not a :class:`ModelAdapter`.
    """
    if not isinstance(adapter, ModelAdapter):
        raise TypeError(f'register_model_adapter takes a ModelAdapter, got {type(adapter).__name__}')
    if adapter.name in _ADAPTERS and not override:
        raise ValueError(f'model adapter {adapter.name!r} is already registered; pass override=True to replace it')
    _ADAPTERS.pop(adapter.name, None)  # a replacement is asked first, like a new registration
    _ADAPTERS[adapter.name] = adapter
    return adapter


def get_model_adapter(name: str) -> ModelAdapter:
    """Return the adapter registered under ``name``.

    Raises:
        ValueError: No such adapter; the message lists the registered ones.
    """
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise ValueError(f'unknown model adapter {name!r}; registered: {", ".join(list_model_adapters())}') from None


def list_model_adapters() -> list[str]:
    """Return the registered adapter names, sorted."""
    return sorted(_ADAPTERS)


def find_model_adapter(model: str | os.PathLike[str] | ModelInfo) -> ModelAdapter | None:
    """Find the adapter of a model from its path or name (and its metadata, see the module docstring).

    Returns:
        The adapter, or ``None`` when no family is recognised.
    """
    info = model if isinstance(model, ModelInfo) else describe_model(model)
    return _first_match(info.names, list(reversed(_ADAPTERS.values())))


def _first_match(names: Sequence[str], adapters: Sequence[ModelAdapter]) -> ModelAdapter | None:
    for name in names:
        for adapter in adapters:
            if adapter.match(name):
                return adapter
    return None


# ---------------------------------------------------------------------- built-in adapters

_TOOL_CALL_FORMATS = {
    'internlm2': 'internlm2',
    'llama3': 'llama3-json',
    'mistral': 'mistral',
    'glm4': 'glm4',
    'qwen': 'hermes',
    'deepseek3': 'deepseek3',
}

for _family in (
    'internlm2', 'chatml', 'llama2', 'llama3', 'mistral', 'vicuna', 'phi3', 'gemma',
    'deepseek', 'baichuan2', 'yi', 'glm4', 'qwen', 'smollm2', 'deepseek3',
):  # fmt: skip
    _template = get_template(_family)
    register_model_adapter(
        ModelAdapter(
            name=_family,
            template=_family,
            tool_call_format=_TOOL_CALL_FORMATS.get(_family),
            reference=_template.reference,
        )
    )
for _family in ('qwen2-vl', 'internvl', 'llava'):
    register_model_adapter(
        ModelAdapter(name=_family, template=_family, vision=True, reference=get_template(_family).reference)
    )
