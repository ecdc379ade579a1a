"""A user offline while 1,000 messages arrive reconnects and gets all of them, once each, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pica.client import PicaHttp
from pica.protocol import frames as f
from tests.conftest import Node, connect, new_user, started
from tests.integration.test_bad_input import dial_ready


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


@pytest.mark.parametrize("transport", ["ws", "tcp"])
async def test_a_streamed_sync_sends_every_page_after_one_request(tmp_path: Path, transport: str) -> None:
    """``sync`` with ``stream``: the server sends page after page as the client reads them, each within the page
    size, until ``more`` is false: the same messages, in the same order, as paging with a request per page."""
    async with started(tmp_path, sync_page_size=64) as node:
        bob = await new_user(node.url, "bob")
        senders = [await new_user(node.url, f"s{i}") for i in range(3)]
        for sender, count in zip(senders, (150, 7, 90), strict=True):
            async with await connect(node.url, sender, "tcp", node.tcp_port) as conn:
                await asyncio.gather(*(conn.send(bob.user_id, {"text": f"m{i}"}, client_msg_id=f"m{i}")
                                       for i in range(count)))
        wire = await dial_ready(node, bob, transport)
        try:
            await wire.write(f.Sync(id=5, stream=True, limit=1000))  # asks for more than a page: gets a page each
            pages: list[f.Synced] = []
            async with asyncio.timeout(30):
                while not pages or pages[-1].more:
                    frame = await wire.read()
                    if isinstance(frame, f.Synced):
                        pages.append(frame)
        finally:
            await wire.close()
    streamed = [(m.conversation_id, m.seq, m.body["text"]) for page in pages for m in page.msgs]
    assert all(page.ref == 5 for page in pages)
    assert all(len(page.msgs) <= 64 for page in pages) and len(pages) == -(-247 // 64)
    conversations = sorted({c for c, _, _ in streamed})
    assert streamed == sorted(streamed, key=lambda m: (conversations.index(m[0]), m[1]))  # (conversation, seq)
    per_conversation = {c: [s for c2, s, _ in streamed if c2 == c] for c in conversations}
    assert sorted(len(seqs) for seqs in per_conversation.values()) == [7, 90, 150]
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in per_conversation.values())  # once each


async def test_a_streamed_sync_stops_at_what_the_user_could_see_when_it_began(tmp_path: Path) -> None:
    """Messages committed while a stream runs are not in it (they are pushed live): the stream ends at the last
    seqs of its start, so a user removed from a group meanwhile is never streamed what followed the removal."""
    async with started(tmp_path, sync_page_size=10) as node:
        alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
        async with await connect(node.url, alice, "tcp", node.tcp_port) as conn:
            for i in range(30):
                await conn.send(bob.user_id, {"text": f"before {i}"}, client_msg_id=f"b{i}")
            wire = await dial_ready(node, bob, "tcp")
            try:
                await wire.write(f.Sync(id=1, stream=True))
                streamed: list[int] = []
                pushed: list[int] = []
                async with asyncio.timeout(30):
                    first = await wire.read()
                    assert isinstance(first, f.Synced) and first.more
                    streamed.extend(m.seq for m in first.msgs)
                    for i in range(5):  # while the stream runs
                        await conn.send(bob.user_id, {"text": f"during {i}"}, client_msg_id=f"d{i}")
                    while len(streamed) < 30 or len(pushed) < 5:
                        frame = await wire.read()
                        if isinstance(frame, f.Synced):
                            streamed.extend(m.seq for m in frame.msgs)
                            done = not frame.more
                        elif isinstance(frame, f.Msg):
                            pushed.append(frame.seq)
            finally:
                await wire.close()
    assert done and streamed == list(range(1, 31))
    assert sorted(pushed) == list(range(31, 36))
