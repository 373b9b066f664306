"""Data shared by every layer: status codes, chat messages, tool calls,
generation settings and the typed pieces a stream is made of.

Messages, tool calls and generation settings are pydantic models: they are
validated where they enter the SDK. :class:`Chunk` and :class:`ToolCallDelta`
are plain slotted dataclasses instead, because a stream creates one per token
and must stay cheap on that hot path.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum, IntEnum
from typing import Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import core_schema

__all__ = [
    'ActionReturn',
    'ActionStatusCode',
    'ActionValidCode',
    'AgentMessage',
    'AgentReturn',
    'AgentStatusCode',
    'Chunk',
    'ContentPart',
    'FunctionCall',
    'GenerationParams',
    'ImageURL',
    'Message',
    'MessageLike',
    'ModelStatusCode',
    'Response',
    'ResultItems',
    'ToolCall',
    'ToolCallDelta',
    'Usage',
    'dataclass2dict',
    'enum_dict_factory',
]


# --------------------------------------------------------------------------- status codes


class ModelStatusCode(IntEnum):
    """Status of one step of :meth:`lagent.llms.BaseLLM.stream_chat` (values of
    the original lagent)."""

    END = 0
    STREAM_ING = 1
    SESSION_READY = 2
    SERVER_ERR = -1
    SESSION_CLOSED = -2
    SESSION_OUT_OF_LIMIT = -3
    SESSION_INVALID_ARG = -4


class AgentStatusCode(IntEnum):
    """Status of one event an agent streams (values of the original lagent)."""

    END = 0
    STREAM_ING = 1
    SERVER_ERR = -1
    SESSION_CLOSED = -2
    SESSION_OUT_OF_LIMIT = -3
    SESSION_INVALID_ARG = -4
    SESSION_READY = 2
    PLUGIN_START = 3
    PLUGIN_END = 4
    PLUGIN_RETURN = 5
    CODING = 6
    CODE_END = 7
    CODE_RETURN = 8
    ANSWER_ING = 9


class ActionStatusCode(IntEnum):
    """Outcome of running a tool (values of the original lagent)."""

    ING = 1
    SUCCESS = 0
    HTTP_ERROR = -1000
    ARGS_ERROR = -1001
    API_ERROR = -1002
    INVALID_ACTION = -1003
    """The model asked for a tool that does not exist (lagent addition)."""


class ActionValidCode(IntEnum):
    """Whether the model's tool call could be parsed and matched to a tool."""

    FINISH = 1
    OPEN = 0
    CLOSED = -1
    INVALID = -2
    ABSENT = -3


# --------------------------------------------------------------------------- tool calls


class FunctionCall(BaseModel):
    """The function part of a tool call, in the OpenAI wire format."""

    name: str
    """Name of the tool the model wants to run."""
    arguments: str = '{}'
    """Arguments as the model wrote them: a JSON object, not yet validated."""

    def parsed_arguments(self) -> dict[str, Any]:
        """Return the arguments decoded from JSON.

        Raises:
            ValueError: The arguments are not a JSON object.
        """
        try:
            value = json.loads(self.arguments or '{}')
        except json.JSONDecodeError as exc:
            raise ValueError(f'arguments of {self.name!r} are not valid JSON: {exc}') from exc
        if not isinstance(value, dict):
            raise ValueError(f'arguments of {self.name!r} must be a JSON object, got {type(value).__name__}')
        return value


class ToolCall(BaseModel):
    """A complete tool call requested by the model (OpenAI format)."""

    id: str
    """Identifier the tool's reply must quote in ``tool_call_id``."""
    type: Literal['function'] = 'function'
    """Always ``'function'``."""
    function: FunctionCall
    """Which function to call, with which arguments."""


# --------------------------------------------------------------------------- messages


class ImageURL(BaseModel):
    """Where the image of an ``image_url`` content part is (OpenAI format)."""

    model_config = ConfigDict(extra='allow')

    url: str = Field(min_length=1)
    """An ``http(s)`` URL, a ``data:image/...;base64,...`` URI, or a local file path
    (see :mod:`lagent.images`)."""
    detail: Literal['auto', 'low', 'high'] | None = None
    """The resolution the model should see the image at (servers that support it)."""


