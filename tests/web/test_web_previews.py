"""The web page's link preview cards and its message search box (headless Chromium, a real ``pica serve`` process,
and a local web site with Open Graph tags for the server to preview)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ServerProcess, start_server_process
from tests.previews.conftest import site
from tests.previews.pages import Site
from tests.web.conftest import expect as _expect
from tests.web.conftest import registered

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.timeout(120)
__all__ = ["site"]  # the local web site's fixture


async def test_a_link_shows_a_preview_card_that_its_author_can_remove(
        browser: Browser, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        server_process_factory: list[ServerProcess]) -> None:
    # The local site is loopback: this server is told it may reach it (the default refuses it).
    monkeypatch.setenv("PICA_PREVIEWS_ALLOWED_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("PICA_PREVIEWS_ALLOWED_PORTS", str(site.port))
    server = await asyncio.to_thread(start_server_process, tmp_path / "data")
    server_process_factory.append(server)
    alice, bob = await registered(browser, server.url, "alice", "bob")
    await alice.start_chat(bob.name)
    text = f"have a look at {site.url('/page')}"
    await alice.send(text)
    await bob.open_conversation(alice.name)

    for person in (alice, bob):
        card = person.message(text).get_by_test_id("link-preview")
        await _expect(card.get_by_test_id("link-preview-title")).to_have_text("Pica & friends")
        await _expect(card.get_by_test_id("link-preview-site")).to_have_text("Pica")
        await _expect(card.get_by_test_id("link-preview-description")).to_have_text(
            "A chat server that keeps every message.")
        image = card.get_by_test_id("link-preview-image")
        await _expect(image).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
        assert await image.evaluate("img => img.complete && img.naturalWidth > 0")  # CSP let it load
        await _expect(card.locator("a")).to_have_attribute("href", site.url("/page"))
    await _expect(bob.message(text).get_by_test_id("link-preview-remove")).to_have_count(0)  # not his message

    # A reload shows it again (from history this time); then the author removes it, for both of them.
    await bob.page.reload()
    await bob.open_conversation(alice.name)
    await _expect(bob.message(text).get_by_test_id("link-preview-title")).to_have_text("Pica & friends")
    await alice.message(text).get_by_test_id("link-preview-remove").click()
    for person in (alice, bob):
        await _expect(person.message(text).get_by_test_id("link-preview")).to_have_count(0)
        await person.sees(text)
    await bob.page.reload()
    await bob.open_conversation(alice.name)
    await bob.sees(text)
    await _expect(bob.message(text).get_by_test_id("link-preview")).to_have_count(0)
    assert site.hits["page"] == 1
    alice.assert_no_errors()
    bob.assert_no_errors()


async def test_the_search_box_highlights_matches_and_opens_the_conversation(
        browser: Browser, server: ServerProcess) -> None:
    alice, bob, carol = await registered(browser, server.url, "alice", "bob", "carol")
    await alice.start_chat(bob.name)
    await alice.send("我们明天开会讨论千万级系统")
    await alice.send("Crème brûlée for the Meeting")
    await carol.start_chat(bob.name)
    await carol.send("the meeting moved to Friday")

    page = bob.page
    box = page.get_by_test_id("search-input")
    results = page.get_by_test_id("search-result")
    await box.fill("开会")
    await _expect(results).to_have_count(1)
    await _expect(results.first.locator("mark")).to_have_text(["开会"])
    await _expect(results.first).to_contain_text(alice.name)

    await box.fill("meeting")
    await _expect(results).to_have_count(2)
    await _expect(page.locator('[data-testid="search-result"] mark')).to_have_text(["meeting", "Meeting"])
    await box.fill("creme brulee")
    await _expect(results.locator("mark")).to_have_text(["Crème", "brûlée"])  # accents folded, code points kept

    await results.first.click()
    await _expect(page.get_by_test_id("chat-title")).to_have_text(alice.name)
    await bob.sees("Crème brûlée for the Meeting")
    await _expect(page.get_by_test_id("search-results")).to_be_hidden()
    await _expect(box).to_have_value("")

    await box.fill("nothing like this")
    await _expect(page.get_by_test_id("search-note")).to_have_text("No messages found.")
    await box.press("Escape")
    await _expect(page.get_by_test_id("search-results")).to_be_hidden()
    for person in (alice, bob, carol):
        person.assert_no_errors()
