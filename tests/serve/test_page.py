"""The chat page in a real headless Chromium (Debian's, driven by Playwright):
keyboard submit, streamed answers, an agent's tool steps, the stop button,
visible errors. Screenshots go to ``artifacts/serve/`` (git-ignored)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lagent.actions import Calculator
from lagent.llms import ScriptedLLM
from lagent.serve import ServedAgent, Server
from tests.serve.engines import TICK, TickingLLM, calculator_script
from tests.serve.served import REPO

ARTIFACTS = REPO / 'artifacts' / 'serve'
CHROMIUM = shutil.which('chromium')
KEY = 'sk-page-test'
CHROMIUM_FLAGS = [
    '--no-sandbox',  # Chromium runs as root here
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
]  # Playwright gives each launch a fresh, temporary profile (--user-data-dir)

if CHROMIUM is None:
    reason = "Debian's chromium is not installed (scripts/test.sh installs it)"
    if os.environ.get('CI'):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope='module')
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope='module')
def ticking() -> TickingLLM:
    return TickingLLM(ticks=2000, interval=0.02)


@pytest.fixture(scope='module')
def url(ticking: TickingLLM) -> Iterator[str]:
    models = {
        'ticking': ticking,
        'calc': ServedAgent(ScriptedLLM([calculator_script] * 1000, chunk_size=2), [Calculator()]),
    }
    with Server(models, api_keys=[KEY]).run_in_thread() as address:
        yield address


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={'width': 1000, 'height': 700})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def open_chat(page: Page, url: str, key: str, model: str) -> None:
    page.goto(url)
    page.fill('#api-key', key)
    page.dispatch_event('#api-key', 'change')
    expect(page.locator(f'#model option[value="{model}"]')).to_have_count(1)
    page.select_option('#model', model)


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f'{name}.png'), full_page=True)


def ask(page: Page, question: str) -> None:
    page.fill('#prompt', question)
    page.press('#prompt', 'Enter')  # keyboard submit


def test_an_agent_answer_shows_its_tool_steps(page: Page, url: str) -> None:
    open_chat(page, url, KEY, 'calc')
    ask(page, 'What is 37 * 12?')
    expect(page.locator('.msg.user')).to_have_text('What is 37 * 12?')
    answer = page.locator('.msg.assistant').last
    expect(answer.locator('.step.tool-call')).to_contain_text('Calculator({"expression": "37 * 12"})')
    expect(answer.locator('.step.tool-result')).to_contain_text('444')
    expect(answer.locator('.text')).to_have_text('37 * 12 is 444.')
    expect(answer).not_to_have_class('msg assistant streaming')
    expect(page.locator('#prompt')).to_have_value('')
    screenshot(page, 'agent-tool-step')


def test_stop_ends_the_stream_and_the_generation(page: Page, url: str, ticking: TickingLLM) -> None:
    ticking.reset()
    open_chat(page, url, KEY, 'ticking')
    ask(page, 'Go on and on.')
    answer = page.locator('.msg.assistant .text').last
    expect(answer).to_contain_text(TICK * 5)  # it streams
    expect(page.locator('#stop')).to_be_enabled()
    screenshot(page, 'streaming')
    page.click('#stop')
    expect(page.locator('.msg.assistant .note')).to_have_text('(stopped)')
    assert ticking.closed.wait(5), 'the engine kept generating after the stop button'
    shown = answer.text_content()
    page.wait_for_timeout(300)
    assert answer.text_content() == shown and ticking.produced < 2000
    expect(page.locator('#send')).to_be_enabled()
    screenshot(page, 'stopped')


def test_errors_are_shown(page: Page, url: str) -> None:
    open_chat(page, url, KEY, 'ticking')
    page.fill('#api-key', 'sk-wrong')
    page.dispatch_event('#api-key', 'change')
    error = page.locator('#error')
    expect(error).to_be_visible()
    expect(error).to_contain_text('HTTP 401')
    expect(error).to_contain_text('incorrect API key')
    ask(page, 'Hello?')
    expect(error).to_contain_text('incorrect API key')
    expect(page.locator('.msg.assistant .note')).to_have_text('(failed)')
    screenshot(page, 'error')


def test_artifacts_folder_is_ignored_by_git() -> None:
    ignored = (REPO / '.gitignore').read_text().split()
    assert '/artifacts/' in ignored, 'screenshots must not be committed'
    assert Path(ARTIFACTS).is_relative_to(REPO / 'artifacts')
