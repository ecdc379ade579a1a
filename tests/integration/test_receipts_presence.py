"""The conversation list, read and delivery receipts, presence and typing: each a small story over real sockets.

Negative checks ("nothing was pushed") use a ping round trip as a barrier: the server writes a connection's frames in
order, so once the pong is back, everything pushed to that connection before the ping has arrived too.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from pica.client import Login, PicaConnection
from pica.client.connection import RequestFailed
from pica.core.ports import SystemClock
from pica.protocol import frames as f
from pica.protocol.codec import Encoding, encode
from tests.conftest import Node, api, api_error, connect, new_user, started

WAIT = 5.0  # upper bound for any single server reaction; the tests finish far sooner


# ------------------------------------------------------------------------------------------------- helpers


class FrozenWallClock(SystemClock):
    """Every event in one millisecond, as on a busy node where activity times tie; deadlines keep running."""

    def __init__(self) -> None:
        self._ms = super().now_ms()

    def now_ms(self) -> int:
        return self._ms











async def post(node: Node, sender: Login, text: str, *, to: Login | None = None,
               group_id: int | None = None) -> dict[str, Any]:
    target = {"to": to.user_id} if to is not None else {"group_id": group_id}
    ack: dict[str, Any] = await api(node, sender, "POST", "/v1/messages",
                                    json={**target, "client_msg_id": uuid.uuid4().hex,
                                          "body": {"text": text}})
    return ack


async def make_group(node: Node, owner: Login, *members: Login, name: str = "trip") -> dict[str, Any]:
    group: dict[str, Any] = await api(node, owner, "POST", "/v1/groups",
                                      json={"name": name, "members": [m.user_id for m in members]})
    return group


async def befriend(node: Node, a: Login, b: Login) -> None:
    await api(node, a, "POST", "/v1/contacts/requests", json={"user_id": b.user_id})
    await api(node, b, "POST", f"/v1/contacts/requests/{a.user_id}/accept")


async def conversations(node: Node, who: Login, **params: Any) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await api(node, who, "GET", "/v1/conversations", params=params))["conversations"]
    return listed


async def conversation(node: Node, who: Login, conversation_id: str) -> dict[str, Any]:
    (found,) = [c for c in await conversations(node, who) if c["conversation_id"] == conversation_id]
    return found


async def username(node: Node, who: Login) -> str:
    return str((await api(node, who, "GET", "/v1/me"))["username"])


async def pushed(conn: PicaConnection, kind: type[Any]) -> list[Any]:
    """The frames of ``kind`` pushed to ``conn`` so far (the other queued events are dropped)."""
    await conn.ping()
    events = []
    while not conn.events.empty():
        events.append(conn.events.get_nowait())
    return [e for e in events if isinstance(e, kind)]


async def read(conn: PicaConnection, conversation_id: str, seq: int) -> None:
    assert isinstance(await conn.request(f.Read(conversation_id=conversation_id, seq=seq)), f.Done)


async def receipt(conn: PicaConnection) -> tuple[int, int | None, int | None]:
    event = await conn.next_event(f.Receipt, WAIT)
    return event.user_id, event.delivered, event.read


async def presence(conn: PicaConnection) -> f.Presence:
    event: f.Presence = await conn.next_event(f.Presence, WAIT)
    return event


async def visible_presence(node: Node, viewer: Login, *users: Login | int) -> dict[int, dict[str, Any]]:
    ids = [u if isinstance(u, int) else u.user_id for u in users]
    listed = (await api(node, viewer, "GET", "/v1/presence", params={"user_ids": ",".join(map(str, ids))}))
    return {p["user_id"]: p for p in listed["presence"]}


async def type_in(conn: PicaConnection, conversation_id: str) -> None:
    """A ``typing`` frame has no request id and no reply: it goes out as it is (JSON, on a WebSocket)."""
    await conn.write_raw(encode(f.Typing(conversation_id=conversation_id), Encoding.JSON).decode())


async def no_typing_within(conn: PicaConnection, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await conn.next_event(f.Typing, seconds)


# ------------------------------------------------------------------------------------------------- conversation list


async def test_conversation_list_orders_by_activity_counts_unread_and_pages(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url, p) for p in ("alice", "bob", "carol")]
    a = await connect(node.url, alice)
    async with a:
        direct_bob = (await a.send(bob.user_id, {"text": "hi bob"})).conversation_id
        await post(node, bob, "yo", to=alice)
        await post(node, bob, "there", to=alice)
        await asyncio.sleep(0.01)  # distinct activity times, so that the order is defined
        group = await make_group(node, carol, alice, bob, name="trip")
        await post(node, carol, "group hello", group_id=group["group_id"])
        await asyncio.sleep(0.01)
        direct_carol = (await post(node, carol, "psst", to=alice))["conversation_id"]

        listed = await conversations(node, alice)
        assert [c["conversation_id"] for c in listed] == [direct_carol, group["conversation_id"], direct_bob]
        assert [c["kind"] for c in listed] == ["direct", "group", "direct"]
        assert [c["name"] for c in listed] == [await username(node, carol), "trip", await username(node, bob)]
        assert [c["unread"] for c in listed] == [1, 2, 2]  # the group's "created" notice counts
        assert [c["last_message"]["body"]["text"] for c in listed] == ["psst", "group hello", "there"]
        assert [c["last_seq"] for c in listed] == [1, 2, 3]
        assert listed[0]["last_ts"] > listed[1]["last_ts"] > listed[2]["last_ts"]
        assert (listed[0]["peer_id"], listed[1]["group_id"], listed[2]["peer_id"]) == (
            carol.user_id, group["group_id"], bob.user_id)

        await read(a, direct_bob, 3)
        assert (await conversation(node, alice, direct_bob))["unread"] == 0
        assert (await conversation(node, bob, direct_bob))["peer_read_seq"] == 3

        await asyncio.sleep(0.01)
        await post(node, alice, "me too", group_id=group["group_id"])  # sending marks my conversation read
        listed = await conversations(node, alice)
        assert [c["conversation_id"] for c in listed] == [group["conversation_id"], direct_carol, direct_bob]
        assert [c["unread"] for c in listed] == [0, 1, 0]

    first = await conversations(node, alice, limit=2)
    rest = await conversations(node, alice, limit=2, before_ts=first[-1]["last_ts"])
    assert [c["conversation_id"] for c in first + rest] == [c["conversation_id"] for c in listed]
    one_by_one: list[dict[str, Any]] = []
    cursor: dict[str, Any] = {}
    while page := await conversations(node, alice, limit=1, **cursor):
        one_by_one += page
        cursor = {"before_ts": page[-1]["last_ts"], "before_id": page[-1]["conversation_id"]}
    assert one_by_one == listed
    assert await conversations(node, await new_user(node.url)) == []
    assert await api_error(node, alice, "GET", "/v1/conversations", params={"limit": 0}) == (400, "bad_request")


async def test_conversation_list_pages_through_conversations_active_in_the_same_millisecond(tmp_path: Path) -> None:
    async with started(tmp_path, clock=FrozenWallClock()) as node:
        alice = await new_user(node.url)
        for _ in range(3):
            await post(node, alice, "hi", to=await new_user(node.url))
        everything = await conversations(node, alice)
        assert len(everything) == 3
        paged: list[dict[str, Any]] = []
        cursor: dict[str, Any] = {}
        while page := await conversations(node, alice, limit=1, **cursor):
            paged += page
            cursor = {"before_ts": page[-1]["last_ts"], "before_id": page[-1]["conversation_id"]}
        assert paged == everything


# ------------------------------------------------------------------------------------------------- read receipts


async def test_read_receipt_reaches_the_peer_and_my_other_device(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    phone, laptop = await connect(node.url, alice, device="phone"), await connect(node.url, alice, device="laptop")
    b = await connect(node.url, bob, "tcp", node.tcp_port)
    async with phone, laptop, b:
        conversation_id = ""
        for i in range(3):
            conversation_id = (await b.send(alice.user_id, {"text": f"m{i}"})).conversation_id

        await read(phone, conversation_id, 2)  # a read receipt carries both cursors: reading moved delivered too
        assert await receipt(b) == (alice.user_id, 2, 2)
        assert await receipt(laptop) == (alice.user_id, 2, 2)
        assert await pushed(phone, f.Receipt) == []  # the reading device knows already

        await read(phone, conversation_id, 99)  # more than exists: clamped to the last message
        assert await receipt(b) == (alice.user_id, 3, 3)
        assert await receipt(laptop) == (alice.user_id, 3, 3)
        await read(phone, conversation_id, 99)  # nothing moved: done, and no receipt
        await read(laptop, conversation_id, 1)  # cursors never go back
        assert await pushed(b, f.Receipt) == []
        summary = await conversation(node, alice, conversation_id)
        assert (summary["read_seq"], summary["delivered_seq"], summary["unread"]) == (3, 3, 0)

        carol = await new_user(node.url)
        c = await connect(node.url, carol)
        async with c:
            with pytest.raises(RequestFailed) as denied:
                await read(c, conversation_id, 1)
            assert denied.value.code == "conversation_not_found"


async def test_read_over_http_reaches_every_device_and_the_peer(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    conversation_id = (await post(node, alice, "hello", to=bob))["conversation_id"]
    a, b = await connect(node.url, alice), await connect(node.url, bob)
    async with a, b:
        assert await api(node, bob, "POST", f"/v1/conversations/{conversation_id}/read", json={"seq": 1}) == {
            "ok": True}
        assert await receipt(a) == (bob.user_id, 1, 1)
        assert await receipt(b) == (bob.user_id, 1, 1)
    assert await api_error(node, bob, "POST", f"/v1/conversations/{conversation_id}/read", json={"seq": 0}) == (
        400, "bad_request")


async def test_delivered_receipts_come_from_recv_and_never_go_back(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    a, b = await connect(node.url, alice), await connect(node.url, bob)
    async with a, b:
        await a.send(bob.user_id, {"text": "one"})
        conversation_id = (await a.send(bob.user_id, {"text": "two"})).conversation_id
        await b.ack_received(conversation_id, 10)  # clamped to what exists
        assert await receipt(a) == (bob.user_id, 2, None)
        await b.ack_received(conversation_id, 1)
        await a.send(bob.user_id, {"text": "three"})
        await b.ack_received(conversation_id, 3)
        assert await receipt(a) == (bob.user_id, 3, None)  # the stale ack announced nothing
        assert (await conversation(node, alice, conversation_id))["peer_delivered_seq"] == 3
        await read(b, conversation_id, 2)  # reading behind what was delivered: the receipt says both as they are
        assert await receipt(a) == (bob.user_id, 3, 2)


async def test_offline_sender_finds_the_peer_cursors_in_the_conversation_list(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    for text in ("one", "two", "three"):  # alice only ever uses HTTP: she gets no receipt frames
        conversation_id = (await post(node, alice, text, to=bob))["conversation_id"]
    b = await connect(node.url, bob)
    async with b:
        assert [m.seq for m in await b.sync_all()] == [1, 2, 3]
        await b.ack_received(conversation_id, 3)
        await read(b, conversation_id, 2)

    mine = await conversation(node, alice, conversation_id)
    assert (mine["peer_id"], mine["peer_delivered_seq"], mine["peer_read_seq"]) == (bob.user_id, 3, 2)
    assert (mine["read_seq"], mine["unread"]) == (3, 0)
    theirs = await conversation(node, bob, conversation_id)
    assert (theirs["delivered_seq"], theirs["read_seq"], theirs["unread"], theirs["peer_read_seq"]) == (3, 2, 1, 3)


async def test_group_cursors_are_read_per_member_over_http(node: Node) -> None:
    alice, bob, carol, dan = [await new_user(node.url, p) for p in ("alice", "bob", "carol", "dan")]
    group = await make_group(node, carol, alice, bob)
    conversation_id = group["conversation_id"]
    for text in ("first", "second"):
        await post(node, carol, text, group_id=group["group_id"])  # seqs 2, 3 after the "created" notice
    c = await connect(node.url, carol)
    phone, laptop = await connect(node.url, bob, device="phone"), await connect(node.url, bob, device="laptop")
    a = await connect(node.url, alice)
    async with c, phone, laptop, a:
        await read(phone, conversation_id, 3)
        assert await receipt(laptop) == (bob.user_id, 3, 3)  # my own devices learn it live
        await a.ack_received(conversation_id, 2)
        await read(a, conversation_id, 1)  # its Done comes after the ack is committed too
        assert await pushed(c, f.Receipt) == []  # group members pull cursors; nothing is pushed to them

        members = (await api(node, carol, "GET", f"/v1/conversations/{conversation_id}/receipts"))["members"]
        cursors = {m["user_id"]: (m["delivered_seq"], m["read_seq"]) for m in members}
        assert cursors == {carol.user_id: (3, 3), bob.user_id: (3, 3), alice.user_id: (2, 1)}
        assert await api_error(node, dan, "GET", f"/v1/conversations/{conversation_id}/receipts") == (
            404, "conversation_not_found")
    assert (await conversation(node, alice, conversation_id))["unread"] == 2


# ------------------------------------------------------------------------------------------------- presence


async def test_presence_follows_a_contact_online_then_offline(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    await befriend(node, alice, bob)
    a = await connect(node.url, alice)
    async with a:
        phone = await connect(node.url, bob, device="phone")
        online = await presence(a)
        assert (online.user_id, online.online, online.last_seen) == (bob.user_id, True, 0)
        assert (await visible_presence(node, alice, bob))[bob.user_id]["online"] is True

        laptop = await connect(node.url, bob, device="laptop")  # a second device announces nothing
        await phone.close()  # ... nor does the first one leaving while another stays
        await laptop.close()
        offline = await presence(a)
        assert (offline.user_id, offline.online) == (bob.user_id, False) and offline.last_seen > 0
        assert await pushed(a, f.Presence) == []
    assert (await visible_presence(node, alice, bob))[bob.user_id] == {
        "user_id": bob.user_id, "online": False, "last_seen": offline.last_seen}


async def test_presence_reaches_a_one_to_one_peer_and_get_shows_only_visible_users(node: Node) -> None:
    alice, bob, stranger = [await new_user(node.url, p) for p in ("alice", "bob", "stranger")]
    await post(node, alice, "hello", to=bob)  # a 1:1 conversation makes them peers; no contact needed
    b = await connect(node.url, bob)
    async with b:
        a = await connect(node.url, alice)
        assert ((await presence(b)).user_id, True) == (alice.user_id, True)
        async with a:
            seen = await visible_presence(node, alice, bob, stranger, alice, 10**9)
            assert list(seen) == [bob.user_id, alice.user_id]  # yourself, yes; a stranger or no one, no
            assert seen[bob.user_id]["online"] is True
            assert await visible_presence(node, stranger, alice, bob) == {}
    for bad in ("abc", "", ",".join(map(str, range(1, 502)))):
        assert await api_error(node, alice, "GET", "/v1/presence", params={"user_ids": bad}) == (
            400, "bad_request")


async def test_a_blocked_user_sees_no_presence(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url, p) for p in ("alice", "bob", "carol")]
    await post(node, alice, "hello", to=bob)
    await befriend(node, bob, carol)  # carol witnesses every announcement of bob's
    await api(node, bob, "PUT", f"/v1/blocks/{alice.user_id}")
    a, c = await connect(node.url, alice), await connect(node.url, carol)
    async with a, c:
        b = await connect(node.url, bob)
        assert ((await presence(c)).user_id, True) == (bob.user_id, True)
        assert await pushed(a, f.Presence) == []
        assert await visible_presence(node, alice, bob) == {}
        await b.close()
        assert (await presence(c)).online is False
        assert await pushed(a, f.Presence) == []

        await api(node, bob, "DELETE", f"/v1/blocks/{alice.user_id}")
        assert list(await visible_presence(node, alice, bob)) == [bob.user_id]


async def test_a_burst_of_connects_announces_each_user_to_their_own_audience(node: Node) -> None:
    """Announcements made together share one read of their audiences: each still reaches exactly its own."""
    carol = await new_user(node.url, "carol")
    burst = [await new_user(node.url, f"u{i}") for i in range(12)]
    for i, user in enumerate(burst):
        await post(node, user, "hi", to=carol)
        if i % 3 == 0:
            await api(node, user, "PUT", f"/v1/blocks/{carol.user_id}")  # carol must not see these
    watched = {u.user_id for i, u in enumerate(burst) if i % 3}
    c = await connect(node.url, carol)
    async with c:
        conns = await asyncio.wait_for(asyncio.gather(*(connect(node.url, u) for u in burst)), WAIT)
        online = [await presence(c) for _ in watched]
        assert sorted(p.user_id for p in online) == sorted(watched) and all(p.online for p in online)
        await asyncio.wait_for(asyncio.gather(*(conn.close() for conn in conns)), WAIT)
        offline = [await presence(c) for _ in watched]
        assert sorted(p.user_id for p in offline) == sorted(watched)
        assert all(not p.online and p.last_seen > 0 for p in offline)
        assert await pushed(c, f.Presence) == []


# ------------------------------------------------------------------------------------------------- typing


async def test_typing_reaches_the_peer_once_per_interval_and_is_never_stored(tmp_path: Path) -> None:
    async with started(tmp_path, typing_interval=0.4) as node:
        alice, bob = await new_user(node.url), await new_user(node.url)
        a, b = await connect(node.url, alice), await connect(node.url, bob)
        async with a, b:
            conversation_id = (await a.send(bob.user_id, {"text": "hi"})).conversation_id
            await b.next_message(WAIT)

            await type_in(a, conversation_id)
            await type_in(a, conversation_id)  # within the interval: dropped
            typing = await b.next_event(f.Typing, WAIT)
            assert (typing.conversation_id, typing.user_id) == (conversation_id, alice.user_id)
            await no_typing_within(b, 0.3)
            await asyncio.sleep(0.15)  # now past the interval
            await type_in(a, conversation_id)
            assert (await b.next_event(f.Typing, WAIT)).user_id == alice.user_id
            assert await pushed(a, f.Typing) == []  # not echoed to the typist

            assert [m.seq for m in (await b.history(conversation_id)).msgs] == [1]
            assert await b.sync_all() == []
            assert (await conversation(node, bob, conversation_id))["last_seq"] == 1


async def test_typing_in_a_group_reaches_the_other_members(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url, p) for p in ("alice", "bob", "carol")]
    group = await make_group(node, alice, bob, carol)
    a, b, c = await connect(node.url, alice), await connect(node.url, bob), await connect(node.url, carol)
    async with a, b, c:
        await type_in(a, group["conversation_id"])
        for member in (b, c):
            typing = await member.next_event(f.Typing, WAIT)
            assert (typing.conversation_id, typing.user_id) == (group["conversation_id"], alice.user_id)
        assert await pushed(a, f.Typing) == []


async def test_typing_where_you_do_not_belong_is_an_error(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url, p) for p in ("alice", "bob", "carol")]
    direct = (await post(node, alice, "hello", to=bob))["conversation_id"]
    group = await make_group(node, alice, bob)
    b, c = await connect(node.url, bob), await connect(node.url, carol)
    async with b, c:
        for conversation_id, code in [(direct, "conversation_not_found"),
                                      (group["conversation_id"], "conversation_not_found"),
                                      ("x:1", "conversation_not_found"), ("d:1", "conversation_not_found"),
                                      ("g:abc", "bad_request")]:
            await type_in(c, conversation_id)
            assert (await c.next_event(f.Error, WAIT)).code == code
        assert await pushed(b, f.Typing) == []
