"""A model's own Jinja chat template, rendered in a sandbox.

Tokenizers ship their prompt format as a Jinja template (``chat_template`` in
``tokenizer_config.json``, or ``tokenizer.chat_template`` in a GGUF file).
:class:`ChatTemplate` renders one with the variables those templates expect
(``messages``, ``tools``, ``add_generation_prompt``, ``bos_token``,
``eos_token``) inside jinja2's immutable sandbox: a template that reaches for
Python internals (``__class__``, ``__globals__``, mutating methods...) raises
:class:`UnsafeTemplateError` instead of running.

A template is code from a model file, so its cost is bounded too
(:class:`TemplateLimitError`): every loop iteration and call counts against a
render time limit, recursion is bounded, and no operation may build a string
or list longer than the output limit (``'x' * 10**12``, ``range(10**10)``,
``'{:>999999999}'.format(x)`` and doubling a string in a loop all stop there).
"""

from __future__ import annotations

import contextvars
import json
import operator
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from lagent.images import content_text, has_images
from lagent.prompts.gguf_metadata import read_gguf_metadata
from lagent.prompts.meta_template import normalize_messages
from lagent.schema import Message, MessageLike

__all__ = ['ChatTemplate', 'TemplateLimitError', 'UnsafeTemplateError']


class UnsafeTemplateError(ValueError):
    """A chat template tried to reach Python internals; it was not run."""


class TemplateLimitError(ValueError):
    """Rendering a chat template went past a limit (time, output size, recursion); it was stopped."""


class _TemplateRaised(ValueError):
    """The template itself called ``raise_exception`` (e.g. a role it does not support)."""


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(
    value: Any,
    indent: int | None = None,
    ensure_ascii: bool = False,
    sort_keys: bool = False,
    separators: tuple[str, str] | None = None,
) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, sort_keys=sort_keys, separators=separators)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


# ---------------------------------------------------------------------- bounds


class _Budget:
    """The limits of one render: a deadline and the longest string or list it may build."""

    __slots__ = ('deadline', 'max_output', 'ticks')

    def __init__(self, seconds: float, max_output: int):
        self.deadline = time.monotonic() + seconds
        self.max_output = max_output
        self.ticks = 0

    def tick(self) -> None:
        """One more loop iteration or call: stop if the time is up (checked every 64 ticks)."""
        self.ticks += 1
        if not self.ticks & 63 and time.monotonic() > self.deadline:
            raise TemplateLimitError('the chat template ran past its render time limit (a runaway loop?)')

    def size(self, length: int, what: str) -> None:
        if length > self.max_output:
            raise TemplateLimitError(f'the chat template tried to build {what} of {length} items, over the limit of '
                                     f'{self.max_output}')  # fmt: skip

    def result(self, value: Any, what: str) -> Any:
        if isinstance(value, (str, list, tuple, bytes)):
            self.size(len(value), what)
        return value


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar('lagent_template_budget')
_LOOP, _CONCAT = '_lagent_bounded_loop', '_lagent_bounded_concat'
_RESERVED = (_LOOP, _CONCAT)
_NUMBER = re.compile(r'\d+')


def _budget() -> _Budget:
    try:
        return _BUDGET.get()
    except LookupError:  # rendered outside ChatTemplate.render (e.g. by jinja2 directly): the defaults
        return _Budget(_RENDER_TIMEOUT, _MAX_OUTPUT)


def _bounded_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    """Every ``{% for %}`` of a template iterates through this: each item is a tick."""
    budget = _budget()
    for item in iterable:
        budget.tick()
        yield item


def _bounded_concat(*parts: Any) -> str:
    """The ``~`` operator, refusing to build a string over the limit."""
    texts = [str(part) for part in parts]
    _budget().size(sum(map(len, texts)), 'a string')
    return ''.join(texts)


def _widths_ok(text: str, budget: _Budget) -> None:
    """A format string (``%`` or ``str.format``) must not ask for a field wider than the limit."""
    for match in _NUMBER.finditer(text):
        if len(match.group()) > 9 or int(match.group()) > budget.max_output:
            raise TemplateLimitError(f'the chat template asked for a field {match.group()[:20]} wide')


