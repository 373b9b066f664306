"""Images in messages: ``image_url`` content parts, their limits, and loading them.

A message's content may be a list of parts (OpenAI format)::

    {'role': 'user', 'content': [
        {'type': 'text', 'text': 'What is on this picture?'},
        {'type': 'image_url', 'image_url': {'url': 'https://example.com/cat.png'}},
    ]}

The ``url`` of an image part is one of

* an ``http://`` or ``https://`` URL;
* a ``data:image/...;base64,...`` URI;
* a local file path (or ``file://`` URI), which becomes a ``data:`` URI before
  it leaves this process.

What lagent may do with them is an :class:`ImagePolicy`: the most bytes and
pixels an image may have, whether lagent itself fetches URLs, and whether it
reads local files. Each engine passes images in its own way (see
``docs/multimodal.md``); all of them go through the functions of this module,
and every problem raises :class:`ImageError` naming the part
(``message 1, part 2``).
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from lagent._optional import import_optional
from lagent.errors import APIStatusError, LLMError

__all__ = [
    'IMAGE_PART_TYPE',
    'ImageError',
    'ImagePolicy',
    'ImageRef',
    'content_text',
    'find_images',
    'has_images',
    'inline_images',
    'load_image',
    'load_images',
]

logger = logging.getLogger(__name__)

IMAGE_PART_TYPE = 'image_url'
"""The ``type`` of an image content part."""

_STRICT_DECODING = threading.Lock()
_DATA_URI = re.compile(r'^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*),', re.S)
_MAX_REDIRECTS = 5


class ImageError(ValueError):
    """An image part is malformed, unreadable, too large, or not allowed by the
    :class:`ImagePolicy`; the message names the part."""


@dataclass(frozen=True)
class ImagePolicy:
    """What lagent may do with the images of a conversation.

    Attributes:
        max_bytes: Most bytes of one encoded image.
        max_pixels: Most pixels (width x height) of one image.
        allow_fetch: lagent downloads ``http(s)`` images itself where an
            engine needs the pixels (in-process engines). Servers that receive
            URLs (OpenAI-compatible, lmdeploy) fetch them themselves.
        allow_local_files: lagent reads images from local paths and ``file://`` URIs.
        fetch_timeout: Seconds to connect and between bytes when fetching.
        fetch_total_timeout: Seconds a whole fetch may take, redirects included
            (a server that sends its bytes slowly cannot stretch it).
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 36_000_000
    allow_fetch: bool = True
    allow_local_files: bool = True
    fetch_timeout: float = 10.0
    fetch_total_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError('ImagePolicy limits must be positive')
        if not self.fetch_timeout > 0:
            raise ValueError('ImagePolicy.fetch_timeout must be positive')
        if not self.fetch_total_timeout > 0:
            raise ValueError('ImagePolicy.fetch_total_timeout must be positive')

    @classmethod
    def for_server(cls, **changes: Any) -> ImagePolicy:
        """The policy for conversations that arrive from other people (a server):
        no fetching and no local files, so a request cannot make this process
        download from arbitrary addresses or read its own files."""
        return replace(cls(allow_fetch=False, allow_local_files=False), **changes)


@dataclass(frozen=True)
class ImageRef:
    """Where one image part of a conversation points.

    Attributes:
        kind: ``'url'`` (http/https), ``'data'`` (a ``data:`` URI) or ``'file'`` (a local path).
        value: The URL, the ``data:`` URI, or the file path.
        where: The part's place, ``'message M, part P'``, for error messages.
        message_index: Index of the message in the conversation.
        part_index: Index of the part in the message's content.
    """

    kind: Literal['url', 'data', 'file']
    value: str
    where: str
    message_index: int
    part_index: int

    def describe(self) -> str:
        """The part's place and a short form of its address (``data:`` URIs are not quoted whole)."""
        if self.kind == 'data':
            return f'{self.where} (a data: URI of {len(self.value)} characters)'
        return f'{self.where} ({self.value!r})'


# ---------------------------------------------------------------------- finding image parts


def find_images(messages: Sequence[Any]) -> list[ImageRef]:
    """Return the image parts of a conversation, in order.

    ``messages`` are dicts or :class:`~lagent.schema.Message` objects; bare
    strings (meta_template prompts) hold no images.

    Raises:
        ImageError: An image part has no URL, or a URL of another scheme.
    """
    return [ref for _, _, ref in _walk_parts(messages) if ref is not None]


def has_images(messages: Sequence[Any]) -> bool:
    """Whether any message of a conversation holds an image part."""
    return any(ref is not None for _, _, ref in _walk_parts(messages))


def _walk_parts(messages: Sequence[Any]) -> Iterator[tuple[int, int, ImageRef | None]]:
    for message_index, message in enumerate(messages):
        content = _content_of(message)
        if not isinstance(content, list):
            continue
        for part_index, part in enumerate(content):
            data = _part_dict(part)
            ref = None
            if data.get('type') == IMAGE_PART_TYPE:
                ref = _image_ref(data, message_index, part_index)
            yield message_index, part_index, ref


