"""The XMPP gateway with slixmpp: log in over STARTTLS, the roster, a 1:1 chat with a WebSocket user both ways,
receipts and corrections."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from slixmpp import JID
from slixmpp.exceptions import PresenceError

from pica.config import XmppConfig
from pica.protocol import frames as f
from pica.store.base import ScramKeyRecord
from tests.conftest import PASSWORD, make_config, running
from tests.xmpp.conftest import XmppNode
from tests.xmpp.slix import TIMEOUT, Slix


async def test_slixmpp_chats_with_a_websocket_user(xmpp_node: XmppNode) -> None:
    alice, bob = await xmpp_node.user("a"), await xmpp_node.user("b")
    await xmpp_node.befriend(alice, bob)
    client = Slix(f"{alice.username}@localhost/laptop", PASSWORD, xmpp_node.trust)
    await client.login(xmpp_node.port)
    ws = await xmpp_node.ws(bob)
    try:
        assert f"{bob.username}@localhost" in client.client_roster
        client.say(f"{bob.username}@localhost", "hi from xmpp")
        pushed = await asyncio.wait_for(ws.next_message(), TIMEOUT)
        assert pushed.body == {"text": "hi from xmpp"} and pushed.sender == alice.user_id

        await ws.send(alice.user_id, {"text": "hi from the web"})
        got = await client.next_message()
        assert got["body"] == "hi from the web" and got["from"].bare == f"{bob.username}@localhost"
    finally:
        await client.bye()
        await ws.close()


async def test_receipts_markers_and_corrections_both_ways(xmpp_node: XmppNode) -> None:
    alice, bob = await xmpp_node.user("a"), await xmpp_node.user("b")
    await xmpp_node.befriend(alice, bob)
    client = Slix(f"{alice.username}@localhost/phone", PASSWORD, xmpp_node.trust)
    await client.login(xmpp_node.port)
    ws = await xmpp_node.ws(bob)
    bob_jid = f"{bob.username}@localhost"
    try:
        # Alice's message, read by Bob on the web page: a delivery receipt and a displayed marker for her id
        sent = client.make_message(mto=bob_jid, mbody="did you get this?", mtype="chat")
        sent["id"] = "alice-1"
        sent.send()
        pushed = await asyncio.wait_for(ws.next_message(), TIMEOUT)
        assert pushed.client_msg_id == "alice-1"
        await ws.request(f.Read(id=1, conversation_id=pushed.conversation_id, seq=pushed.seq))
        assert await asyncio.wait_for(client.receipts.get(), TIMEOUT) == "alice-1"

        # Bob's message and his edit of it reach Alice as a message and an XEP-0308 correction of it
        await ws.send(alice.user_id, {"text": "helo"})
        original = await client.next_message()
        seq = int(original["id"].rsplit(":", 1)[1])
        await ws.request(f.Edit(id=2, conversation_id=pushed.conversation_id, seq=seq, text="hello",
                                client_msg_id="e-1"))
        correction = await client.next_message()
        assert correction["body"] == "hello" and correction["replace"]["id"] == original["id"]

        # Alice's client marks Bob's message displayed: Bob is told she read it
        shown = client.make_message(mto=bob_jid, mtype="chat")
        shown["displayed"]["id"] = original["id"]
        shown.send()
        receipt = await ws.next_event(f.Receipt, TIMEOUT)
        assert receipt.user_id == alice.user_id and receipt.read == int(original["id"].rsplit(":", 1)[1])
        # Alice corrects her own message: Bob's page is sent the edit event
        fix = client.make_message(mto=bob_jid, mbody="did you get this one?", mtype="chat")
        fix["replace"]["id"] = "alice-1"
        fix.send()
        edit = await asyncio.wait_for(ws.next_message(), TIMEOUT)
        while edit.sender != alice.user_id:  # Bob's page is sent its own events too
            edit = await asyncio.wait_for(ws.next_message(), TIMEOUT)
        assert edit.body == {"edit": {"seq": pushed.seq, "text": "did you get this one?"}}

    finally:
        await client.bye()
        await ws.close()


async def test_a_resent_message_is_stored_once(xmpp_node: XmppNode) -> None:
    alice, bob = await xmpp_node.user("a"), await xmpp_node.user("b")
    client = Slix(f"{alice.username}@localhost/phone", PASSWORD, xmpp_node.trust)
    await client.login(xmpp_node.port)
    ws = await xmpp_node.ws(bob)
    try:
        for _ in range(2):  # the same origin-id twice, as a client resending after a lost connection does
            again = client.make_message(mto=JID(f"{bob.username}@localhost"), mbody="once", mtype="chat")
            again["origin_id"]["id"] = "origin-7"
            again.send()
        client.say(f"{bob.username}@localhost", "then this")
        first = await asyncio.wait_for(ws.next_message(), TIMEOUT)
        second = await asyncio.wait_for(ws.next_message(), TIMEOUT)
        assert (first.body, first.client_msg_id) == ({"text": "once"}, "origin-7")
        assert second.body == {"text": "then this"} and second.seq == first.seq + 1
    finally:
        await client.bye()
        await ws.close()


async def test_starttls_and_direct_tls(xmpp_tls_node: XmppNode) -> None:
    alice, bob = await xmpp_tls_node.user("a"), await xmpp_tls_node.user("b")
    over_starttls = Slix(f"{alice.username}@localhost/one", PASSWORD, xmpp_tls_node.trust)
    await over_starttls.login(xmpp_tls_node.port)
    direct = Slix(f"{bob.username}@localhost/two", PASSWORD, xmpp_tls_node.trust)
    direct.enable_direct_tls, direct.enable_starttls = True, False
    direct.connect("127.0.0.1", xmpp_tls_node.node.server.xmpp_tls_port)
    await asyncio.wait_for(direct.started.wait(), TIMEOUT)
    try:
        over_starttls.say(f"{bob.username}@localhost", "over TLS")
        got = await direct.next_message()
        assert got["body"] == "over TLS"
    finally:
        await over_starttls.bye()
        await direct.bye()


async def test_a_wrong_password_is_refused(xmpp_node: XmppNode) -> None:
    alice = await xmpp_node.user("a")
    client = Slix(f"{alice.username}@localhost/x", "not the password", xmpp_node.trust)
    client.connect("127.0.0.1", xmpp_node.port)
    try:
        await asyncio.wait_for(client.failed.wait(), TIMEOUT)
        assert not client.started.is_set()
    finally:
        await client.bye()


async def test_history_through_mam_after_a_node_restart(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), xmpp=XmppConfig(port=0, plain_without_tls=True))
    async with running(config) as node:
        first = XmppNode(node, None)
        alice, bob = await first.user("a"), await first.user("b")
        ws = await first.ws(bob)
        for i in range(5):
            await ws.send(alice.user_id, {"text": f"stored {i}"})
        await ws.close()
    async with running(config) as node:  # the same data directory: a restarted node
        again = XmppNode(node, None)
        client = Slix(f"{alice.username}@localhost/phone", PASSWORD, None, plugins=("xep_0313",))
        await client.login(again.port)
        try:
            texts = []
            async for message in client.plugin["xep_0313"].iterate(with_jid=JID(f"{bob.username}@localhost"),
                                                                    rsm={"max": 2}):
                texts.append(message["mam_result"]["forwarded"]["stanza"]["body"])
            assert texts == [f"stored {i}" for i in range(5)]
        finally:
            await client.bye()


async def test_a_group_as_a_muc_room(xmpp_node: XmppNode) -> None:
    owner, member, stranger = [await xmpp_node.user(p) for p in ("o", "m", "s")]
    group = await xmpp_node.api(owner, "POST", "/v1/groups", json={"name": "team", "members": [member.user_id]})
    room = f"g{group['group_id']}@conference.localhost"
    ws = await xmpp_node.ws(owner)
    await ws.request(f.Send(id=1, client_msg_id="early", group_id=group["group_id"],
                                body={"text": "before you came"}))
    client = Slix(f"{member.username}@localhost/desk", PASSWORD, xmpp_node.trust, plugins=("xep_0045",))
    outsider = Slix(f"{stranger.username}@localhost/desk", PASSWORD, xmpp_node.trust, plugins=("xep_0045",))
    await client.login(xmpp_node.port)
    await outsider.login(xmpp_node.port)
    try:
        await asyncio.wait_for(client.plugin["xep_0045"].join_muc_wait(JID(room), member.username, maxstanzas=10),
                               TIMEOUT)
        history = await client.next_message()
        assert history["type"] == "groupchat" and history["body"] == "before you came"

        client.send_message(mto=JID(room), mbody="hello room", mtype="groupchat")
        reflected = await client.next_message()
        assert reflected["body"] == "hello room" and reflected["from"].resource == member.username
        pushed = await asyncio.wait_for(ws.next_message(), TIMEOUT)
        while pushed.body != {"text": "hello room"}:
            pushed = await asyncio.wait_for(ws.next_message(), TIMEOUT)
        assert pushed.sender == member.user_id

        await ws.request(f.Send(id=2, client_msg_id="late", group_id=group["group_id"], body={"text": "welcome"}))
        welcome = await client.next_message()
        assert welcome["body"] == "welcome" and welcome["from"].resource == owner.username

        with pytest.raises(PresenceError):  # members only
            await asyncio.wait_for(outsider.plugin["xep_0045"].join_muc_wait(JID(room), "me"), TIMEOUT)
    finally:
        await client.bye()
        await outsider.bye()
        await ws.close()


async def test_a_stream_resumed_after_a_dropped_connection_loses_and_doubles_nothing(xmpp_node: XmppNode) -> None:
    alice, bob = await xmpp_node.user("a"), await xmpp_node.user("b")
    client = Slix(f"{alice.username}@localhost/phone", PASSWORD, xmpp_node.trust, plugins=("xep_0198",))
    resumed = asyncio.Event()
    client.add_event_handler("session_resumed", lambda _: resumed.set())
    await client.login(xmpp_node.port)
    ws = await xmpp_node.ws(bob)
    try:
        await asyncio.wait_for(_until(lambda: bool(client.plugin["xep_0198"].sm_id)), TIMEOUT)
        await ws.send(alice.user_id, {"text": "m1"})
        assert (await client.next_message())["body"] == "m1"

        assert client.transport is not None
        client.transport.abort()  # the TCP connection drops: no </stream:stream>
        for i in (2, 3, 4):  # stored while Alice is away
            await ws.send(alice.user_id, {"text": f"m{i}"})
        client.connect("127.0.0.1", xmpp_node.port)
        await asyncio.wait_for(resumed.wait(), TIMEOUT)
        await ws.send(alice.user_id, {"text": "m5"})
        bodies = [(await client.next_message())["body"] for _ in range(4)]
        assert bodies == ["m2", "m3", "m4", "m5"]
        await asyncio.sleep(0.3)
        assert client.messages.empty()  # nothing twice

        client.say(f"{bob.username}@localhost", "back")
        assert (await asyncio.wait_for(ws.next_message(), TIMEOUT)).body == {"text": "back"}
    finally:
        await client.bye()
        await ws.close()


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
async def test_scram_with_keys_derived_from_the_password(xmpp_tls_node: XmppNode, mechanism: str) -> None:
    alice = await xmpp_tls_node.user("a")  # registering derived the keys
    jid = f"{alice.username}@localhost/x"
    scram = Slix(jid, PASSWORD, xmpp_tls_node.trust, mechanism=mechanism)
    await scram.login(xmpp_tls_node.port)
    await scram.bye()
    wrong = Slix(jid, "not the password", xmpp_tls_node.trust, mechanism=mechanism)
    wrong.connect("127.0.0.1", xmpp_tls_node.port)
    try:
        await asyncio.wait_for(wrong.failed.wait(), TIMEOUT)
        assert not wrong.started.is_set()
    finally:
        await wrong.bye()

    # A new password: the change derived keys for it; the old password no longer passes SCRAM
    new_password = PASSWORD + " and more"
    await xmpp_tls_node.api(alice, "PUT", "/v1/me/password",
                            json={"old_password": PASSWORD, "new_password": new_password})
    old = Slix(jid, PASSWORD, xmpp_tls_node.trust, mechanism=mechanism)
    old.connect("127.0.0.1", xmpp_tls_node.port)
    try:
        await asyncio.wait_for(old.failed.wait(), TIMEOUT)
    finally:
        await old.bye()
    again = Slix(jid, new_password, xmpp_tls_node.trust, mechanism=mechanism)
    await again.login(xmpp_tls_node.port)
    await again.bye()


async def test_keys_missing_until_a_plain_login(xmpp_tls_node: XmppNode) -> None:
    """An account from before SCRAM keys existed (here: its keys removed) fails SCRAM like a wrong password, and
    one PLAIN login over TLS derives them."""
    alice = await xmpp_tls_node.user("a")
    store = xmpp_tls_node.node.server.store
    user = await store.get_user(alice.user_id)
    assert user is not None
    stale = ScramKeyRecord(alice.user_id, "SCRAM-SHA-256", "c2FsdA==", 4096, "eA==", "eA==", "not the hash's tag")
    await store.set_scram_keys([stale])
    jid = f"{alice.username}@localhost/x"
    early = Slix(jid, PASSWORD, xmpp_tls_node.trust, mechanism="SCRAM-SHA-256")
    early.connect("127.0.0.1", xmpp_tls_node.port)
    try:
        await asyncio.wait_for(early.failed.wait(), TIMEOUT)
    finally:
        await early.bye()
    plain = Slix(jid, PASSWORD, xmpp_tls_node.trust)
    await plain.login(xmpp_tls_node.port)
    await plain.bye()
    scram = Slix(jid, PASSWORD, xmpp_tls_node.trust, mechanism="SCRAM-SHA-256")
    await scram.login(xmpp_tls_node.port)
    await scram.bye()