def _check_call(budget: _Budget, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse the calls (string methods, filters) whose result could be far longer than their inputs."""
    name = getattr(obj, '__name__', '')
    bound = getattr(obj, '__wrapped__', obj)  # the sandbox hands out str.format wrapped
    target = getattr(bound, '__self__', None) if callable(bound) else None
    if not isinstance(target, str):
        return
    numbers = [value for value in (*args, *kwargs.values()) if isinstance(value, int)]
    if name in ('center', 'ljust', 'rjust', 'zfill') and numbers:
        budget.size(max(numbers), 'a padded string')
    elif name == 'expandtabs':
        budget.size(len(target) * (numbers[0] if numbers else 8), 'a string')
    elif name in ('format', 'format_map'):
        _widths_ok(target, budget)
    elif name == 'replace' and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = target.count(args[0]) if args[0] else len(target) + 1
        budget.size(len(target) + count * max(0, len(args[1]) - len(args[0])), 'a string')
    elif name == 'join' and args and isinstance(args[0], (list, tuple)):
        items = args[0]
        total = sum(len(item) for item in items if isinstance(item, str)) + len(target) * max(0, len(items) - 1)
        budget.size(total, 'a string')


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter: the amplifying ones (``center``, ``indent``, ``replace``, ``format``, ``join``...)
    are checked before they run, and every result is checked after."""

    passed = 1 if hasattr(function, 'jinja_pass_arg') else 0  # pass_context & co. come first

    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        value, options = (args[passed], args[passed + 1 :]) if len(args) > passed else (None, ())
        if isinstance(value, str):
            if name in ('center', 'indent'):
                width = next((a for a in (*options, *kwargs.values()) if isinstance(a, int)), 0)
                budget.size(width * (value.count('\n') + 1) + len(value), 'a padded string')
            elif name == 'format':
                _widths_ok(value, budget)
            elif name == 'replace':
                _check_call(budget, value.replace, options, kwargs)
        elif name == 'join' and value is not None:
            value = list(value)
            separator = options[0] if options and isinstance(options[0], str) else ''
            _check_call(budget, separator.join, ([str(item) for item in value],), {})
            args = (*args[:passed], value, *options)
        return budget.result(function(*args, **kwargs), f'a {name} result')

    bounded.__name__ = getattr(function, '__name__', name)
    for attribute in ('jinja_pass_arg',):  # keep pass_context / pass_environment markers
        if hasattr(function, attribute):
            setattr(bounded, attribute, getattr(function, attribute))
    return bounded


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {'*': operator.mul, '**': operator.pow, '%': operator.mod,
                                                 '+': operator.add}  # fmt: skip


class _StrictSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, but touching an unsafe attribute fails at once
    (jinja2 would otherwise render it silently as an empty string), and every
    operation that could run away is bounded (see the module docstring)."""

    intercepted_binops = frozenset(_BINOPS)

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise SecurityError(f'access to attribute {attribute!r} of a {type(obj).__name__!r} object is unsafe')

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # jinja2 names it so
        budget = _budget()
        budget.tick()
        _check_call(budget, __obj, args, kwargs)
        return budget.result(super().call(__context, __obj, *args, **kwargs), 'a call result')

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        if operator == '*':
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
                    budget.size(len(sequence) * count, 'a repeated sequence')
        elif operator == '**' and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            if right * abs(left).bit_length() > 1 << 20:
                raise TemplateLimitError(f'the chat template tried to compute {left} ** {right}')
        elif operator == '%' and isinstance(left, str):
            _widths_ok(left, budget)
        elif operator == '+' and isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            budget.size(len(left) + len(right), 'a sequence')
        return budget.result(_BINOPS[operator](left, right), 'a result')


class _Bounder(NodeTransformer):
    """Rewrites a parsed template: loops iterate through :func:`_bounded_loop`, and
    ``~`` goes through :func:`_bounded_concat`."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name(_LOOP, 'load'), [node.iter], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.Name(_CONCAT, 'load'), node.nodes, [], None, None, lineno=node.lineno)


def _bounded(tree: nodes.Template) -> nodes.Template:
    """The template with its loops and concatenations bounded.

    Raises:
        ValueError: The template defines one of the names the bounds use.
    """
    for node in tree.find_all((nodes.Name, nodes.Macro)):
        if node.name in _RESERVED and (isinstance(node, nodes.Macro) or node.ctx != 'load'):
            raise ValueError(f'a chat template may not define {node.name!r}')
    return cast(nodes.Template, _Bounder().visit(tree))


def _environment() -> ImmutableSandboxedEnvironment:
    env = _StrictSandbox(trim_blocks=True, lstrip_blocks=True)
    env.filters['tojson'] = _tojson
    env.filters = {name: _bounded_filter(name, function) for name, function in env.filters.items()}
    env.globals['raise_exception'] = _raise_exception
    env.globals['strftime_now'] = _strftime_now
    env.globals[_LOOP] = _bounded_loop
    env.globals[_CONCAT] = _bounded_concat
    return env


_RENDER_TIMEOUT = 5.0
_MAX_OUTPUT = 64 << 20


class ChatTemplate:
    """A Jinja chat template.

    Args:
        source: The template text.
        bos_token: Value of ``bos_token`` in the template (default ``''``:
            most engines add BOS themselves when tokenizing).
        eos_token: Value of ``eos_token`` in the template.
        context: Further variables for the template (e.g. ``enable_thinking``).
        image_placeholder: Render each image part as this text, the contents
            becoming plain strings (for templates that read strings only);
            ``None``: list contents reach the template as they are, for
            templates that place images themselves.
        render_timeout: Seconds one render may take.
        max_output: The longest string or list (in characters or items) a
            render may build, the prompt included.

    Raises:
        ValueError: The template does not parse, or a limit is not positive.
    """

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = '',
        eos_token: str = '',
        context: dict[str, Any] | None = None,
        image_placeholder: str | None = None,
        render_timeout: float = _RENDER_TIMEOUT,
        max_output: int = _MAX_OUTPUT,
    ):
        if not isinstance(source, str) or not source.strip():
            raise ValueError('a chat template must be a non-empty string')
        if image_placeholder is not None and (not isinstance(image_placeholder, str) or not image_placeholder):
            raise ValueError('image_placeholder must be a non-empty string or None')
        if not (isinstance(render_timeout, (int, float)) and 0 < render_timeout < float('inf')):
            raise ValueError(f'render_timeout must be a positive number of seconds, got {render_timeout!r}')
        if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1:
            raise ValueError(f'max_output must be a positive integer, got {max_output!r}')
        self.source = source
        self.image_placeholder = image_placeholder
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.context = dict(context or {})
        self.render_timeout = float(render_timeout)
        self.max_output = max_output
        env = _environment()
        try:
            code = env.compile(_bounded(env.parse(source)))
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f'chat template does not parse (line {exc.lineno}): {exc.message}') from exc
        self._template = env.template_class.from_code(env, code, env.make_globals(None))

    def __repr__(self) -> str:
        first_line = self.source.strip().splitlines()[0]
        return f'ChatTemplate({first_line[:40]!r}...)'

    def __getstate__(self) -> dict[str, Any]:
        """Pickle by source (the compiled template cannot be pickled), so a template
        travels to worker processes with the engine config that holds it."""
        state = dict(self.__dict__)
        del state['_template']
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._template = _environment().from_string(self.source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> ChatTemplate:
        """Load a template from a ``.jinja`` file, or from the ``chat_template`` of a
        ``tokenizer_config.json``.

        Raises:
            ValueError: The file holds no chat template.
        """
        path = Path(path)
        text = path.read_text(encoding='utf-8')
        if path.suffix != '.json':
            return cls(text, **kwargs)
        config = json.loads(text)
        template = config.get('chat_template')
        if isinstance(template, list):  # several named templates: take the default one
            named = {entry.get('name'): entry.get('template') for entry in template}
            template = named.get('default')
        if not template:
            raise ValueError(f'{os.fspath(path)!r} has no chat_template')
        kwargs.setdefault('eos_token', _token_text(config.get('eos_token')))
        return cls(template, **kwargs)

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str], **kwargs: Any) -> ChatTemplate:
        """Load the template stored in a GGUF file's metadata, with its EOS token.

        Raises:
            ValueError: The file is not GGUF or holds no chat template.
        """
        wanted = {'tokenizer.chat_template', 'tokenizer.ggml.eos_token_id', 'tokenizer.ggml.tokens'}
        metadata = read_gguf_metadata(path, keys=wanted)
        template = metadata.get('tokenizer.chat_template')
        if not template:
            raise ValueError(f'{os.fspath(path)!r} has no tokenizer.chat_template')
        tokens = metadata.get('tokenizer.ggml.tokens') or []
        eos_id = metadata.get('tokenizer.ggml.eos_token_id')
        if eos_id is not None and 0 <= eos_id < len(tokens):
            kwargs.setdefault('eos_token', tokens[eos_id])
        return cls(template, **kwargs)

    def render(
        self,
        messages: Sequence[MessageLike],
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        image_placeholder: str | None = None,
        **context: Any,
    ) -> str:
        """Render a conversation into a prompt.

        Args:
            messages: The conversation (dicts or :class:`Message` objects).
            tools: Tool schemas in the OpenAI function format, for templates that render tools.
            add_generation_prompt: Open the assistant's turn at the end.
            image_placeholder: Render images as this text instead of the template's own ``image_placeholder``.
            **context: Extra template variables for this call.

        Raises:
            UnsafeTemplateError: The template tried to reach Python internals.
            ValueError: The template rejected the conversation (its own message is quoted).
            ImageError: An image part is malformed.
        """
        items = cast('list[Message]', normalize_messages(messages, allow_strings=False))
        placeholder = image_placeholder or self.image_placeholder
        variables = {
            **self.context,
            **context,
            'messages': [_template_message(item, index, placeholder) for index, item in enumerate(items)],
            'tools': list(tools) if tools else None,
            'add_generation_prompt': add_generation_prompt,
            'bos_token': self.bos_token,
            'eos_token': self.eos_token,
        }
        budget = _Budget(self.render_timeout, self.max_output)
        token = _BUDGET.set(budget)
        try:
            pieces, length = [], 0
            for piece in self._template.generate(**variables):
                length += len(piece)
                budget.size(length, 'a prompt')
                pieces.append(piece)
            return ''.join(pieces)
        except SecurityError as exc:
            raise UnsafeTemplateError(f'chat template tried an unsafe operation and was stopped: {exc}') from None
        except TemplateLimitError as exc:
            raise TemplateLimitError(*exc.args) from None
        except _TemplateRaised as exc:
            raise ValueError(f'chat template rejected the conversation: {exc}') from None
        except (RecursionError, MemoryError, OverflowError) as exc:
            raise TemplateLimitError(f'the chat template went past a limit: {type(exc).__name__}: {exc}') from None
        except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:  # e.g. str + list, 1 / 0
            hint = ''
            if placeholder is None and has_images(items):
                hint = ' (the conversation holds images: give the template an image_placeholder if it reads text only)'
            raise ValueError(f'chat template failed: {type(exc).__name__}: {exc}{hint}') from exc
        finally:
            _BUDGET.reset(token)


