"""A user offline while 1,000 messages arrive reconnects and gets all of them, once each, in order."""

from __future__ import annotations

import asyncio

import pytest

from pica.client import PicaHttp
from tests.conftest import Node, connect, new_user


@pytest.mark.parametrize("transport", ["ws", "tcp"])
async def test_offline_user_catches_up_on_1000_messages(node: Node, transport: str) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    sender = await connect(node.url, alice, "tcp", node.tcp_port)
    async with sender:
        acks = await asyncio.gather(
            *(sender.send(bob.user_id, {"text": f"message {i}"}, client_msg_id=f"m{i}") for i in range(1000))
        )
    assert sorted(a.seq for a in acks) == list(range(1, 1001))

    bob_conn = await connect(node.url, bob, transport, node.tcp_port)
    async with bob_conn:
        pages = 0
        received = []
        cursors: dict[str, int] = {}
        while True:  # the raw sync loop a client runs: pages are bounded and say when there is more
            page = await bob_conn.sync(cursors)
            pages += 1
            assert len(page.msgs) <= node.server.config.limits.sync_page_size
            received.extend(page.msgs)
            for m in page.msgs:
                cursors[m.conversation_id] = m.seq
            if not page.more:
                break
    assert pages >= 1000 // node.server.config.limits.sync_page_size
    assert [m.seq for m in received] == list(range(1, 1001))
    by_seq = {a.seq: a.client_msg_id for a in acks}
    assert [m.client_msg_id for m in received] == [by_seq[s] for s in range(1, 1001)]
    assert all(m.sender == alice.user_id for m in received)


async def test_reconnect_resumes_from_cursor_without_duplicates(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    a = await connect(node.url, alice)
    b = await connect(node.url, bob)
    async with a:
        for i in range(5):
            await a.send(bob.user_id, {"text": f"early {i}"})
        first = [await b.next_message() for _ in range(5)]
        cursors = b.cursors.snapshot()
        await b.close()
        for i in range(7):
            await a.send(bob.user_id, {"text": f"while away {i}"})
    b2 = await connect(node.url, bob, "tcp", node.tcp_port)
    async with b2:
        b2.cursors = type(b2.cursors)(cursors)
        missed = await b2.sync_all(limit=3)
    assert [m.seq for m in first] == [1, 2, 3, 4, 5]
    assert [m.seq for m in missed] == list(range(6, 13))
    assert [m.body["text"] for m in missed] == [f"while away {i}" for i in range(7)]


async def test_history_pages_backwards_over_socket_and_http(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    a = await connect(node.url, alice)
    async with a:
        for i in range(25):
            await a.send(bob.user_id, {"text": f"n{i}"})
        conversation = (await a.send(bob.user_id, {"text": "last"})).conversation_id
        newest = await a.history(conversation, limit=10)
        assert [m.seq for m in newest.msgs] == list(range(17, 27)) and newest.more
        older = await a.history(conversation, before=17, limit=10)
        assert [m.seq for m in older.msgs] == list(range(7, 17)) and older.more
        oldest = await a.history(conversation, before=7, limit=10)
        assert [m.seq for m in oldest.msgs] == list(range(1, 7)) and not oldest.more
        forward = await a.history(conversation, after=20, limit=3)
        assert [m.seq for m in forward.msgs] == [21, 22, 23] and forward.more

    async with PicaHttp(node.url, token=bob.token) as http:
        page = await http.history(conversation, before_seq=5, limit=2)
        assert [m["seq"] for m in page["messages"]] == [3, 4]
        assert {"seq", "sender", "client_msg_id", "body"} <= set(page["messages"][0])
        after = await http.history(conversation, after_seq=24)
        assert [m["seq"] for m in after["messages"]] == [25, 26]