def _content_of(message: Any) -> Any:
    if isinstance(message, Mapping):
        return message.get('content')
    return getattr(message, 'content', None)


def _part_dict(part: Any) -> dict[str, Any]:
    if isinstance(part, Mapping):
        return dict(part)
    dump = getattr(part, 'model_dump', None)
    return dump(exclude_none=True) if dump is not None else {}


def _image_ref(part: Mapping[str, Any], message_index: int, part_index: int) -> ImageRef:
    where = f'message {message_index}, part {part_index}'
    value = part.get(IMAGE_PART_TYPE)
    url = value.get('url') if isinstance(value, Mapping) else value
    if not isinstance(url, str) or not url.strip():
        raise ImageError(f'{where}: an image_url part needs {{"image_url": {{"url": ...}}}} with a non-empty url')
    url = url.strip()
    scheme = urlparse(url).scheme.lower() if re.match(r'^[a-zA-Z][\w+.-]*:', url) else ''
    if url.startswith('data:'):
        kind: Literal['url', 'data', 'file'] = 'data'
    elif scheme in ('http', 'https'):
        kind = 'url'
    elif scheme == 'file':
        kind, url = 'file', unquote(urlparse(url).path)
    elif scheme and len(scheme) > 1:  # one letter: a Windows drive, a path
        raise ImageError(f'{where}: image URL scheme {scheme!r} is not supported (http, https, data: or a file path)')
    else:
        kind = 'file'
    return ImageRef(kind=kind, value=url, where=where, message_index=message_index, part_index=part_index)


# ---------------------------------------------------------------------- rendering as text


def content_text(content: Any, image_placeholder: str | None, *, message_index: int = 0) -> str:
    """The text of a message's content, each image part replaced by ``image_placeholder``.

    Args:
        content: A string, ``None`` or a list of parts.
        image_placeholder: What stands for an image in the text (e.g. ``'<image>'``);
            ``None`` when the template has none.
        message_index: The message's index, for error messages.

    Raises:
        ImageError: An image part and no placeholder, or a part that is neither text nor an image.
    """
    if content is None:
        return ''
    if isinstance(content, str):
        return content
    pieces = []
    for part_index, part in enumerate(content):
        data = _part_dict(part)
        kind = data.get('type')
        if kind == 'text':
            pieces.append(data.get('text') or '')
        elif kind == IMAGE_PART_TYPE:
            ref = _image_ref(data, message_index, part_index)
            if image_placeholder is None:
                raise ImageError(
                    f'{ref.describe()}: this prompt format has no image placeholder, so the image cannot be '
                    'placed in the prompt; use a template that declares one (image_placeholder=...) or an '
                    'engine that takes images with the messages'
                )
            pieces.append(image_placeholder)
        else:
            raise ImageError(
                f'message {message_index}, part {part_index}: content parts of type {kind!r} cannot be '
                'rendered into a prompt (text and image_url can)'
            )
    return ''.join(pieces)


# ---------------------------------------------------------------------- reading and checking


def read_image_bytes(ref: ImageRef, policy: ImagePolicy) -> bytes:
    """The encoded bytes of an image part, within the policy's byte limit.

    Raises:
        ImageError: Not allowed by the policy, unreadable, or too large.
    """
    if ref.kind == 'data':
        return _decode_data_uri(ref, policy)
    if ref.kind == 'file':
        return _read_file(ref, policy)
    return _fetch(ref, policy)


def _decode_data_uri(ref: ImageRef, policy: ImagePolicy) -> bytes:
    match = _DATA_URI.match(ref.value)
    if match is None:
        raise ImageError(f'{ref.describe()}: not a valid data: URI (expected data:image/...;base64,...)')
    mime = (match['mime'] or '').lower()
    if mime and not mime.startswith('image/'):
        raise ImageError(f'{ref.describe()}: the data: URI holds {mime!r}, not an image')
    if ';base64' not in match['params'].lower():
        raise ImageError(f'{ref.describe()}: the data: URI must be base64-encoded (data:image/...;base64,...)')
    payload = ref.value[match.end() :]
    if len(payload) * 3 // 4 > policy.max_bytes + 3:
        raise _too_large(ref, policy)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f'{ref.describe()}: the data: URI is not valid base64: {exc}') from None
    _check_size(ref, len(data), policy)
    return data


def _read_file(ref: ImageRef, policy: ImagePolicy) -> bytes:
    if not policy.allow_local_files:
        raise ImageError(
            f'{ref.describe()}: reading local image files is not allowed here (ImagePolicy.allow_local_files)'
        )
    path = Path(ref.value).expanduser()
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageError(f'{ref.describe()}: not a file')
        _check_size(ref, size, policy)
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f'{ref.describe()}: cannot read the image file: {exc.strerror or exc}') from None