class ContentPart(BaseModel):
    """One part of a multi-part message content (OpenAI format)."""

    model_config = ConfigDict(extra='allow')

    type: str
    """``'text'``, ``'image_url'``, ...; parts of other types are passed on as given."""
    text: str | None = None
    """The text of a ``'text'`` part."""
    image_url: ImageURL | None = None
    """The image of an ``'image_url'`` part (a bare URL string is read as ``{'url': ...}``)."""

    @field_validator('image_url', mode='before')
    @classmethod
    def _url_string_as_object(cls, value: Any) -> Any:
        return {'url': value} if isinstance(value, str) else value

    @model_validator(mode='after')
    def _image_part_has_an_image(self) -> ContentPart:
        if self.type == 'image_url' and self.image_url is None:
            raise ValueError('an image_url part needs "image_url": {"url": ...}')
        return self


class Message(BaseModel):
    """A chat message in the OpenAI format, also used by ``meta_template`` roles.

    Any role name is allowed (``meta_template`` may define roles such as
    ``environment``); the OpenAI roles are ``system``, ``user``,
    ``assistant`` and ``tool``.
    """

    model_config = ConfigDict(extra='forbid')

    role: str = Field(min_length=1)
    """Who speaks: a role of the template or of the OpenAI protocol."""
    content: str | list[ContentPart] | None = None
    """The text, or a list of content parts; ``None`` for a pure tool call."""
    name: str | None = None
    """Optional speaker name (``meta_template`` ``begin.with_name``; OpenAI ``name``)."""
    tool_calls: list[ToolCall] | None = None
    """Tool calls made by an assistant message."""
    tool_call_id: str | None = None
    """For a ``tool`` message: the id of the call it answers."""

    @model_validator(mode='after')
    def _has_content(self) -> Message:
        if self.content is None and not self.tool_calls:
            raise ValueError(f'a {self.role!r} message needs content (only an assistant tool call may have none)')
        return self

    @property
    def text(self) -> str:
        """The text of the content: parts of type ``text`` joined, ``''`` for none."""
        if self.content is None:
            return ''
        if isinstance(self.content, str):
            return self.content
        return ''.join(part.text or '' for part in self.content if part.type == 'text')

    def to_openai(self) -> dict[str, Any]:
        """Return the message as an OpenAI request dict, without unset fields."""
        return self.model_dump(exclude_none=True, mode='json')


MessageLike = Union[Message, dict, str]
"""What a conversation may contain: messages, message dicts, and (for
``meta_template`` prompts) bare strings that are copied into the prompt as they are."""


# --------------------------------------------------------------------------- results


class Usage(BaseModel):
    """Token counts of one request."""

    prompt_tokens: int = 0
    """Tokens in the prompt."""
    completion_tokens: int = 0
    """Tokens generated."""
    total_tokens: int = 0
    """Prompt and completion together."""


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a tool call as it streams in; fragments with the same
    ``index`` belong to one call and their ``arguments`` are concatenated."""

    index: int
    """Position of the call among the calls of this reply."""
    id: str | None = None
    """The call's id (usually only in its first fragment)."""
    name: str | None = None
    """The function name (usually only in its first fragment)."""
    arguments: str = ''
    """The next piece of the JSON arguments."""


@dataclass(slots=True)
class Chunk:
    """One typed piece of a streamed reply.

    ``text`` is the new text only (a delta); ``finish_reason`` and ``usage``
    usually arrive once, at the end.
    """

    text: str = ''
    """New text since the previous chunk."""
    finish_reason: str | None = None
    """Why generation ended: ``'stop'``, ``'length'``, ``'tool_calls'``...; ``None`` until then."""
    usage: Usage | None = None
    """Token counts, when the engine reports them."""
    tool_calls: list[ToolCallDelta] | None = None
    """Tool-call fragments carried by this chunk."""


