"""Re-sending a client message id returns the original ack and stores nothing new, on any path; the stored message
is pushed again (protocol 8.2)."""

from __future__ import annotations

import asyncio
from typing import Any

from pica.client import PicaConnection, PicaHttp
from pica.protocol import frames as f
from tests.conftest import Node, connect, new_user


def drain(conn: PicaConnection) -> list[Any]:
    """Events received and not yet taken."""
    events = []
    while not conn.events.empty():
        events.append(conn.events.get_nowait())
    return events


async def test_duplicate_client_msg_id_gets_same_ack_and_one_message(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    a = await connect(node.url, alice, "tcp", node.tcp_port)
    b = await connect(node.url, bob)
    async with a, b:
        first = await a.send(bob.user_id, {"text": "once"}, client_msg_id="retry-me")
        again = await a.send(bob.user_id, {"text": "once"}, client_msg_id="retry-me")
        assert (again.conversation_id, again.seq, again.ts) == (first.conversation_id, first.seq, first.ts)
        assert not first.duplicate and again.duplicate
        # Concurrent retries of another id (a client resending after a timeout while the first is in flight).
        racing = await asyncio.gather(*(a.send(bob.user_id, {"text": "race"}, client_msg_id="race") for _ in range(5)))
        assert len({r.seq for r in racing}) == 1 and sum(not r.duplicate for r in racing) == 1
        got = [await b.next_message(), await b.next_message()]
        assert [m.client_msg_id for m in got] == ["retry-me", "race"]

    async with PicaHttp(node.url, token=alice.token) as http:
        over_http = await http.send(bob.user_id, "retry-me", {"text": "once"})
        assert (over_http["seq"], over_http["duplicate"]) == (first.seq, True)
        history = await http.history(first.conversation_id)
    assert [m["client_msg_id"] for m in history["messages"]] == ["retry-me", "race"]


async def test_same_client_msg_id_from_two_users_are_two_messages(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    async with PicaHttp(node.url) as http:
        http.token = alice.token
        a = await http.send(bob.user_id, "same", {"text": "from alice"})
        http.token = bob.token
        b = await http.send(alice.user_id, "same", {"text": "from bob"})
    assert (a["seq"], b["seq"]) == (1, 2) and not a["duplicate"] and not b["duplicate"]


async def test_a_resent_id_is_pushed_again_to_devices_that_missed_it(node: Node) -> None:
    """The first attempt's answer (and push) can be lost after its commit, e.g. when the database connection breaks
    right after COMMIT; the client's retry is then a duplicate, and the peer must still get the message live."""
    alice, bob = await new_user(node.url), await new_user(node.url)
    a = await connect(node.url, alice, "tcp", node.tcp_port)
    async with a:
        first = await a.send(bob.user_id, {"text": "did you get this?"}, client_msg_id="lost-answer")
        b = await connect(node.url, bob)  # connected after the first push; it does not sync
        async with b:
            again = await a.send(bob.user_id, {"text": "did you get this?"}, client_msg_id="lost-answer")
            assert again.duplicate and again.seq == first.seq
            pushed = await b.next_message()
            assert (pushed.seq, pushed.client_msg_id, pushed.body) == (first.seq, "lost-answer",
                                                                      {"text": "did you get this?"})


async def test_a_resent_id_with_another_recipient_pushes_only_the_original(node: Node) -> None:
    """The first write wins (protocol 8.2): the copy goes to the original conversation, never to the retry's."""
    alice, bob, carol = await new_user(node.url), await new_user(node.url), await new_user(node.url)
    a = await connect(node.url, alice, "tcp", node.tcp_port)
    b, c = await connect(node.url, bob), await connect(node.url, carol)
    async with a, b, c:
        await a.send(carol.user_id, {"text": "hi carol"}, client_msg_id="earlier")
        first = await a.send(bob.user_id, {"text": "for bob"}, client_msg_id="one-id")
        assert (await b.next_message()).body == {"text": "for bob"}
        assert (await c.next_message()).body == {"text": "hi carol"}
        drain(b), drain(c)
        again = await a.send(carol.user_id, {"text": "for carol?"}, client_msg_id="one-id")
        assert again.duplicate and (again.conversation_id, again.seq) == (first.conversation_id, first.seq)
        copy = await asyncio.wait_for(b.events.get(), 5)  # read back from the store in the background
        assert (copy.conversation_id, copy.seq, copy.body) == (first.conversation_id, first.seq, {"text": "for bob"})
        await c.ping()
        assert not any(isinstance(e, f.Msg) for e in drain(c))
