"""The package version, as lagent 0.2 offered it."""

from __future__ import annotations

import re

__all__ = ['__version__', 'parse_version_info', 'version_info']

__version__ = '0.3.0'


def parse_version_info(version_str: str, length: int = 4) -> tuple[int | str, ...]:
    """A version string as a tuple of ``length`` release numbers, then the
    pre-release tag and number (``'rc', 1``) or ``0, 0``.

    Example:
        >>> parse_version_info('2.0.0rc1')
        (2, 0, 0, 0, 'rc', 1)

    Raises:
        ValueError: The string does not start with a release number.
    """
    match = re.match(r'^v?(\d+(?:\.\d+)*)(?:[.-]?(a|b|rc|post)\.?(\d+))?', version_str.strip())
    if match is None:
        raise ValueError(f'not a version: {version_str!r}')
    release = [int(part) for part in match[1].split('.')][:length]
    release += [0] * (length - len(release))
    tag = (match[2], int(match[3])) if match[2] else (0, 0)
    return (*release, *tag)


version_info: tuple[int, ...] = tuple(int(part) for part in __version__.split('.')[:3])
"""The version as a tuple of three numbers."""
