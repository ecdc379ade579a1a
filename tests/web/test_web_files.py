"""Files on the web page, in Chromium: an image attached by one person is a thumbnail on the other's screen that
opens full size; a voice note recorded with Chromium's fake microphone plays on the other side."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from tests.conftest import ServerProcess
from tests.web.conftest import chromium_browser, expect, registered

if TYPE_CHECKING:
    from playwright.async_api import Browser

BLOB = re.compile("^blob:")
"""An object URL: the page fetched the bytes with its token (an <img src> cannot send one)."""
MEDIA_ARGS = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              "--autoplay-policy=no-user-gesture-required")


@pytest.fixture
async def media_browser() -> AsyncIterator[Browser]:
    async with chromium_browser(MEDIA_ARGS) as chromium:
        yield chromium


async def test_an_attached_image_shows_as_a_thumbnail_and_opens_full_size(
        browser: Browser, server: ServerProcess, tmp_path: Path) -> None:
    alice, bob = await registered(browser, server.url, "alice", "bob")
    await alice.start_chat(bob.name)
    await alice.send("a photo for you")
    picture = tmp_path / "sunset.png"
    Image.new("RGB", (1200, 800), (240, 120, 30)).save(picture, "PNG")
    await alice.page.get_by_test_id("attach-input").set_input_files(str(picture))
    await expect(alice.page.get_by_test_id("attachment-image")).to_have_count(1)

    await bob.open_conversation(alice.name)
    thumbnail = bob.page.get_by_test_id("attachment-image")
    await expect(thumbnail).to_have_attribute("src", BLOB)
    assert await thumbnail.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])") == [
        320, 213]  # the 320-pixel thumbnail, not the 1200-pixel original
    await thumbnail.click()
    full = bob.page.get_by_test_id("viewer-image")
    await expect(full).to_have_attribute("src", BLOB)
    assert await full.evaluate("img => img.decode().then(() => img.naturalWidth)") == 1200
    await bob.page.keyboard.press("Escape")
    await expect(bob.page.get_by_test_id("image-viewer")).to_have_count(0)
    alice.assert_no_errors()
    bob.assert_no_errors()


async def test_a_recorded_voice_note_plays_on_the_other_side(media_browser: Browser, server: ServerProcess) -> None:
    alice, bob = await registered(media_browser, server.url, "alice", "bob")
    await alice.start_chat(bob.name)
    await alice.send("listen to this")
    record = alice.page.get_by_test_id("record-button")
    await record.click()
    await expect(record).to_have_attribute("aria-pressed", "true")
    await alice.page.wait_for_timeout(1500)  # Chromium's fake microphone beeps meanwhile
    await record.click()
    await expect(alice.page.get_by_test_id("attachment-voice")).to_have_count(1)

    await bob.open_conversation(alice.name)
    audio = bob.page.get_by_test_id("attachment-voice")
    await expect(audio).to_have_attribute("src", BLOB)
    played = await audio.evaluate(
        "a => a.play().then(() => new Promise((done) => setTimeout(() => done(a.currentTime), 700)))")
    assert played > 0.2
    body = await bob.page.evaluate(
        "async () => { const token = JSON.parse(localStorage.getItem('pica.session')).token;"
        " const r = await fetch('/v1/conversations', {headers: {Authorization: `Bearer ${token}`}});"
        " return (await r.json()).conversations[0].last_message.body; }")
    assert 1200 <= body["voice"]["duration_ms"] <= 5000 and body["voice"]["waveform"]
    alice.assert_no_errors()
    bob.assert_no_errors()