class Response(BaseModel):
    """A whole reply, as :meth:`lagent.llms.BaseLLM.complete` returns it and as the
    last step of ``stream_chat`` carries it."""

    text: str = ''
    """The generated text, stop words removed."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Tool calls the model made (native tool calling only)."""
    finish_reason: str | None = None
    """Why generation ended."""
    usage: Usage | None = None
    """Token counts, when the engine reports them."""


# --------------------------------------------------------------------------- generation settings


class GenerationParams(BaseModel):
    """Generation settings shared by every engine.

    An LLM holds one instance as its defaults; each call may override any field
    by keyword, which builds a new validated instance and never changes the
    defaults. Unknown keywords and out-of-range values raise ``ValueError``
    naming the field; so do numbers that are not finite (``inf`` would reach a
    server as invalid JSON) and ``True``/``False`` where a number belongs.
    """

    model_config = ConfigDict(extra='forbid', frozen=True, allow_inf_nan=False)

    translated_keywords: ClassVar[frozenset[str]] = frozenset({'do_sample'})
    """lagent keywords :meth:`create` turns into fields (``do_sample=False``: ``temperature=0``)."""

    max_new_tokens: int = Field(512, ge=1)
    """Most tokens to generate."""
    min_new_tokens: int | None = Field(None, ge=0)
    """Fewest tokens to generate before EOS may end the reply (engines that support it)."""
    temperature: float = Field(0.8, ge=0)
    """Sampling temperature; ``0`` means greedy decoding."""
    top_p: float = Field(0.8, gt=0, le=1)
    """Nucleus sampling mass, in (0, 1]."""
    top_k: int | None = Field(40, ge=0)
    """Sample among the k most likely tokens; ``None`` or ``0`` disables the filter."""
    repetition_penalty: float = Field(1.0, gt=0)
    """Penalty on repeated tokens; ``1.0`` means none."""
    stop_words: tuple[str, ...] = ()
    """Strings that end the reply; they never appear in the output."""
    seed: int | None = None
    """Random seed, for engines that accept one."""
    ignore_eos: bool = False
    """Keep generating past the end-of-sequence token (benchmarks)."""
    skip_special_tokens: bool | None = None
    """Drop special tokens when decoding; ``None`` keeps the engine's default."""
    timeout: float | None = Field(None, gt=0)
    """Seconds the whole request may take (served engines); ``None``: the engine's default."""
    session_id: int | str | None = None
    """Accepted for lagent compatibility; engines never reuse a fixed session."""
    request_id: str | None = None
    """Identifier of this request; HTTP engines send it as ``X-Request-Id``."""
    sequence_start: bool = True
    """Accepted for lagent compatibility (every request is a whole sequence)."""
    sequence_end: bool = True
    """Accepted for lagent compatibility (every request is a whole sequence)."""

    @field_validator(
        'max_new_tokens', 'min_new_tokens', 'temperature', 'top_p', 'top_k', 'repetition_penalty', 'seed', 'timeout',
        mode='before',
    )  # fmt: skip
    @classmethod
    def _numbers_are_not_bools(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError('a number is required, not a bool')
        return value

    @field_validator('stop_words', mode='before')
    @classmethod
    def _stop_words_as_tuple(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            value = (value,)
        if isinstance(value, (list, tuple)) and any(isinstance(v, str) and not v for v in value):
            raise ValueError('stop words must not be empty strings')
        return value

    # A read-only mapping view, as lagent's ``llm.gen_params['max_new_tokens']`` was a dict.

    def __getitem__(self, name: str) -> Any:
        if name not in type(self).model_fields:
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return name in type(self).model_fields

    def get(self, name: str, default: Any = None) -> Any:
        """The value of setting ``name``, or ``default`` for an unknown name."""
        try:
            return self[name]
        except KeyError:
            return default

    def keys(self) -> list[str]:
        """The setting names."""
        return list(type(self).model_fields)

    def values(self) -> list[Any]:
        """The setting values, in the order of :meth:`keys`."""
        return [getattr(self, name) for name in type(self).model_fields]

    def items(self) -> list[tuple[str, Any]]:
        """``(name, value)`` pairs of every setting."""
        return [(name, getattr(self, name)) for name in type(self).model_fields]

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (``temperature == 0``)."""
        return self.temperature == 0

    def override(self, **changes: Any) -> GenerationParams:
        """Return a copy with ``changes`` applied and validated.

        Raises:
            ValueError: An unknown keyword or an invalid value; the message names the field.
        """
        if not changes:
            return self
        return self.create(**{**self.model_dump(exclude_unset=True), **changes})

    @classmethod
    def create(cls, **values: Any) -> GenerationParams:
        """Validate ``values`` into a new instance.

        Raises:
            ValueError: An unknown keyword or an invalid value; the message names the field.
        """
        if 'do_sample' in values:
            values = _without_do_sample(values)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ValueError(_describe_validation_error(exc, values)) from None


def _without_do_sample(values: dict[str, Any]) -> dict[str, Any]:
    """lagent's ``do_sample=False`` as ``temperature=0`` (greedy decoding); ``True`` changes nothing."""
    values = dict(values)
    do_sample = values.pop('do_sample')
    if not isinstance(do_sample, bool):
        raise ValueError(f'invalid generation parameters: do_sample must be True or False, got {do_sample!r}')
    warnings.warn('do_sample is deprecated: pass temperature=0 for greedy decoding', DeprecationWarning, stacklevel=4)
    if not do_sample:
        values['temperature'] = 0
    return values


def _describe_validation_error(exc: ValidationError, values: dict[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        field = '.'.join(str(part) for part in error['loc']) or '?'
        if error['type'] == 'extra_forbidden':
            known = ', '.join(GenerationParams.model_fields)
            problems.append(f'unknown generation parameter {field!r} (known: {known})')
        else:
            given = values.get(error['loc'][0]) if error['loc'] else None
            problems.append(f'{field}: {error["msg"]} (got {given!r})')
    return 'invalid generation parameters: ' + '; '.join(problems)


# --------------------------------------------------------------------------- tools and agents


class ResultItems(dict):
    """The result items of an :class:`ActionReturn`, readable the way both lagent
    generations read them.

    * As a list of items (lagent 0.2 and this package): iterating, ``len()``,
      integer indexing and comparing with a list see the items, e.g.
      ``[{'type': 'text', 'content': '444'}]``.
    * As one dict keyed by item type (lagent 0.1): it *is* a dict mapping each
      type to its content (the contents of several items of one type joined by
      newlines), so ``result['text'] == '444'`` and ``result == {'text': '444'}``.

    ``dict(result)``, ``json.dumps(result)`` and :func:`dataclasses.asdict` see
    the 0.1 mapping; pydantic serializes the item list.

    Args:
        items: A list of ``{'type': ..., 'content': ...}`` items, a mapping of
            type to content (the 0.1 shape), or ``(type, content)`` pairs.

    Raises:
        ValueError: An item is not a dict with a ``type``.
    """

    def __init__(self, items: Any = ()):
        if isinstance(items, ResultItems):
            listed = items.item_list()
        elif isinstance(items, Mapping):
            listed = [{'type': kind, 'content': content} for kind, content in items.items()]
        else:
            listed = []
            for item in items:
                if isinstance(item, tuple) and len(item) == 2:
                    item = {'type': item[0], 'content': item[1]}
                if not isinstance(item, Mapping) or 'type' not in item:
                    raise ValueError(f"a result item is a dict with a 'type', got {item!r}")
                listed.append(dict(item))
        by_type: dict[str, Any] = {}
        for item in listed:
            kind, content = item['type'], item.get('content')
            by_type[kind] = content if kind not in by_type else f'{by_type[kind]}\n{content}'
        super().__init__(by_type)
        self._items = listed

    def item_list(self) -> list[dict[str, Any]]:
        """The items as a plain list of dicts (copies)."""
        return [dict(item) for item in self._items]

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, slice)):
            return self._items[key]
        return super().__getitem__(key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple)):
            return self._items == list(other)
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._items)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value.item_list(), when_used='always'
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        return {'type': 'array', 'items': {'type': 'object'}}


