"""Forwarding, pins, drafts and list settings on the web page (docs/protocol.md section 29), in headless Chromium
against a real server: people clicking, a second browser of the same person seeing it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pica.client import PicaHttp
from tests.conftest import ServerProcess
from tests.web.conftest import Person, http_user, registered
from tests.web.conftest import expect as _expect

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.timeout(150)


async def test_forward_a_message_and_pin_one(browser: Browser, server: ServerProcess) -> None:
    carol, carol_id, carol_token = await http_user(server.url, "carol")
    alice, bob = await registered(browser, server.url, "alice", "bob")
    async with PicaHttp(server.url, carol_token) as http:  # alice knows carol: a conversation in her list
        alice_id = (await http.request("GET", "/v1/users", params={"username": alice.name}))["user_id"]
        await http.send(alice_id, "c1", {"text": "hi alice, carol here"})
    await bob.start_chat(alice.name)
    await bob.send("Meet at noon by the fountain")
    await alice.open_conversation(bob.name)
    await alice.sees("Meet at noon by the fountain")

    # Forward bob's message to carol through the dialog.
    page = alice.page
    bubble = alice.message("Meet at noon by the fountain")
    await bubble.hover()
    await bubble.get_by_test_id("message-menu").click()
    await page.get_by_test_id("menu-forward").click()
    dialog = page.get_by_test_id("forward-dialog")
    await dialog.locator(f'[data-testid="forward-target"][data-name="{carol}"] input').check()
    await dialog.get_by_test_id("forward-submit").click()
    await _expect(page.get_by_test_id("toast")).to_have_text("Forwarded to 1 conversation")
    async with PicaHttp(server.url, carol_token) as http:
        conversation = f"d:{min(alice_id, carol_id)}:{max(alice_id, carol_id)}"
        messages = (await http.history(conversation))["messages"]
    assert messages[-1]["body"]["text"] == "Meet at noon by the fountain"
    assert messages[-1]["body"]["forwarded"]["sender"] != alice_id  # bob wrote it
    await alice.open_conversation(carol)
    forwarded = alice.message("Meet at noon by the fountain")
    await _expect(forwarded.get_by_test_id("forwarded-label")).to_have_text(f"Forwarded from {bob.name}")

    # Alice pins it in the conversation with bob: both see the pins bar, bob lists the pins.
    await alice.open_conversation(bob.name)
    await bubble.hover()
    await bubble.get_by_test_id("message-menu").click()
    await page.get_by_test_id("menu-pin").click()
    await _expect(page.get_by_test_id("pins-bar-text")).to_have_text("Meet at noon by the fountain")
    await _expect(bob.page.get_by_test_id("pins-bar-text")).to_have_text("Meet at noon by the fountain")
    await _expect(bob.page.get_by_test_id("notice").last).to_have_text(f"{alice.name} pinned a message")
    await bob.page.get_by_test_id("pins-bar").click()
    await _expect(bob.page.get_by_test_id("pin-item")).to_have_count(1)
    await bob.page.get_by_test_id("pin-remove").click()
    await _expect(page.get_by_test_id("pins-bar")).to_be_hidden()
    alice.assert_no_errors()
    bob.assert_no_errors()


async def test_a_draft_and_list_settings_follow_me_to_my_other_browser(browser: Browser,
                                                                       server: ServerProcess) -> None:
    bob_name, _, _ = await http_user(server.url, "bob")
    (alice,) = await registered(browser, server.url, "alice")
    await alice.start_chat(bob_name)
    await alice.send("hello bob")
    laptop = await Person.open(browser, server.url, "alice")
    laptop.name = alice.name
    await laptop.login()
    await _expect(laptop.conversation(bob_name)).to_be_visible()

    # A draft typed on the phone shows in the laptop's list, and in its message box once opened.
    await alice.page.get_by_test_id("composer-input").fill("about tomorrow, I think we")
    preview = laptop.conversation(bob_name).get_by_test_id("conv-preview")
    await _expect(preview).to_have_text("Draft: about tomorrow, I think we")
    await laptop.open_conversation(bob_name)
    await _expect(laptop.page.get_by_test_id("composer-input")).to_have_value("about tomorrow, I think we")
    # Sent from the laptop: the draft is gone on the phone too.
    await laptop.page.get_by_test_id("composer-input").press("Enter")
    await _expect(laptop.own_message("about tomorrow, I think we")).to_be_visible()
    await _expect(alice.page.get_by_test_id("composer-input")).to_have_value("")

    # Mute, pin to top, archive from the phone's conversation menu: the laptop's list shows each.
    item = laptop.conversation(bob_name)
    for action, attribute in (("toggle-mute", "data-muted"), ("toggle-top", "data-top")):
        await alice.page.get_by_test_id("conversation-menu").click()
        await alice.page.get_by_test_id(f"conv-{action}").click()
        await _expect(item).to_have_attribute(attribute, "true")
    await _expect(item.get_by_test_id("muted-mark")).to_be_visible()
    await alice.page.get_by_test_id("conversation-menu").click()
    await alice.page.get_by_test_id("conv-toggle-archive").click()
    await _expect(laptop.page.get_by_test_id("archived-toggle")).to_have_text("Archived (1)")
    await _expect(item).to_have_count(0)
    await laptop.page.get_by_test_id("archived-toggle").click()
    await _expect(item).to_have_attribute("data-archived", "true")
    alice.assert_no_errors()
    laptop.assert_no_errors()