def _fetch(ref: ImageRef, policy: ImagePolicy) -> bytes:
    if not policy.allow_fetch:
        raise ImageError(f'{ref.describe()}: fetching images is not allowed here (ImagePolicy.allow_fetch)')
    # here: importing lagent does not load an HTTP client
    from lagent.llms._http_fetch import BodyTooLargeError, fetch_bytes

    try:
        reply = fetch_bytes(
            'GET',
            ref.value,
            timeout=policy.fetch_total_timeout,
            connect_timeout=policy.fetch_timeout,
            idle_timeout=policy.fetch_timeout,
            max_bytes=policy.max_bytes,
            max_redirects=_MAX_REDIRECTS,
            what='fetching the image failed',
        )
    except BodyTooLargeError:
        raise _too_large(ref, policy) from None
    except APIStatusError as exc:
        raise ImageError(f'{ref.describe()}: fetching the image answered HTTP {exc.status_code}') from None
    except LLMError as exc:  # its message begins with 'fetching the image failed'
        raise ImageError(f'{ref.describe()}: {exc}') from exc
    except ValueError as exc:  # not an address to fetch from
        raise ImageError(f'{ref.describe()}: fetching the image failed: {exc}') from None
    if reply.status != 200:
        raise ImageError(f'{ref.describe()}: fetching the image answered HTTP {reply.status}')
    return reply.body


def _check_size(ref: ImageRef, size: int, policy: ImagePolicy) -> None:
    if size > policy.max_bytes:
        raise _too_large(ref, policy)


def _too_large(ref: ImageRef, policy: ImagePolicy) -> ImageError:
    return ImageError(f'{ref.describe()}: the image is larger than the limit of {policy.max_bytes} bytes')


def _open_image(ref: ImageRef, data: bytes, policy: ImagePolicy) -> Any:
    """Decode ``data`` with Pillow after checking its pixel count from the header."""
    pil = import_optional('PIL.Image', package='pillow', extra='vision')
    try:
        image = pil.open(io.BytesIO(data))
    except pil.UnidentifiedImageError:
        raise ImageError(f'{ref.describe()}: not a readable image (no image format recognised)') from None
    except (OSError, ValueError) as exc:
        raise ImageError(f'{ref.describe()}: not a readable image: {exc}') from None
    width, height = image.size
    if width * height > policy.max_pixels:
        raise ImageError(
            f'{ref.describe()}: the image has {width}x{height} = {width * height} pixels, more than the limit of '
            f'{policy.max_pixels}'
        )
    image_file = import_optional('PIL.ImageFile', package='pillow', extra='vision')
    try:
        with _STRICT_DECODING:  # some libraries (lmdeploy) let Pillow fill truncated images, process-wide
            lenient, image_file.LOAD_TRUNCATED_IMAGES = image_file.LOAD_TRUNCATED_IMAGES, False
            try:
                image.load()
            finally:
                image_file.LOAD_TRUNCATED_IMAGES = lenient
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
        raise ImageError(f'{ref.describe()}: the image data is damaged: {exc}') from None
    return image


def load_image(ref: ImageRef, policy: ImagePolicy | None = None) -> Any:
    """Read, check and decode one image part into an RGB ``PIL.Image.Image``.

    Raises:
        ImageError: See :func:`read_image_bytes`; also an image Pillow cannot decode
            or one with more pixels than the limit.
        MissingExtraError: Pillow is not installed.
    """
    policy = policy or ImagePolicy()
    image = _open_image(ref, read_image_bytes(ref, policy), policy)
    return image if image.mode == 'RGB' else image.convert('RGB')


def load_images(messages: Sequence[Any], policy: ImagePolicy | None = None) -> list[Any]:
    """Load every image of a conversation, in order (see :func:`load_image`)."""
    return [load_image(ref, policy) for ref in find_images(messages)]


def inline_images(messages: Sequence[Mapping[str, Any]], policy: ImagePolicy | None = None) -> list[dict[str, Any]]:
    """Prepare a conversation for a server that takes ``image_url`` parts.

    Local files become ``data:`` URIs and ``data:`` URIs are checked (bytes,
    pixels, decodable); ``http(s)`` URLs are passed on for the server to fetch.
    The messages are copied; a message without images is passed on as it is.

    Raises:
        ImageError: A part is malformed, unreadable, too large, or not allowed.
        MissingExtraError: Pillow is not installed (it checks the pixels).
    """
    policy = policy or ImagePolicy()
    result = [dict(message) for message in messages]
    for ref in find_images(messages):
        url = ref.value
        if ref.kind != 'url':
            data = read_image_bytes(ref, policy)
            image = _open_image(ref, data, policy)
            if ref.kind == 'file':
                mime = image.get_format_mimetype() or 'application/octet-stream'
                url = f'data:{mime};base64,{base64.b64encode(data).decode("ascii")}'
        message = result[ref.message_index]
        parts = [_part_dict(part) for part in message['content']]
        given = parts[ref.part_index][IMAGE_PART_TYPE]
        parts[ref.part_index][IMAGE_PART_TYPE] = {**given, 'url': url} if isinstance(given, Mapping) else {'url': url}
        message['content'] = parts
    return result