def _template_message(message: Message, index: int, image_placeholder: str | None) -> dict[str, Any]:
    """The message as an OpenAI dict; ``content`` is kept when null (templates test ``is none``),
    a list content becomes text when images have a placeholder, and tool-call arguments
    are :class:`_Arguments`."""
    data = message.to_openai()
    data.setdefault('content', None)
    if image_placeholder is not None and isinstance(message.content, list):
        data['content'] = content_text(message.content, image_placeholder, message_index=index)
    for call in data.get('tool_calls') or ():
        call['function']['arguments'] = _Arguments.of(call['function']['arguments'])
    return data


class _Arguments(dict):
    """Tool-call arguments for a template, both ways templates read them: as an object
    (``arguments | tojson``, ``arguments.items()``: Qwen, Llama 3.1, Mistral) and as the
    JSON text the model wrote (``'...' + arguments``, ``{{ arguments }}``: DeepSeek)."""

    text: str

    @classmethod
    def of(cls, text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return text
        if not isinstance(value, dict):
            return text
        arguments = cls(value)
        arguments.text = text
        return arguments

    def __str__(self) -> str:
        return self.text

    def __add__(self, other: Any) -> Any:
        return self.text + other if isinstance(other, str) else NotImplemented

    def __radd__(self, other: Any) -> Any:
        return other + self.text if isinstance(other, str) else NotImplemented


def _token_text(token: Any) -> str:
    if isinstance(token, dict):  # tokenizer_config.json may store AddedToken dicts
        return str(token.get('content', ''))
    return token or ''
