"""Every code block in docs/ runs, so the docs cannot rot.

Rules for the Markdown in docs/ (kept in the doc sources as HTML comments, so
readers see ordinary code):

* ```python blocks of a page run in order in one namespace, in a fresh
  working directory; ```bash blocks run there with ``bash -euo pipefail``
  (``lagent`` is on the ``PATH``).
* ``<!-- file: NAME -->`` before a block writes it to NAME in that directory
  instead (a config or dataset that later blocks use).
* ``<!-- not run: REASON -->`` before a block skips it; the reason is required
  and shows in the doc source.
* The server address ``http://127.0.0.1:8000`` (llama.cpp, vLLM, any
  OpenAI-compatible server) is replaced by the address of the real llama.cpp
  server of the test fixtures (serving SmolLM2 as ``smollm2``),
  ``http://127.0.0.1:23333`` by that of lmdeploy's real api_server on the CPU
  engine of the fixtures (SmolLM2 too), and the gRPC address ``127.0.0.1:8001``
  by that of the real Triton server of the fixtures; a server starts only for
  the pages that use its address.

Any other block (or an unmarked block in another language) fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lagent.llms.base import BaseLLM

DOCS = Path(__file__).resolve().parent.parent / 'docs'
SERVERS = {
    'http://127.0.0.1:8000': 'llamacpp_url',
    'http://127.0.0.1:23333': 'lmdeploy_url',
    '127.0.0.1:8001': 'triton_addr',
}
"""Addresses written in the docs, and the fixture whose address replaces each."""
RUNNABLE = ('python', 'bash')

_BLOCK = re.compile(
    r'(?:<!--\s*(?P<directive>not run|file):\s*(?P<argument>.*?)\s*-->\s*\n)?'
    r'^(?P<fence>```+)(?P<language>[\w+-]*)[^\n]*\n(?P<code>.*?)^(?P=fence)\s*$',
    re.M | re.S,
)


@dataclass
class Block:
    """A fenced code block of a docs page."""

    page: str
    line: int
    language: str
    code: str
    directive: str | None
    argument: str

    @property
    def where(self) -> str:
        return f'{self.page}:{self.line}'


def blocks_of(page: Path) -> list[Block]:
    text = page.read_text(encoding='utf-8')
    found = []
    for match in _BLOCK.finditer(text):
        line = text.count('\n', 0, match.start('fence')) + 1
        found.append(
            Block(
                page=str(page.relative_to(DOCS)),
                line=line,
                language=match['language'],
                code=match['code'],
                directive=match['directive'],
                argument=match['argument'] or '',
            )
        )
    return found


PAGES = sorted(DOCS.rglob('*.md'))


def test_docs_exist() -> None:
    names = {str(page.relative_to(DOCS)) for page in PAGES}
    expected = {
        'quickstart.md', 'prompts.md', 'agents.md', 'adding-an-engine.md', 'benchmarking.md', 'troubleshooting.md',
        'engines/llamacpp.md', 'engines/hf.md', 'engines/lmdeploy.md', 'engines/triton.md', 'engines/openai.md',
    }  # fmt: skip
    assert expected <= names


@pytest.mark.parametrize('page', PAGES, ids=[str(page.relative_to(DOCS)) for page in PAGES])
def test_every_block_is_runnable_or_marked(page: Path) -> None:
    blocks = blocks_of(page)
    fences = re.findall(r'^\s*(?:```|~~~)', page.read_text(encoding='utf-8'), re.M)
    assert len(fences) == 2 * len(blocks), f'{page.name}: a code block the runner does not see (indented or ~~~ fence?)'
    for block in blocks:
        if block.directive == 'not run':
            assert block.argument, f'{block.where}: "not run" needs a reason'
        elif block.directive == 'file':
            assert block.argument and '/' not in block.argument, f'{block.where}: "file:" needs a plain file name'
        else:
            assert block.language in RUNNABLE, (
                f'{block.where}: a ```{block.language or "(no language)"} block must be marked '
                '<!-- file: NAME --> or <!-- not run: REASON -->'
            )


@pytest.mark.slow
@pytest.mark.parametrize('page', PAGES, ids=[str(page.relative_to(DOCS)) for page in PAGES])
def test_page_runs(page: Path, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = blocks_of(page)
    used = {
        placeholder
        for block in blocks
        if block.directive != 'not run'
        for placeholder in SERVERS
        if placeholder in block.code
    }
    addresses = {placeholder: request.getfixturevalue(SERVERS[placeholder]) for placeholder in used}
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, 'PATH': f'{Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}'}
    namespace: dict[str, object] = {'__name__': '__docs__'}
    ran = 0
    for block in blocks:
        if block.directive == 'not run':
            continue
        code = block.code
        for placeholder, address in addresses.items():
            code = code.replace(placeholder, address)
        if block.directive == 'file':
            (tmp_path / block.argument).write_text(code, encoding='utf-8')
        elif block.language == 'python':
            exec(compile(code, block.where, 'exec'), namespace)
        elif block.language == 'bash':
            result = subprocess.run(
                ['bash', '-euo', 'pipefail', '-c', code],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert result.returncode == 0, f'{block.where} failed:\n{result.stdout}\n{result.stderr}'
        else:
            pytest.fail(f'{block.where}: unmarked ```{block.language} block')
        ran += 1
    for value in namespace.values():
        if isinstance(value, BaseLLM):
            value.close()
    expected = sum(block.directive != 'not run' for block in blocks)
    assert ran == expected
