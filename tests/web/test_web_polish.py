"""The rough edges a first-time user found on the web page, one story each (headless Chromium, a real server)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from pica.client import PicaHttp
from pica.protocol.bodies import stands_for_conversation
from tests.conftest import ServerProcess
from tests.protocol.test_bodies import PASSED_OVER, SHOWN
from tests.web.conftest import Person, http_user, registered
from tests.web.conftest import expect as _expect

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.timeout(120)


async def test_finding_people_by_name(browser: Browser, server: ServerProcess) -> None:
    bob, _, _ = await http_user(server.url, "bob")
    carol, _, carol_token = await http_user(server.url, "carol")
    alice = await Person.open(browser, server.url, "alice")
    await alice.register()
    page = alice.page
    find = page.get_by_test_id("find-people")

    # A name typed in the find field is looked up: one click starts the chat.
    await find.fill(bob.upper())  # usernames are case-insensitive
    person = page.get_by_test_id("find-person")
    await _expect(person).to_contain_text(f"Chat with {bob}")
    await person.click()
    await _expect(page.get_by_test_id("chat-title")).to_have_text(bob)
    await _expect(find).to_have_value("")
    await alice.send("Found you")

    # Someone who does not exist is said not to, and Enter does nothing else.
    await find.fill("nobody_by_that_name")
    await _expect(page.get_by_test_id("find-note")).to_have_text("No one is called “nobody_by_that_name”.")
    await find.press("Enter")
    await _expect(page.get_by_test_id("chat-title")).to_have_text(bob)
    await _expect(page.get_by_test_id("conversation-item")).to_have_count(0)  # the list is filtered too
    await find.press("Escape")
    await _expect(page.get_by_test_id("find-results")).to_be_hidden()
    await _expect(page.get_by_test_id("conversation-item")).to_have_count(1)

    # With conversations listed, the field filters them by name too; Enter opens the one that matches.
    async with PicaHttp(server.url, carol_token) as http:
        me = (await http.request("GET", "/v1/users", params={"username": alice.name}))["user_id"]
        await http.send(me, "c1", {"text": "Hi, it is Carol"})
    await _expect(alice.conversation(carol)).to_have_count(1)
    await find.fill(carol[:6])
    await _expect(page.get_by_test_id("conversation-item")).to_have_count(1)
    await _expect(alice.conversation(carol)).to_be_visible()
    await find.press("Enter")
    await _expect(page.get_by_test_id("chat-title")).to_have_text(carol)
    await alice.sees("Hi, it is Carol")
    await _expect(page.get_by_test_id("conversation-item")).to_have_count(2)  # the field was cleared
    await find.fill(bob)  # already listed: the list shows the chat, no second way to it
    await _expect(page.get_by_test_id("conversation-item")).to_have_count(1)
    await _expect(page.get_by_test_id("find-results")).to_be_hidden()
    await find.press("Escape")
    await _expect(page.get_by_test_id("conversation-item")).to_have_count(2)
    # Chromium logs the 404 of each look-up of a name nobody has; nothing else went wrong.
    assert [e for e in alice.errors if "status of 404" not in e] == []


async def test_toolbar_actions_say_what_they_do_and_add_people_is_for_those_who_may(
        browser: Browser, server: ServerProcess) -> None:
    alice, bob = await registered(browser, server.url, "alice", "bob")
    dave, _, _ = await http_user(server.url, "dave")

    # Every action in the sidebar's header carries its name, not only an icon with a tooltip.
    for test_id, label in (("new-chat", "New chat"), ("new-group", "New group"), ("logout", "Sign out")):
        await _expect(alice.page.get_by_test_id(test_id)).to_have_text(label)
        await _expect(alice.page.get_by_test_id(test_id)).to_be_visible()

    page = alice.page
    await page.get_by_test_id("new-group").click()
    await page.get_by_test_id("modal-field-name").fill("Hikers")
    await page.get_by_test_id("modal-field-members").fill(bob.name)
    await page.get_by_test_id("modal-submit").click()
    await _expect(page.get_by_test_id("chat-status")).to_have_text("2 members")
    add = page.get_by_test_id("add-member")
    await _expect(add).to_have_text("Add people")
    await _expect(add).to_be_visible()  # the owner may

    # Bob is a member: adding people would be refused (owner or admin only), so he is not offered it.
    await alice.send("Welcome")
    await bob.open_conversation("Hikers")
    await bob.sees("Welcome")
    await _expect(bob.page.get_by_test_id("chat-status")).to_have_text("2 members")
    await _expect(bob.page.get_by_test_id("add-member")).to_be_hidden()

    # Made an admin (the notice arrives live), he may, and does.
    token = await page.evaluate("JSON.parse(localStorage.getItem('pica.session')).token")
    bob_id = await bob.page.evaluate("JSON.parse(localStorage.getItem('pica.session')).user_id")
    async with PicaHttp(server.url, token) as http:
        group_id = (await http.request("GET", "/v1/groups"))["groups"][0]["group_id"]
        await http.request("POST", f"/v1/groups/{group_id}/members/{bob_id}/role", json={"role": "admin"})
    await _expect(bob.page.get_by_test_id("notice").last).to_contain_text("made You an admin")
    await bob.page.get_by_test_id("add-member").click()
    await bob.page.get_by_test_id("modal-field-usernames").fill(dave)
    await bob.page.get_by_test_id("modal-submit").click()
    await _expect(bob.page.get_by_test_id("chat-status")).to_have_text("3 members")
    alice.assert_no_errors()
    bob.assert_no_errors()


async def test_the_list_preview_shows_the_last_message_still_there(browser: Browser, server: ServerProcess) -> None:
    alice, bob = await registered(browser, server.url, "alice", "bob")
    await alice.start_chat(bob.name)
    await alice.send("See you at 6")
    await alice.send("Wrong chat, sorry")
    bobs_preview = bob.conversation(alice.name).get_by_test_id("conv-preview")
    alices_preview = alice.conversation(bob.name).get_by_test_id("conv-preview")
    await _expect(bobs_preview).to_have_text("Wrong chat, sorry")

    # A recall: the list goes back to the message before it, live and on both sides.
    await alice.message_action("Wrong chat, sorry", "recall")
    await alice.page.get_by_test_id("modal-submit").click()
    await _expect(alice.page.get_by_test_id("message-gone")).to_have_text("message recalled")
    await _expect(alices_preview).to_have_text("You: See you at 6")
    await _expect(bobs_preview).to_have_text("See you at 6")

    # An edit: the message stands with its new text (not "✎ …", the event).
    await alice.message_action("See you at 6", "edit")
    await alice.page.get_by_test_id("modal-field-text").fill("See you at 7")
    await alice.page.get_by_test_id("modal-submit").click()
    await _expect(alices_preview).to_have_text("You: See you at 7")
    await _expect(bobs_preview).to_have_text("See you at 7")

    # Deleted for Bob: his preview goes back further; Alice's stays.
    await bob.open_conversation(alice.name)
    await bob.send("Fine")
    await alice.send("Bring a map")
    bubble = bob.message("Bring a map")
    await bubble.hover()
    await bubble.get_by_test_id("message-menu").click()
    await bob.page.get_by_test_id("menu-delete").click()
    await _expect(bobs_preview).to_have_text("You: Fine")
    await _expect(alices_preview).to_have_text("You: Bring a map")

    # After a reload the server's list says the same (its last_message passes over events, recalls and deletions).
    for person, preview, text in ((alice, alices_preview, "You: Bring a map"), (bob, bobs_preview, "You: Fine")):
        await person.page.evaluate("sessionStorage.clear()")
        await person.page.reload()
        await _expect(preview).to_have_text(text)
    alice.assert_no_errors()
    bob.assert_no_errors()


async def test_the_page_and_the_server_agree_on_what_stands_for_a_conversation(
        browser: Browser, server: ServerProcess) -> None:
    """model.js mirrors pica/protocol/bodies.py: the same bodies, the same verdicts."""
    person = await Person.open(browser, server.url, "reader")
    bodies = SHOWN + PASSED_OVER
    verdicts = await person.page.evaluate(
        "async (bodies) => { const { standsForConversation } = await import('/static/model.js');"
        " return bodies.map((body) => standsForConversation(body)); }", bodies)
    assert verdicts == [stands_for_conversation(body) for body in bodies]


async def test_one_typing_indicator(browser: Browser, server: ServerProcess) -> None:
    """Typing shows once: under the messages of the open conversation, in the list for the others."""
    alice, bob, carol = await registered(browser, server.url, "alice", "bob", "carol")
    await bob.start_chat(alice.name)
    await bob.send("Hello from Bob")
    await carol.start_chat(alice.name)
    await carol.send("Hello from Carol")
    await alice.open_conversation(bob.name)
    page = alice.page

    # Typed for longer than the page's 2 s between typing frames: the one sent with "Hello from Bob" may be recent.
    await bob.page.get_by_test_id("composer-input").press_sequentially("Still there, Alice?", delay=150)
    await _expect(page.get_by_test_id("typing-indicator")).to_have_text(f"{bob.name} is typing…")
    await _expect(page.get_by_text(re.compile("typing"))).to_have_count(1)
    await _expect(page.get_by_test_id("chat-status")).not_to_contain_text("typing")
    await _expect(alice.conversation(bob.name).get_by_test_id("conv-preview")).to_have_text("Hello from Bob")

    await _expect(page.get_by_test_id("typing-indicator")).to_be_hidden(timeout=8_000)
    await carol.page.get_by_test_id("composer-input").press_sequentially("Are you", delay=60)
    await _expect(alice.conversation(carol.name).get_by_test_id("conv-preview")).to_have_text("typing…")
    await _expect(page.get_by_text(re.compile("typing"))).to_have_count(1)
    await _expect(page.get_by_test_id("typing-indicator")).to_be_hidden()
    for person in (alice, bob, carol):
        person.assert_no_errors()
