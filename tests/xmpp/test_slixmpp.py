"""The XMPP gateway with slixmpp: log in over STARTTLS, the roster, a 1:1 chat with a WebSocket user both ways,
receipts and corrections."""

from __future__ import annotations

import asyncio

from tests.conftest import PASSWORD
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
        client.send_message(mto=f"{bob.username}@localhost", mbody="hi from xmpp", mtype="chat")
        pushed = await asyncio.wait_for(ws.next_message(), TIMEOUT)
        assert pushed.body == {"text": "hi from xmpp"} and pushed.sender == alice.user_id

        await ws.send(alice.user_id, {"text": "hi from the web"})
        got = await client.next_message()
        assert got["body"] == "hi from the web" and got["from"].bare == f"{bob.username}@localhost"
    finally:
        await client.bye()
        await ws.close()
