"""The web page's reactions bar, reply with quote, thread pane and mention autocomplete, in headless Chromium against a
real `pica serve` process (fixtures and skips: tests/web/conftest.py; protocol: docs/protocol.md section 28)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from pica.client import PicaHttp
from tests.conftest import ServerProcess
from tests.web.conftest import Person, http_user, registered
from tests.web.conftest import expect as _expect

if TYPE_CHECKING:
    from playwright.async_api import Browser, Locator

pytestmark = pytest.mark.timeout(120)


async def act_on(person: Person, text: str, action: str) -> None:
    """Open the actions menu of the message reading ``text`` (anyone's) and pick ``action``."""
    bubble = person.message(text)
    await bubble.hover()
    await bubble.get_by_test_id("message-menu").click()
    await person.page.get_by_test_id(f"menu-{action}").click()


def chip(message: Locator, emoji: str) -> Locator:
    return message.locator(f'[data-testid="reaction"][data-emoji="{emoji}"]')


async def group_with(owner: Person, name: str, *members: str) -> None:
    page = owner.page
    await page.get_by_test_id("new-group").click()
    await page.get_by_test_id("modal-field-name").fill(name)
    await page.get_by_test_id("modal-field-members").fill(", ".join(members))
    await page.get_by_test_id("modal-submit").click()
    await _expect(page.get_by_test_id("chat-title")).to_have_text(name)


async def test_reactions_bar_and_reply_with_quote(browser: Browser, server: ServerProcess) -> None:
    alice, bob = await registered(browser, server.url, "alice", "bob")
    await group_with(alice, "Launch", bob.name)
    await alice.send("Release on Friday?")
    await bob.open_conversation("Launch")
    await bob.sees("Release on Friday?")

    # Bob reacts through the message's menu; Alice sees the reaction live and adds hers by clicking it.
    await act_on(bob, "Release on Friday?", "react")
    await bob.page.get_by_test_id("modal-field-emoji").fill("🎉")
    await bob.page.get_by_test_id("modal-submit").click()
    await _expect(chip(alice.message("Release on Friday?"), "🎉")).to_have_attribute("data-count", "1")
    await chip(alice.message("Release on Friday?"), "🎉").click()
    await _expect(chip(bob.message("Release on Friday?"), "🎉")).to_have_attribute("data-count", "2")
    await _expect(chip(alice.message("Release on Friday?"), "🎉")).to_have_attribute("aria-pressed", "true")
    # Bob takes his back.
    await chip(bob.message("Release on Friday?"), "🎉").click()
    await _expect(chip(alice.message("Release on Friday?"), "🎉")).to_have_attribute("data-count", "1")
    await _expect(chip(bob.message("Release on Friday?"), "🎉")).to_have_attribute("aria-pressed", "false")

    # Bob replies with a quote of Alice's message.
    await act_on(bob, "Release on Friday?", "reply")
    await _expect(bob.page.get_by_test_id("reply-bar-text")).to_have_text("Release on Friday?")
    await bob.send("Yes, after QA")
    await _expect(bob.page.get_by_test_id("reply-bar")).to_be_hidden()
    quote = alice.message("Yes, after QA").get_by_test_id("reply-quote-text")
    await _expect(quote).to_have_text("Release on Friday?")

    # After a reload, reactions and the quote come back from the server; a recall turns the quote into a notice.
    await alice.page.reload()
    await alice.open_conversation("Launch")
    await _expect(chip(alice.message("Release on Friday?"), "🎉")).to_have_attribute("data-count", "1")
    await _expect(alice.message("Yes, after QA").get_by_test_id("reply-quote-text")).to_have_text("Release on Friday?")
    await alice.message_action("Release on Friday?", "recall")
    await alice.page.get_by_test_id("modal-submit").click()
    await bob.page.reload()
    await bob.open_conversation("Launch")
    await _expect(bob.message("Yes, after QA").get_by_test_id("reply-quote-text")).to_have_text("message recalled")
    for person in (alice, bob):
        person.assert_no_errors()


async def test_thread_pane_and_mention_autocomplete(browser: Browser, server: ServerProcess) -> None:
    alice, bob = await registered(browser, server.url, "alice", "bob")
    carol, _, carol_token = await http_user(server.url, "carol")
    await group_with(alice, "Ops", bob.name, carol)
    await alice.send("Incident review at 3")
    await bob.open_conversation("Ops")
    await bob.sees("Incident review at 3")

    # Bob opens a thread under Alice's message and writes in it; it stays out of the main timeline.
    await act_on(bob, "Incident review at 3", "thread")
    pane = bob.page.get_by_test_id("thread-pane")
    await _expect(pane.get_by_test_id("thread-root")).to_contain_text("Incident review at 3")
    await pane.get_by_test_id("thread-input").fill("I will bring the timeline")
    await pane.get_by_test_id("thread-input").press("Enter")
    await _expect(pane.get_by_test_id("thread-message").get_by_test_id("thread-text")).to_have_text(
        "I will bring the timeline")
    link = alice.message("Incident review at 3").get_by_test_id("thread-link")
    await _expect(link).to_have_text("1 reply in thread")
    await _expect(alice.message("I will bring the timeline")).to_have_count(0)

    # Carol answers in the thread over HTTP; Alice opens the pane from the link and sees both.
    async with PicaHttp(server.url, carol_token) as http:
        group = (await http.request("GET", "/v1/groups"))["groups"][0]
        history = await http.request("GET", f"/v1/conversations/{group['conversation_id']}/messages")
        [root] = [m for m in history["messages"] if m["body"].get("text") == "Incident review at 3"]
        await http.request("POST", "/v1/messages", json={"group_id": group["group_id"], "client_msg_id": "c1",
                                                         "body": {"text": "+1", "thread": {"root": root["seq"]}}})
    await _expect(link).to_have_text("2 replies in thread")
    await link.click()
    texts = alice.page.get_by_test_id("thread-pane").get_by_test_id("thread-text")
    await _expect(texts).to_have_text(["Incident review at 3", "I will bring the timeline", "+1"])
    await alice.page.get_by_test_id("thread-close").click()

    # Mention autocomplete: "@" and the start of Bob's name offers him; Enter puts the name in, and Bob's copy of
    # the message highlights it and stands out as mentioning him.
    box = alice.page.get_by_test_id("composer-input")
    await box.click()
    await box.press_sequentially(f"ping @{bob.name[:4]}")
    options = alice.page.get_by_test_id("mention-option")
    await _expect(options.first).to_have_text(f"@{bob.name}")
    await box.press("Enter")
    await _expect(box).to_have_value(f"ping @{bob.name} ")
    await box.press_sequentially("please look")
    await box.press("Enter")
    sent = f"ping @{bob.name} please look"
    await _expect(alice.own_message(sent)).to_have_attribute("data-status", re.compile("^(sent|delivered|read)$"))
    await _expect(bob.message(sent).get_by_test_id("mention")).to_have_text(f"@{bob.name}")
    await _expect(bob.message(sent)).to_have_class(re.compile(r"\bmentions-me\b"))
    # "@all" is offered in a group too.
    await box.press_sequentially("@al")
    await _expect(options.last).to_have_text("@all (everyone here)")
    await box.press("Escape")
    for person in (alice, bob):
        person.assert_no_errors()
