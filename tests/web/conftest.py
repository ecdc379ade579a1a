"""Fixtures and helpers of the web page's browser tests: headless Chromium through Playwright, a real `pica serve`
process per test, and people who each drive the page in their own browser context (see test_web_chat.py)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pica.client import PicaHttp
from tests.conftest import PASSWORD, ServerProcess, start_server_process

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator, Page

CHROMIUM = os.environ.get("PICA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
WAIT_MS = 10_000  # one expectation (a message arriving, a badge appearing); the page's own work takes milliseconds

def require_browser() -> None:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package 'playwright' (.venv/bin/pip install 'playwright>=1.45')")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium at {CHROMIUM} (apt-get update && apt-get install -y chromium)")
    if missing:
        pytest.skip("WEB CHAT TESTS NOT RUN: missing " + " and ".join(missing))


def expect(target: Any) -> Any:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    return expect(target)


# ---------------------------------------------------------------------------------------------------------- fixtures


@contextlib.asynccontextmanager
async def chromium_browser(extra_args: tuple[str, ...] = ()) -> AsyncIterator[Browser]:
    """Headless Chromium (skipped loudly without it); tests/calls adds fake camera and microphone flags."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args],
                                                    timeout=30_000)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium_browser() as chromium:
        yield chromium


@pytest.fixture
async def server(tmp_path: Path, server_process_factory: list[ServerProcess]) -> ServerProcess:
    process = await asyncio.to_thread(start_server_process, tmp_path / "data")
    server_process_factory.append(process)
    return process


class Person:
    """One user with their own browser context (own localStorage), driving the page like a person would."""

    def __init__(self, page: Page, name: str, errors: list[str]) -> None:
        self.page = page
        self.name = name
        self.errors = errors

    @classmethod
    async def open(cls, browser: Browser, url: str, prefix: str, *, width: int = 1180, height: int = 760) -> Person:
        context = await browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(WAIT_MS)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"{prefix}: {exc}"))
        page.on("console", lambda m: errors.append(f"{prefix}: {m.text}") if m.type == "error" else None)
        await page.goto(url)
        return cls(page, f"{prefix}{uuid.uuid4().hex[:6]}", errors)

    async def register(self) -> None:
        page = self.page
        await page.get_by_test_id("auth-toggle").click()
        await page.get_by_test_id("auth-username").fill(self.name)
        await page.get_by_test_id("auth-password").fill(PASSWORD)
        await page.get_by_test_id("auth-submit").click()
        await expect(page.get_by_test_id("me-name")).to_have_text(self.name)

    async def login(self) -> None:
        page = self.page
        await page.get_by_test_id("auth-username").fill(self.name)
        await page.get_by_test_id("auth-password").fill(PASSWORD)
        await page.get_by_test_id("auth-submit").click()
        await expect(page.get_by_test_id("me-name")).to_have_text(self.name)

    def conversation(self, name: str) -> Locator:
        return self.page.locator(f'[data-testid="conversation-item"][data-name="{name}"]')

    async def open_conversation(self, name: str) -> None:
        await self.conversation(name).click()
        await expect(self.page.get_by_test_id("chat-title")).to_have_text(name)

    async def start_chat(self, username: str) -> None:
        await self.page.get_by_test_id("new-chat").click()
        await self.page.get_by_test_id("modal-field-username").fill(username)
        await self.page.get_by_test_id("modal-submit").click()
        await expect(self.page.get_by_test_id("chat-title")).to_have_text(username)

    async def send(self, text: str) -> None:
        box = self.page.get_by_test_id("composer-input")
        await box.fill(text)
        await box.press("Enter")
        await expect(self.own_message(text)).to_have_attribute("data-status", re.compile("^(sent|delivered|read)$"))

    def message(self, text: str) -> Locator:
        """The message bubble whose text is exactly ``text`` in the open conversation."""
        return self.page.get_by_test_id("message").filter(
            has=self.page.get_by_test_id("message-text").get_by_text(text, exact=True))

    def own_message(self, text: str) -> Locator:
        return self.message(text).and_(self.page.locator('[data-mine="true"]'))

    async def sees(self, text: str) -> None:
        await expect(self.message(text)).to_be_visible()

    async def message_action(self, text: str, action: str) -> None:
        bubble = self.own_message(text)
        await bubble.hover()
        await bubble.get_by_test_id("message-menu").click()
        await self.page.get_by_test_id(f"menu-{action}").click()

    async def seqs(self) -> list[int]:
        values = await self.page.locator('#messages [data-testid="message"][data-seq]').evaluate_all(
            "nodes => nodes.map(n => Number(n.dataset.seq))")
        return [int(v) for v in values]

    def assert_no_errors(self) -> None:
        assert not self.errors, self.errors


async def registered(browser: Browser, url: str, *prefixes: str) -> list[Person]:
    """People who signed up on the page, one browser context each."""
    people = [await Person.open(browser, url, prefix) for prefix in prefixes]
    for person in people:
        await person.register()
    return people


async def http_user(url: str, prefix: str) -> tuple[str, int, str]:
    """A user made over HTTP: (username, user_id, token)."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    async with PicaHttp(url) as http:
        user_id = await http.register(name, PASSWORD)
        login = await http.login(name, PASSWORD)
    return name, user_id, login.token


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path))
    return path
