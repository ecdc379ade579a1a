"""Re-sending a client message id returns the original ack and stores nothing new, on any path; the stored message
is pushed again (protocol 8.2)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pica.client import PicaConnection, PicaHttp, PicaHttpError
from pica.client.connection import RequestFailed
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


async def test_an_id_reused_for_another_recipient_is_refused_and_pushes_nothing(node: Node) -> None:
    """Not a retry (protocol 8.2): the new recipient gets nothing, the original's recipient no copy."""
    alice, bob, carol = await new_user(node.url), await new_user(node.url), await new_user(node.url)
    a = await connect(node.url, alice, "tcp", node.tcp_port)
    b, c = await connect(node.url, bob), await connect(node.url, carol)
    async with a, b, c:
        await a.send(carol.user_id, {"text": "hi carol"}, client_msg_id="earlier")
        await a.send(bob.user_id, {"text": "for bob"}, client_msg_id="one-id")
        assert (await b.next_message()).body == {"text": "for bob"}
        assert (await c.next_message()).body == {"text": "hi carol"}
        drain(b), drain(c)
        with pytest.raises(RequestFailed) as refused:
            await a.send(carol.user_id, {"text": "for carol?"}, client_msg_id="one-id")
        assert refused.value.code == "idempotency_conflict"
        await b.ping()
        await c.ping()
        assert not any(isinstance(e, f.Msg) for e in drain(b) + drain(c))


async def test_an_id_reused_for_another_message_is_refused_on_every_path(node: Node) -> None:
    """A client bug (an id generator that repeats) must not make a new message vanish behind an old ack: the same
    id with another body or destination gets 409 idempotency_conflict, and an exact retry still gets the ack."""
    alice, bob, carol = await new_user(node.url), await new_user(node.url), await new_user(node.url)
    async with PicaHttp(node.url, token=alice.token) as http:
        first = await http.send(bob.user_id, "id-1", {"text": "hello"})
        with pytest.raises(PicaHttpError) as refused:
            await http.send(bob.user_id, "id-1", {"text": "something else"})
        assert (refused.value.status, refused.value.code) == (409, "idempotency_conflict")
        with pytest.raises(PicaHttpError) as refused:
            await http.send(carol.user_id, "id-1", {"text": "hello"})
        assert refused.value.code == "idempotency_conflict"
        assert (await http.send(bob.user_id, "id-1", {"text": "hello"}))["duplicate"] is True
    a = await connect(node.url, alice, "tcp", node.tcp_port)
    async with a:
        with pytest.raises(RequestFailed) as failed:
            await a.send(bob.user_id, {"text": "not the same"}, client_msg_id="id-1")
        assert failed.value.code == "idempotency_conflict" and not failed.value.retryable
        again = await a.send(bob.user_id, {"text": "hello"}, client_msg_id="id-1")
        assert (again.seq, again.duplicate) == (first["seq"], True)
    async with PicaHttp(node.url, token=alice.token) as http:
        history = await http.history(first["conversation_id"])
    assert [m["body"] for m in history["messages"]] == [{"text": "hello"}]