@pydantic_dataclass(config=ConfigDict(arbitrary_types_allowed=True))
class ActionReturn:
    """What running a tool gave: its result or why it failed.

    A dataclass (as in the original lagent, so :func:`dataclasses.asdict` and
    positional construction ``ActionReturn(args, url, type, result, ...)``
    work), validated when built; fields may be assigned afterwards.
    """

    args: dict[str, Any] | None = None
    """The arguments it was called with."""
    url: str | None = None
    """A link the tool wants to cite, if any."""
    type: str | None = None
    """Name of the tool that ran."""
    result: ResultItems | None = None
    """Result items, e.g. ``[{'type': 'text', 'content': '444'}]`` (see :class:`ResultItems`)."""
    errmsg: str | None = None
    """Why the call failed, worded for the model to act on."""
    state: ActionStatusCode = ActionStatusCode.SUCCESS
    """Outcome of the call."""
    thought: str | None = None
    """The model's reasoning that led to the call."""
    valid: ActionValidCode = ActionValidCode.OPEN
    """Whether the call could be parsed and matched to a tool."""
    tool_call_id: str | None = None
    """Id of the native tool call this answers, if any."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == 'result' and value is not None and not isinstance(value, ResultItems):
            value = ResultItems(value)
        elif name == 'state' and value is not None and not isinstance(value, ActionStatusCode):
            value = ActionStatusCode(value)
        object.__setattr__(self, name, value)

    def format_result(self) -> str:
        """Return the result as text for the model (the error message on failure)."""
        if self.state != ActionStatusCode.SUCCESS:
            return self.errmsg or f'{self.type} failed ({self.state.name})'
        parts = []
        for item in self.result or []:
            if item.get('type') == 'text':
                parts.append(str(item.get('content', '')))
            else:
                parts.append(f'[{item.get("type")}]({item.get("content")})')
        return '\n'.join(parts)


@dataclass
class AgentReturn:
    """A snapshot of an agent run in the original lagent's shape.

    Agents built with the original lagent keywords (``action_executor=``,
    ``protocol=``...) stream these from ``stream_chat``; :class:`~lagent.agents.AgentResult`
    offers the same attributes for ``chat``.
    """

    type: str = ''
    """Kind of the snapshot (unused by lagent's agents)."""
    content: str = ''
    """Free-form content (unused by lagent's agents)."""
    state: Union[AgentStatusCode, int] = AgentStatusCode.END
    """Where the run stands."""
    actions: list[ActionReturn] = field(default_factory=list)
    """The tool results so far."""
    response: Any = ''
    """The text so far, or the tool call being made (``{'name': ..., 'parameters': ...}``)."""
    inner_steps: list[dict[str, Any]] = field(default_factory=list)
    """The messages this run added to the conversation, as dicts."""
    nodes: dict[str, Any] | None = None
    """Graph agents' nodes (unused by lagent's agents)."""
    adjacency_list: dict[str, Any] | None = None
    """Graph agents' edges (unused by lagent's agents)."""
    references: dict[str, Any] = field(default_factory=dict)
    """Sources cited (unused by lagent's agents)."""
    errmsg: str | None = None
    """Why the run ended without an answer, if it did."""


def enum_dict_factory(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ``dict_factory`` for :func:`dataclasses.asdict` that stores enum members as their values."""
    return {key: value.value if isinstance(value, Enum) else value for key, value in pairs}


def dataclass2dict(data: Any) -> dict[str, Any]:
    """Return a dataclass (e.g. an :class:`ActionReturn`) as a dict of plain values (enums as their values)."""
    return asdict(data, dict_factory=enum_dict_factory)


class AgentMessage(BaseModel):
    """A message an agent exchanges or keeps in its memory."""

    sender: str
    """Who produced it: ``'user'``, the agent's name, or a tool's name."""
    content: Any = None
    """The text, or structured content."""
    formatted: Any = None
    """The content after the agent's output parser ran (e.g. a tool call)."""
    stream_state: AgentStatusCode = AgentStatusCode.END
    """Where a streamed message stands."""
