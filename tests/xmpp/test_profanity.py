"""Profanity, Debian's terminal XMPP client, under a pseudo-terminal: it logs in to Pica's XMPP gateway and
exchanges a message with a WebSocket user."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pexpect
import pytest

from tests.conftest import PASSWORD
from tests.xmpp.conftest import XmppNode

pytestmark = pytest.mark.skipif(shutil.which("profanity") is None, reason="profanity is not installed")


def start_profanity(home: Path) -> pexpect.spawn:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_DATA_HOME": str(home / "data"), "TERM": "xterm", "LANG": "C.UTF-8"}
    return pexpect.spawn("profanity", ["--logfile", str(home / "profanity.log")], env=env, encoding="utf-8",
                         dimensions=(40, 200), timeout=20)


async def test_profanity_exchanges_messages_with_a_pica_user(xmpp_node: XmppNode, tmp_path: Path) -> None:
    alice, bob = await xmpp_node.user("a"), await xmpp_node.user("b")
    await xmpp_node.befriend(alice, bob)
    ws = await xmpp_node.ws(bob)
    term = await asyncio.to_thread(start_profanity, tmp_path)
    try:
        await asyncio.to_thread(term.expect, "Profanity")
        term.sendline(f"/connect {alice.username}@localhost server 127.0.0.1 port {xmpp_node.port} tls disable")
        await asyncio.to_thread(term.expect, "[Pp]assword")
        term.sendline(PASSWORD)
        await asyncio.to_thread(term.expect, "logged in successfully")
        term.sendline(f"/msg {bob.username}@localhost hello from profanity")
        pushed = await asyncio.wait_for(ws.next_message(), 20)
        assert pushed.body == {"text": "hello from profanity"} and pushed.sender == alice.user_id
        await ws.send(alice.user_id, {"text": "hello from the web"})
        await asyncio.to_thread(term.expect, "hello from the web")
    finally:
        term.sendline("/quit")
        await asyncio.to_thread(lambda: term.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=5))
        term.close(force=True)
        await ws.close()
