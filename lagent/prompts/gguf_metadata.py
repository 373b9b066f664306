"""Read the key/value metadata of a GGUF file (no tensor data, no dependencies).

Only the header is read, so a model's chat template and special tokens can be
taken from a multi-gigabyte file in milliseconds. Format reference:
https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import os
import struct
from typing import IO, Any

__all__ = ['read_gguf_metadata']

_MAGIC = b'GGUF'
# value type id -> struct format of a scalar (strings and arrays are handled apart)
_SCALARS = {0: '<B', 1: '<b', 2: '<H', 3: '<h', 4: '<I', 5: '<i', 6: '<f', 7: '<?', 10: '<Q', 11: '<q', 12: '<d'}
_STRING, _ARRAY = 8, 9


def read_gguf_metadata(path: str | os.PathLike[str], *, keys: set[str] | None = None) -> dict[str, Any]:
    """Return the metadata of a GGUF file as a dict.

    Args:
        path: The ``.gguf`` file.
        keys: Only decode these keys (others are skipped cheaply); ``None`` decodes all.

    Raises:
        ValueError: The file is not a GGUF file or is truncated.
    """
    with open(path, 'rb') as stream:
        if stream.read(4) != _MAGIC:
            raise ValueError(f'{os.fspath(path)!r} is not a GGUF file')
        (version,) = _unpack(stream, '<I')
        if version < 2:
            raise ValueError(f'GGUF version {version} of {os.fspath(path)!r} is not supported (need 2 or later)')
        _tensor_count, kv_count = _unpack(stream, '<QQ')
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = _read_string(stream)
            (value_type,) = _unpack(stream, '<I')
            if keys is None or key in keys:
                metadata[key] = _read_value(stream, value_type)
            else:
                _skip_value(stream, value_type)
        return metadata


def _unpack(stream: IO[bytes], fmt: str) -> tuple[Any, ...]:
    size = struct.calcsize(fmt)
    data = stream.read(size)
    if len(data) != size:
        raise ValueError('GGUF file is truncated')
    return struct.unpack(fmt, data)


def _read_string(stream: IO[bytes]) -> str:
    (length,) = _unpack(stream, '<Q')
    data = stream.read(length)
    if len(data) != length:
        raise ValueError('GGUF file is truncated')
    return data.decode('utf-8', errors='replace')


def _read_value(stream: IO[bytes], value_type: int) -> Any:
    if value_type == _STRING:
        return _read_string(stream)
    if value_type == _ARRAY:
        item_type, count = _unpack(stream, '<IQ')
        return [_read_value(stream, item_type) for _ in range(count)]
    try:
        fmt = _SCALARS[value_type]
    except KeyError:
        raise ValueError(f'unknown GGUF value type {value_type}') from None
    return _unpack(stream, fmt)[0]


def _skip_value(stream: IO[bytes], value_type: int) -> None:
    if value_type == _STRING:
        (length,) = _unpack(stream, '<Q')
        stream.seek(length, os.SEEK_CUR)
    elif value_type == _ARRAY:
        item_type, count = _unpack(stream, '<IQ')
        if item_type in _SCALARS:
            stream.seek(struct.calcsize(_SCALARS[item_type]) * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(stream, item_type)
    elif value_type in _SCALARS:
        stream.seek(struct.calcsize(_SCALARS[value_type]), os.SEEK_CUR)
    else:
        raise ValueError(f'unknown GGUF value type {value_type}')
