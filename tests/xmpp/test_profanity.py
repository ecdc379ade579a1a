"""Profanity, Debian's terminal XMPP client, under a pseudo-terminal: it logs in to Pica's XMPP gateway and exchanges
messages both ways with a WebSocket user driven by Python, and with a person on Pica's web page in a real Chromium
(the page served by the same node that runs the gateway).

Needs Debian's ``profanity`` (``apt-get install -y profanity``; .ci/run installs it) and, for the web page, the
browser tests' Chromium and Playwright (tests/web/conftest.py). Without them the tests are skipped loudly, and under
CI=true a skip fails the run (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pexpect
import pytest

from tests.conftest import PASSWORD
from tests.mqtt.paho_client import User
from tests.web.conftest import Person
from tests.web.conftest import browser as browser  # headless Chromium, skipped loudly without it
from tests.web.conftest import expect as _expect
from tests.xmpp.conftest import XmppNode

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.skipif(
    shutil.which("profanity") is None,
    reason="PROFANITY TESTS NOT RUN: missing Debian's profanity (apt-get update && apt-get install -y profanity)")

EXPECT_S = 20  # one thing appearing on the terminal; profanity itself answers in milliseconds


def start_profanity(home: Path) -> pexpect.spawn:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "TERM": "xterm", "LANG": "C.UTF-8"}
    return pexpect.spawn("profanity", ["--logfile", str(home / "profanity.log")], env=env, encoding="utf-8",
                         dimensions=(40, 200), timeout=EXPECT_S)


@contextlib.asynccontextmanager
async def profanity_as(user: User, xmpp_node: XmppNode, home: Path) -> AsyncIterator[pexpect.spawn]:
    """Profanity started in its own home, logged in as ``user`` by typing at its prompt; quit at the end."""
    term = await asyncio.to_thread(start_profanity, home)
    try:
        await asyncio.to_thread(term.expect, "Profanity")
        term.sendline(f"/connect {user.username}@localhost server 127.0.0.1 port {xmpp_node.port} tls disable")
        await asyncio.to_thread(term.expect, "[Pp]assword")
        term.sendline(PASSWORD)
        await asyncio.to_thread(term.expect, "logged in successfully")
        yield term
    finally:
        term.sendline("/quit")
        await asyncio.to_thread(lambda: term.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=5))
        term.close(force=True)


async def test_profanity_exchanges_messages_with_a_pica_user(xmpp_node: XmppNode, tmp_path: Path) -> None:
    alice, bob = await xmpp_node.user("a"), await xmpp_node.user("b")
    await xmpp_node.befriend(alice, bob)
    ws = await xmpp_node.ws(bob)
    try:
        async with profanity_as(alice, xmpp_node, tmp_path) as term:
            term.sendline(f"/msg {bob.username}@localhost hello from profanity")
            pushed = await asyncio.wait_for(ws.next_message(), EXPECT_S)
            assert pushed.body == {"text": "hello from profanity"} and pushed.sender == alice.user_id
            await ws.send(alice.user_id, {"text": "hello from the web"})
            await asyncio.to_thread(term.expect, "hello from the web")
    finally:
        await ws.close()


async def test_profanity_chats_with_a_person_on_the_web_page(xmpp_node: XmppNode, browser: Browser,
                                                             tmp_path: Path) -> None:
    # Alice lives in her terminal; Bob signs up on the web page of the same node.
    alice = await xmpp_node.user("alice")
    bob = await Person.open(browser, xmpp_node.url, "bob")
    await bob.register()

    async with profanity_as(alice, xmpp_node, tmp_path) as term:
        # Alice writes to Bob's address; the chat appears in Bob's list, unread, and he reads it.
        term.sendline(f"/msg {bob.name}@localhost hi Bob, I am in a terminal")
        item = bob.conversation(alice.username)
        await _expect(item.get_by_test_id("conv-preview")).to_have_text("hi Bob, I am in a terminal")
        await bob.open_conversation(alice.username)
        await bob.sees("hi Bob, I am in a terminal")

        # Bob answers from the page; the answer shows up on Alice's terminal.
        await bob.send("hello Alice, from a browser")
        await asyncio.to_thread(term.expect, "hello Alice, from a browser")
    bob.assert_no_errors()
