"""``lagent --system``: what this machine offers lagent, for bug reports and setup checks."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re

from lagent.llms.registry import ENGINES

__all__ = ['system_report']


def system_report() -> str:
    """Describe the interpreter, the machine, torch's devices and, for each engine,
    whether the libraries of its pip extra are installed (and which versions)."""
    lines = [
        f'lagent {_version("lagent") or "(not installed; running from a source tree)"}',
        f'python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}',
        f'cpus: {os.cpu_count()}, memory: {_memory()}',
    ]
    torch, cuda_devices = _torch()
    lines += [f'torch: {torch}', 'engines:']
    width = max(len(spec.name) for spec in ENGINES)
    class_width = max(len(spec.class_name) for spec in ENGINES)
    for spec in ENGINES:
        needs = _extra_distributions(spec.extra) if spec.extra else []
        versions = {name: _version(name) for name in needs}
        missing = [name for name, version in versions.items() if version is None]
        if missing:
            state = f'missing {", ".join(missing)}: pip install "lagent[{spec.extra}]"'
        elif spec.needs_cuda and not cuda_devices:
            state = 'installed, but needs a CUDA device (torch sees none)'
        elif versions:
            state = 'ready (' + ', '.join(f'{name} {version}' for name, version in versions.items()) + ')'
        else:
            state = 'ready (core dependencies only)'
        lines.append(f'  {spec.name:<{width}}  {spec.class_name:<{class_width}}  {state}')
    return '\n'.join(lines)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _extra_distributions(extra: str) -> list[str]:
    """The distributions lagent's ``extra`` installs, read from lagent's own metadata."""
    try:
        requirements = importlib.metadata.requires('lagent') or []
    except importlib.metadata.PackageNotFoundError:
        return []
    names = []
    for requirement in requirements:
        if f'extra == "{extra}"' in requirement:
            names.append(re.split(r'[\[<>=!~;\s]', requirement, maxsplit=1)[0])
    return names


def _torch() -> tuple[str, int]:
    """torch's version and how many CUDA devices it sees."""
    version = _version('torch')
    if version is None:
        return 'not installed', 0
    import torch

    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f'{version}, CUDA devices: {devices}', devices


def _memory() -> str:
    try:
        with open('/proc/meminfo', encoding='ascii') as meminfo:
            for line in meminfo:
                if line.startswith('MemTotal:'):
                    return f'{int(line.split()[1]) / 2**20:.1f} GiB'
    except OSError:
        pass
    return 'unknown'
