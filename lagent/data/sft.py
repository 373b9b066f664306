"""Supervised fine-tuning examples from conversations: the model's own chat template
builds ``input_ids``; ``labels`` keep only the assistant's turns.

How a conversation becomes an example:

1. The conversation is rendered by the chat template (the tokenizer's own,
   or one given). Where the template cannot show something, the conversation
   is shown the way lagent's agents show it to such a model, so the data
   teaches what the agent will ask at run time:

   * tool calls and ``tool`` results, for a template that never mentions
     ``tool_calls``: the text protocol of
     :class:`~lagent.agents.FunctionCallAgent` (``<tool_call>`` JSON in the
     assistant's text, ``<tool_response>`` in a user message);
   * tools, for a template that never mentions ``tools``: described in the
     system message, as that agent's text path does;
   * images, for a template that does not place images itself (never mentions
     ``image``): an image placeholder (``<image>`` by default) in the text.

2. Each assistant turn is located by rendering: the conversation before it
   with the generation prompt, then with the turn added. The turn is what the
   second adds to the first (its end-of-turn marker included, trailing
   whitespace not): exactly what the model writes when it answers there.

3. The text is tokenized piece by piece (outside and inside the turns), so
   the labelled tokens are those the model produces after the generation
   prompt; ``labels`` equal ``input_ids`` there and are ``-100`` elsewhere.

A template that writes an earlier turn differently once later messages
follow (e.g. one that drops past reasoning) cannot be labelled this way and
raises ``ValueError``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from lagent.agents.function_call import text_tool_call, text_tool_result, text_tools_prompt
from lagent.data.tokenizers import ChatTokenizer, load_tokenizer
from lagent.data.trajectories import Trajectory, TrajectoryFilter, load_trajectories
from lagent.images import has_images
from lagent.prompts import ChatTemplate, normalize_messages
from lagent.schema import Message

__all__ = ['DEFAULT_IMAGE_PLACEHOLDER', 'IGNORE_INDEX', 'ExportReport', 'SFTExample', 'build_sft_example', 'export_sft']

IGNORE_INDEX = -100
"""The label of a token the model is not trained to predict."""
DEFAULT_IMAGE_PLACEHOLDER = '<image>'
"""What stands for an image in the text of a template that does not place images itself."""

Conversation = Trajectory | Sequence[Message | Mapping[str, Any]]


@dataclass
class SFTExample:
    """One training example.

    Attributes:
        messages: The conversation as given (OpenAI format).
        tools: Its tool schemas, if any.
        input_ids: The tokens of the rendered conversation.
        labels: ``input_ids`` on the assistant's turns, :data:`IGNORE_INDEX` elsewhere.
    """

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    input_ids: list[int]
    labels: list[int]

    def to_json(self) -> dict[str, Any]:
        """The example as one JSON Lines record."""
        record: dict[str, Any] = {'messages': self.messages}
        if self.tools:
            record['tools'] = self.tools
        record.update(input_ids=self.input_ids, labels=self.labels)
        return record

    def labelled_spans(self) -> list[tuple[int, int]]:
        """The ``[start, end)`` token ranges that carry labels, in order."""
        spans: list[tuple[int, int]] = []
        start = None
        for index, label in enumerate([*self.labels, IGNORE_INDEX]):
            if label != IGNORE_INDEX and start is None:
                start = index
            elif label == IGNORE_INDEX and start is not None:
                spans.append((start, index))
                start = None
        return spans


def build_sft_example(
    conversation: Conversation,
    tokenizer: ChatTokenizer | str | os.PathLike[str] | Any,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    chat_template: ChatTemplate | str | None = None,
    image_placeholder: str = DEFAULT_IMAGE_PLACEHOLDER,
) -> SFTExample:
    """Build the training example of one conversation (see the module docstring).

    Args:
        conversation: A :class:`~lagent.data.Trajectory` or a list of messages.
        tokenizer: A :class:`~lagent.data.ChatTokenizer`, or what
            :func:`~lagent.data.load_tokenizer` takes (a ``.gguf`` file, a model directory...).
        tools: Tool schemas, for a conversation that carries none of its own.
        chat_template: Render with this template instead of the tokenizer's.
        image_placeholder: Text for each image, where the template does not place images itself.

    Raises:
        ValueError: The conversation has no assistant turn, the tokenizer has no
            chat template (and none is given), or the template cannot be labelled.
    """
    tokenizer = load_tokenizer(tokenizer)
    if isinstance(conversation, Trajectory):
        messages, tools = conversation.messages, conversation.tools or tools
        where = conversation.source or 'conversation'
    else:
        messages = cast('list[Message]', normalize_messages(conversation, allow_strings=False))
        where = 'conversation'
    template = _template(chat_template, tokenizer)
    tool_list = [dict(tool) for tool in tools] if tools else None
    rendering = _Rendering(template, messages, tool_list, image_placeholder)
    text, spans = rendering.text_and_turns(where)
    input_ids: list[int] = []
    labels: list[int] = []
    if tokenizer.add_bos and tokenizer.bos_token_id is not None and not text.startswith(tokenizer.bos_token):
        input_ids.append(tokenizer.bos_token_id)
        labels.append(IGNORE_INDEX)
    position = 0
    for start, end in spans:
        for piece, learned in ((text[position:start], False), (text[start:end], True)):
            if piece:
                ids = tokenizer.encode(piece)
                input_ids += ids
                labels += ids if learned else [IGNORE_INDEX] * len(ids)
        position = end
    if text[position:]:
        tail = tokenizer.encode(text[position:])
        input_ids += tail
        labels += [IGNORE_INDEX] * len(tail)
    return SFTExample(
        messages=[message.to_openai() for message in messages], tools=tool_list, input_ids=input_ids, labels=labels
    )


def _template(chat_template: ChatTemplate | str | None, tokenizer: ChatTokenizer) -> ChatTemplate:
    if isinstance(chat_template, ChatTemplate):
        return chat_template
    if isinstance(chat_template, str):
        return ChatTemplate(chat_template, bos_token=tokenizer.bos_token)
    if tokenizer.chat_template is None:
        raise ValueError(f'{tokenizer!r} has no chat template; give one (chat_template=..., --chat-template FILE)')
    return tokenizer.chat_template


class _Rendering:
    """A conversation as the template can show it, rendered whole and up to each assistant turn."""

    def __init__(
        self,
        template: ChatTemplate,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        image_placeholder: str,
    ):
        source = template.source
        self.template = template
        self.tools = tools if 'tools' in source else None
        self.image_placeholder = None if 'image' in source else image_placeholder
        self.messages = _as_template_shows(
            messages, tools, tools_native='tools' in source, calls_native='tool_calls' in source
        )
        self.has_images = has_images(self.messages)

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool) -> str:
        return self.template.render(
            messages,
            tools=self.tools,
            add_generation_prompt=add_generation_prompt,
            image_placeholder=self.image_placeholder,
        )

    def text_and_turns(self, where: str) -> tuple[str, list[tuple[int, int]]]:
        """The whole text and the character span of each assistant turn in it."""
        text = self.render(self.messages, add_generation_prompt=False)
        spans = []
        for index, message in enumerate(self.messages):
            if message['role'] != 'assistant':
                continue
            before = self.render(self.messages[:index], add_generation_prompt=True)
            through = self.render(self.messages[: index + 1], add_generation_prompt=False)
            if not through.startswith(before) or not text.startswith(through):
                raise ValueError(
                    f'{where}: the chat template writes the conversation up to message {index} differently once '
                    'later messages follow (it may drop past reasoning, or its generation prompt is not how it '
                    "begins an assistant turn), so the assistant's turns cannot be located"
                )
            end = max(len(before), len(through.rstrip()))
            spans.append((len(before), end))
        if not spans:
            raise ValueError(f'{where}: the conversation has no assistant turn to learn from')
        return text, spans


def _as_template_shows(
    messages: list[Message], tools: list[dict[str, Any]] | None, *, tools_native: bool, calls_native: bool
) -> list[dict[str, Any]]:
    """The messages as OpenAI dicts, with tools, tool calls and tool results moved into
    the text protocol where the template cannot show them natively."""
    result = []
    for message in messages:
        data = message.to_openai()
        if not calls_native and message.tool_calls:
            calls = '\n'.join(
                text_tool_call(call.function.name, call.function.arguments) for call in message.tool_calls
            )
            text = message.text.strip()
            data = {'role': 'assistant', 'content': f'{text}\n{calls}' if text else calls}
        elif not calls_native and message.role == 'tool':
            data = {'role': 'user', 'content': text_tool_result(message.text)}
        result.append(data)
    if tools and not tools_native:
        if result and result[0]['role'] == 'system':
            system = Message.model_validate(result[0]).text
            result[0] = {'role': 'system', 'content': text_tools_prompt(system, tools)}
        else:
            result.insert(0, {'role': 'system', 'content': text_tools_prompt(None, tools)})
    return result


# ---------------------------------------------------------------------- files


@dataclass
class ExportReport:
    """What :func:`export_sft` did.

    Attributes:
        read: Conversations read.
        written: Examples written.
        dropped: Conversations left out, by reason (``'status'``, ``'failed'``, ``'duplicate'``).
        out: The file written.
    """

    read: int = 0
    written: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    out: str = ''

    def summary(self) -> str:
        """One line for people."""
        left_out = ', '.join(f'{count} {reason}' for reason, count in sorted(self.dropped.items()))
        tail = f' (left out: {left_out})' if left_out else ''
        examples = 'example' if self.written == 1 else 'examples'
        conversations = 'conversation' if self.read == 1 else 'conversations'
        return f'wrote {self.written} {examples} to {self.out} from {self.read} {conversations}{tail}'


def export_sft(
    inputs: Iterable[str | os.PathLike[str]],
    tokenizer: ChatTokenizer | str | os.PathLike[str] | Any,
    out: str | os.PathLike[str],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    chat_template: ChatTemplate | str | None = None,
    statuses: Iterable[str] | None = None,
    drop_failed: bool = False,
    deduplicate: bool = False,
    image_placeholder: str = DEFAULT_IMAGE_PLACEHOLDER,
) -> ExportReport:
    """Turn conversation files into a JSON Lines file of training examples.

    Args:
        inputs: Agent memory files and JSON/JSONL conversation files
            (see :mod:`lagent.data.trajectories`).
        tokenizer: See :func:`build_sft_example`.
        out: The ``.jsonl`` file to write (replaced).
        tools: Tool schemas for conversations that carry none.
        chat_template: Render with this template instead of the tokenizer's.
        statuses: Keep only runs with one of these recorded statuses.
        drop_failed: Leave out failed runs.
        deduplicate: Keep only the first of equal conversations.
        image_placeholder: See :func:`build_sft_example`.

    Returns:
        What was read, written and left out.

    Raises:
        ValueError: A malformed conversation, or one the template cannot label
            (the message names its file and line); nothing is left half-written.
        OSError: A file cannot be read or written.
    """
    chat_tokenizer = load_tokenizer(tokenizer)
    try:
        chosen = TrajectoryFilter(
            statuses=list(statuses) if statuses is not None else None, drop_failed=drop_failed, deduplicate=deduplicate
        )
        options = dict(tools=tools, chat_template=chat_template, image_placeholder=image_placeholder)
        return _export(inputs, chat_tokenizer, out, chosen, options)
    finally:
        if chat_tokenizer is not tokenizer:  # loaded here: freed here
            chat_tokenizer.close()


def _export(
    inputs: Iterable[str | os.PathLike[str]],
    chat_tokenizer: ChatTokenizer,
    out: str | os.PathLike[str],
    chosen: TrajectoryFilter,
    options: dict[str, Any],
) -> ExportReport:
    report = ExportReport(out=os.fspath(out))
    out_path = Path(out)
    partial = out_path.with_name(out_path.name + '.partial')
    try:
        with partial.open('w', encoding='utf-8') as stream:
            for trajectory in chosen(_counted(load_trajectories(inputs), report)):
                example = build_sft_example(trajectory, chat_tokenizer, **options)
                stream.write(json.dumps(example.to_json(), ensure_ascii=False) + '\n')
                report.written += 1
        partial.replace(out_path)
    finally:
        partial.unlink(missing_ok=True)
    report.dropped = dict(chosen.counts)
    return report


def _counted(trajectories: Iterator[Trajectory], report: ExportReport) -> Iterator[Trajectory]:
    for trajectory in trajectories:
        report.read += 1
        yield trajectory
