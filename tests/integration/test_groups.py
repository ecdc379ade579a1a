"""Groups over real sockets, each test a small story: create, chat (one seq per group, each member gets each message
once and in order), join and leave, remove, roles, transfer, rename, mute, mute-all, dissolve, the size limit, the
system notices of every change (live and through sync), and the group reads of the HTTP API.

The helpers here are shared with test_group_authz.py. Live delivery is judged on the raw frames a connection
received (``conn.events``), not on ``next_message()``, which would hide a duplicate or paper over a gap by syncing.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pica.client import Login, PicaConnection, ServerClosed
from pica.client.connection import RequestFailed
from pica.client.cursors import CursorTracker
from pica.protocol import frames as f
from tests.conftest import Node, connect, new_user, started

WAIT = 5.0  # upper bound for any one server reaction; the stories finish far sooner
TRANSPORTS = ("ws", "tcp")

# ------------------------------------------------------------------------------------------------ helpers: HTTP


async def call(node: Node, who: Login, method: str, path: str, json: Any = None,
               params: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One HTTP request as ``who``: (status, decoded JSON body)."""
    headers = {"Authorization": f"Bearer {who.token}"}
    async with aiohttp.ClientSession() as session, session.request(
        method, node.url + path, json=json, params=params, headers=headers
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def ok(node: Node, who: Login, method: str, path: str, json: Any = None,
             params: dict[str, Any] | None = None, status: int = 200) -> Any:
    got, body = await call(node, who, method, path, json, params)
    assert got == status, body
    return body


async def refused(node: Node, who: Login, method: str, path: str, json: Any = None,
                  params: dict[str, Any] | None = None) -> tuple[int, str]:
    """(status, error code) of a request that must fail."""
    got, body = await call(node, who, method, path, json, params)
    assert got >= 400, body
    return got, body["code"]


async def users(node: Node, count: int) -> list[Login]:
    return list(await asyncio.gather(*(new_user(node.url, f"u{i}") for i in range(count))))


async def create_group(node: Node, owner: Login, *members: Login, name: str = "team") -> dict[str, Any]:
    group: dict[str, Any] = await ok(node, owner, "POST", "/v1/groups",
                                     {"name": name, "members": [m.user_id for m in members]}, status=201)
    return group


async def http_send(node: Node, who: Login, group_id: int, text: str, client_msg_id: str | None = None,
                    **extra: Any) -> dict[str, Any]:
    sent: dict[str, Any] = await ok(node, who, "POST", "/v1/messages", {
        "group_id": group_id, "client_msg_id": client_msg_id or uuid.uuid4().hex, "body": {"text": text}, **extra})
    return sent


async def history(node: Node, who: Login, conversation_id: str, **params: Any) -> list[dict[str, Any]]:
    page = await ok(node, who, "GET", f"/v1/conversations/{conversation_id}/messages", params={"limit": 100, **params})
    messages: list[dict[str, Any]] = page["messages"]
    return messages


async def search(node: Node, who: Login, query: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await ok(node, who, "GET", "/v1/search", params={"q": query, **params}))["messages"]
    return found


async def members(node: Node, who: Login, group_id: int) -> dict[int, dict[str, Any]]:
    listed = (await ok(node, who, "GET", f"/v1/groups/{group_id}/members"))["members"]
    return {m["user_id"]: m for m in listed}


# ------------------------------------------------------------------------------------------------ helpers: sockets


@contextlib.asynccontextmanager
async def online(node: Node, *who: Login, first: str = "ws") -> AsyncIterator[list[PicaConnection]]:
    """One connection per login, alternating WebSocket and TCP starting with ``first``."""
    order = TRANSPORTS if first == TRANSPORTS[0] else TRANSPORTS[::-1]
    conns: list[PicaConnection] = []
    try:
        for index, login in enumerate(who):
            conns.append(await connect(node.url, login, order[index % 2], node.tcp_port))
        yield conns
    finally:
        for conn in conns:
            await conn.close()


async def gsend(conn: PicaConnection, group_id: int, text: str, client_msg_id: str | None = None) -> f.Sent:
    """Send to a group over the socket (the connection counts the message as this device's own)."""
    ack: f.Sent = await conn.request(f.Send(group_id=group_id, client_msg_id=client_msg_id or uuid.uuid4().hex,
                                            body={"text": text}))
    return ack


async def socket_error(request: Any) -> tuple[str, str]:
    """(code, message) of a socket request that must fail."""
    with pytest.raises(RequestFailed) as failed:
        await request
    return failed.value.code, failed.value.message


async def frames(conn: PicaConnection, conversation_id: str, count: int,
                 kind: type[Any] | tuple[type[Any], ...] = f.Msg) -> list[Any]:
    """The next ``count`` pushed frames of ``kind`` for a conversation, as they came off the wire (other frames
    are dropped)."""
    got: list[Any] = []
    async with asyncio.timeout(WAIT):
        while len(got) < count:
            event = await conn.events.get()
            if isinstance(event, ServerClosed):
                raise event
            if isinstance(event, kind) and event.conversation_id == conversation_id:
                got.append(event)
    return got


async def rest(conn: PicaConnection, conversation_id: str, kind: type[Any] = f.Msg) -> list[Any]:
    """Frames of ``kind`` for the conversation pushed but not yet taken. A ping round trip first: the server writes
    a connection's frames in order, so whatever it pushed before answering the ping is in by then."""
    await conn.ping()
    left = []
    while not conn.events.empty():
        event = conn.events.get_nowait()
        if isinstance(event, kind) and getattr(event, "conversation_id", None) == conversation_id:
            left.append(event)
    return left


async def receives(conn: PicaConnection, conversation_id: str, seqs: list[int]) -> list[f.Msg]:
    """The connection gets exactly these seqs of the conversation live, in this order, once each."""
    got = await frames(conn, conversation_id, len(seqs))
    assert [m.seq for m in got] == seqs
    assert await rest(conn, conversation_id) == []
    return got


def event_of(msg: f.Msg | dict[str, Any]) -> str | None:
    body = msg.body if isinstance(msg, f.Msg) else msg["body"]
    system = body.get("system")
    return None if system is None else str(system["event"])


def seqs_of(messages: list[Any]) -> list[int]:
    return [m.seq if isinstance(m, f.Msg) else m["seq"] for m in messages]


# ------------------------------------------------------------------------------------------------ chat


@pytest.mark.parametrize("first", TRANSPORTS)
async def test_members_chat_with_one_seq_and_each_message_once_in_order(node: Node, first: str) -> None:
    owner, bob, carol = await users(node, 3)
    async with online(node, owner, bob, carol, owner, first=first) as (phone, b, c, laptop):
        status, group = await call(node, owner, "POST", "/v1/groups",
                                   {"name": "team", "members": [bob.user_id, carol.user_id]})
        assert status == 201
        gid, cid = group["group_id"], group["conversation_id"]
        assert cid == f"g:{gid}"
        assert (group["name"], group["owner_id"], group["member_count"]) == ("team", owner.user_id, 3)
        assert (group["muted_all"], group["dissolved"]) == (False, False)
        everyone = [owner.user_id, bob.user_id, carol.user_id]
        for conn in (phone, b, c, laptop):
            (created,) = await receives(conn, cid, [1])
            assert created.body == {"system": {"event": "created", "by": owner.user_id, "name": "team",
                                               "user_ids": everyone}}

        # Everyone talks at once: one seq per group, no gaps, and each device gets every message it did not send.
        talkers = [(conn, i) for i in range(5) for conn in (phone, b, c)]
        acks = await asyncio.gather(*(gsend(conn, gid, f"{conn.user_id} says {i}") for conn, i in talkers))
        assert sorted(a.seq for a in acks) == list(range(2, 17))
        assert {a.conversation_id for a in acks} == {cid}
        sent_by = {conn: {a.seq for (c2, _), a in zip(talkers, acks, strict=True) if c2 is conn}
                   for conn in (phone, b, c, laptop)}
        by_seq = {a.seq: a.client_msg_id for a in acks}
        for conn in (phone, b, c, laptop):
            expected = [s for s in range(2, 17) if s not in sent_by[conn]]
            got = await receives(conn, cid, expected)
            assert [m.client_msg_id for m in got] == [by_seq[s] for s in expected]
        assert len(sent_by[laptop]) == 0  # the owner's second device saw the phone's messages too

        # Over HTTP: no sending connection to leave out, so all the sender's devices get it; a retry changes nothing.
        sent = await http_send(node, bob, gid, "via http", client_msg_id="h1")
        assert (sent["conversation_id"], sent["seq"], sent["duplicate"]) == (cid, 17, False)
        for conn in (phone, b, c, laptop):
            (msg,) = await receives(conn, cid, [17])
            assert (msg.sender, msg.body) == (bob.user_id, {"text": "via http"})
        again = await http_send(node, bob, gid, "via http", client_msg_id="h1")
        assert (again["seq"], again["duplicate"]) == (17, True)
        for conn in (phone, b, c, laptop):
            # At most a copy of the stored message (protocol 8.2, pushed again in the background), nothing new.
            assert {(m.seq, m.client_msg_id) for m in await rest(conn, cid)} <= {(17, "h1")}

    stored = await history(node, carol, cid)
    assert seqs_of(stored) == list(range(1, 18))
    assert [m["client_msg_id"] for m in stored[1:16]] == [by_seq[s] for s in range(2, 17)]


@pytest.mark.parametrize("first", TRANSPORTS)
async def test_sync_after_reconnect_and_on_other_devices(node: Node, first: str) -> None:
    owner, bob = await users(node, 2)
    other = TRANSPORTS[first == "ws"]
    async with online(node, owner, first=first) as (phone,):
        group = await create_group(node, owner, bob)
        gid, cid = group["group_id"], group["conversation_id"]
        await receives(phone, cid, [1])  # the notice's fan-out is over: devices connecting now must sync for it
        async with online(node, bob, owner, first=other) as (b, laptop):
            for conn in (b, laptop):
                assert seqs_of(await conn.sync_all()) == [1]
            await gsend(phone, gid, "one")
            await receives(b, cid, [2])
            await receives(laptop, cid, [2])
            bob_cursors, laptop_cursors = b.cursors.snapshot(), laptop.cursors.snapshot()
            assert bob_cursors[cid] == laptop_cursors[cid] == 2
        for i in range(5):  # bob's device and the owner's laptop are offline
            await gsend(phone, gid, f"while away {i}")

    async with online(node, bob, owner, bob, first=other) as (b2, laptop2, tablet):
        b2.cursors, laptop2.cursors = CursorTracker(bob_cursors), CursorTracker(laptop_cursors)
        for conn in (b2, laptop2):  # each resumes from its cursor, in small pages, and gets each message once
            missed = await conn.sync_all(limit=2)
            assert seqs_of(missed) == [3, 4, 5, 6, 7]
            assert [m.body["text"] for m in missed] == [f"while away {i}" for i in range(5)]
            assert {m.sender for m in missed} == {owner.user_id}
        everything = await tablet.sync_all()  # a device of bob's that never synced gets the whole timeline
        assert seqs_of(everything) == list(range(1, 8))
        assert event_of(everything[0]) == "created"
        for conn in (b2, laptop2, tablet):
            assert await conn.sync_all() == []


# ------------------------------------------------------------------------------------------------ membership


@pytest.mark.parametrize("first", TRANSPORTS)
async def test_added_member_sees_the_timeline_from_their_join_notice_on(node: Node, first: str) -> None:
    owner, bob, carol = await users(node, 3)
    async with online(node, owner, bob, carol, first=first) as (a, b, c):
        group = await create_group(node, owner, bob)
        gid, cid = group["group_id"], group["conversation_id"]
        await gsend(a, gid, "before carol alpha")
        await gsend(b, gid, "also before carol")
        await receives(a, cid, [1, 3])
        await receives(b, cid, [1, 2])
        assert await rest(c, cid) == []

        added = await ok(node, owner, "POST", f"/v1/groups/{gid}/members", {"user_ids": [carol.user_id]})
        assert added["member_count"] == 3
        for conn in (a, b, c):
            (notice,) = await receives(conn, cid, [4])
            assert notice.body == {"system": {"event": "members_added", "by": owner.user_id,
                                              "user_ids": [carol.user_id]}}
        await gsend(c, gid, "hello from carol bravo")
        await receives(a, cid, [5])
        await receives(b, cid, [5])

        assert seqs_of((await c.sync({})).msgs) == [4, 5]
        assert seqs_of((await c.history(cid)).msgs) == [4, 5]
        assert seqs_of((await c.history(cid, after=0)).msgs) == [4, 5]
        assert (await c.history(cid, before=4)).msgs == []
    assert seqs_of(await history(node, carol, cid)) == [4, 5]
    assert await history(node, carol, cid, before_seq=4) == []
    assert await search(node, carol, "alpha") == []
    assert await refused(node, carol, "DELETE", f"/v1/conversations/{cid}/messages/2") == (404, "message_not_found")
    assert seqs_of(await search(node, owner, "alpha")) == [2]
    assert seqs_of(await search(node, carol, "bravo")) == [5]
    listed = await members(node, carol, gid)
    assert (listed[carol.user_id]["role"], listed[carol.user_id]["joined_seq"]) == ("member", 3)
    assert listed[owner.user_id]["joined_seq"] == 0


async def test_member_who_left_and_was_added_again_sees_only_the_new_timeline(node: Node) -> None:
    owner, bob = await users(node, 2)
    group = await create_group(node, owner, bob)
    gid, cid = group["group_id"], group["conversation_id"]
    await http_send(node, bob, gid, "my first life")  # 2
    await ok(node, bob, "POST", f"/v1/groups/{gid}/leave")  # 3
    await http_send(node, owner, gid, "said while bob was away")  # 4
    await ok(node, owner, "POST", f"/v1/groups/{gid}/members", {"user_ids": [bob.user_id]})  # 5
    await http_send(node, owner, gid, "welcome back")  # 6
    assert [event_of(m) for m in await history(node, bob, cid)] == ["members_added", None]
    async with online(node, bob) as (b,):
        assert seqs_of((await b.sync({})).msgs) == [5, 6]
    assert await search(node, bob, "away") == []
    assert await search(node, bob, "life") == []


@pytest.mark.parametrize("first", TRANSPORTS)
async def test_member_leaves(node: Node, first: str) -> None:
    owner, bob, carol = await users(node, 3)
    async with online(node, owner, bob, carol, first=first) as (a, b, c):
        group = await create_group(node, owner, bob, carol)
        gid, cid = group["group_id"], group["conversation_id"]
        for conn in (a, b, c):
            await receives(conn, cid, [1])
        left = await ok(node, bob, "POST", f"/v1/groups/{gid}/leave")
        assert left["member_count"] == 2
        for conn in (a, b, c):  # bob sees the notice of his own leaving, and nothing after it
            (notice,) = await receives(conn, cid, [2])
            assert notice.body == {"system": {"event": "member_left", "by": bob.user_id, "user_ids": [bob.user_id]}}
        await gsend(a, gid, "after bob left")
        await receives(c, cid, [3])
        assert await rest(b, cid) == []
        assert (await ok(node, bob, "GET", "/v1/groups"))["groups"] == []
        assert await refused(node, owner, "POST", f"/v1/groups/{gid}/leave") == (403, "forbidden")
        # DELETE on one's own membership is leaving too.
        await ok(node, carol, "DELETE", f"/v1/groups/{gid}/members/{carol.user_id}")
        (notice,) = await receives(a, cid, [4])
        assert event_of(notice) == "member_left" and notice.sender == carol.user_id
    assert set(await members(node, owner, gid)) == {owner.user_id}


@pytest.mark.parametrize("first", TRANSPORTS)
async def test_removed_member_stops_receiving_at_once(node: Node, first: str) -> None:
    owner, bob, carol = await users(node, 3)
    async with online(node, owner, bob, carol, first=first) as (a, b, c):
        group = await create_group(node, owner, bob, carol)
        gid, cid = group["group_id"], group["conversation_id"]
        await gsend(a, gid, "before")
        await receives(a, cid, [1])
        for conn in (b, c):
            await receives(conn, cid, [1, 2])
        await ok(node, owner, "DELETE", f"/v1/groups/{gid}/members/{bob.user_id}")
        own = f"u:{bob.user_id}"
        (notice, told) = await frames(b, cid, 1) + await frames(b, own, 1)  # in this order
        assert (told.seq, told.body["system"]["event"], told.body["system"]["seq"]) == (1, "removed_from_group", 3)
        for conn in (a, b, c):  # the removed member sees the notice of the removal, live
            if conn is not b:
                (notice,) = await receives(conn, cid, [3])
            assert notice.body == {"system": {"event": "members_removed", "by": owner.user_id,
                                              "user_ids": [bob.user_id]}}
        await gsend(a, gid, "after")
        await receives(c, cid, [4])
        assert await rest(b, cid) == []  # and nothing after it
        assert [m for m in (await b.sync({})).msgs if m.conversation_id == cid] == []
        assert (await b.sync({cid: 3, own: 1})).msgs == []
        assert await socket_error(b.history(cid, after=3)) == ("conversation_not_found", "conversation not found")
    assert await refused(node, bob, "GET", f"/v1/conversations/{cid}/messages") == (404, "conversation_not_found")


# ------------------------------------------------------------------------------------------------ roles


async def test_roles_owner_makes_admins_admins_manage_members(node: Node) -> None:
    owner, bob, carol, dave, erin = await users(node, 5)
    group = await create_group(node, owner, bob, carol, erin)
    gid, cid = group["group_id"], group["conversation_id"]
    g = f"/v1/groups/{gid}"

    assert await refused(node, carol, "POST", f"{g}/members", {"user_ids": [dave.user_id]}) == (403, "forbidden")
    assert await refused(node, carol, "DELETE", f"{g}/members/{bob.user_id}") == (403, "forbidden")
    assert await refused(node, carol, "POST", f"{g}/members/{bob.user_id}/role", {"role": "admin"}) == (
        403, "forbidden")
    for admin in (bob, erin):
        await ok(node, owner, "POST", f"{g}/members/{admin.user_id}/role", {"role": "admin"})
    roles = {uid: m["role"] for uid, m in (await members(node, carol, gid)).items()}
    assert roles == {owner.user_id: "owner", bob.user_id: "admin", erin.user_id: "admin", carol.user_id: "member"}

    assert await refused(node, bob, "POST", f"{g}/members/{carol.user_id}/role", {"role": "admin"}) == (
        403, "forbidden")  # only the owner hands out roles
    assert await refused(node, owner, "POST", f"{g}/members/{carol.user_id}/role", {"role": "king"}) == (
        400, "bad_request")
    await ok(node, bob, "POST", f"{g}/members", {"user_ids": [dave.user_id, carol.user_id]})  # an admin adds;
    assert await refused(node, bob, "POST", f"{g}/members", {"user_ids": [dave.user_id]}) == (  # members are skipped
        400, "bad_request")  # and someone must be new
    await ok(node, bob, "DELETE", f"{g}/members/{carol.user_id}")  # and removes a member
    assert await refused(node, bob, "DELETE", f"{g}/members/{erin.user_id}") == (403, "forbidden")  # not an admin
    assert await refused(node, bob, "DELETE", f"{g}/members/{owner.user_id}") == (403, "forbidden")  # nor the owner
    await ok(node, owner, "POST", f"{g}/members/{erin.user_id}/role", {"role": "member"})
    await ok(node, bob, "DELETE", f"{g}/members/{erin.user_id}")  # demoted, erin can now be removed by an admin

    assert set(await members(node, owner, gid)) == {owner.user_id, bob.user_id, dave.user_id}
    timeline = await history(node, owner, cid)
    assert [event_of(m) for m in timeline] == ["created", "role_changed", "role_changed", "members_added",
                                               "members_removed", "role_changed", "members_removed"]
    assert timeline[1]["body"]["system"] == {"event": "role_changed", "by": owner.user_id, "role": "admin",
                                             "user_ids": [bob.user_id]}
    assert timeline[3]["body"]["system"]["user_ids"] == [dave.user_id]  # carol was a member already
    assert [m["sender"] for m in timeline[3:5]] == [bob.user_id, bob.user_id]


async def test_transfer_ownership_makes_the_old_owner_an_admin(node: Node) -> None:
    owner, bob, carol = await users(node, 3)
    group = await create_group(node, owner, bob, carol)
    gid, cid = group["group_id"], group["conversation_id"]
    g = f"/v1/groups/{gid}"
    assert await refused(node, bob, "POST", f"{g}/transfer", {"user_id": bob.user_id}) == (403, "forbidden")
    outsider = (await users(node, 1))[0]
    assert await refused(node, owner, "POST", f"{g}/transfer", {"user_id": outsider.user_id}) == (400, "bad_request")

    await ok(node, owner, "POST", f"{g}/members/{bob.user_id}/mute", {"muted": True})
    moved = await ok(node, owner, "POST", f"{g}/transfer", {"user_id": bob.user_id})
    assert moved["owner_id"] == bob.user_id
    listed = await members(node, carol, gid)
    assert {uid: m["role"] for uid, m in listed.items()} == {
        owner.user_id: "admin", bob.user_id: "owner", carol.user_id: "member"}
    assert listed[bob.user_id]["muted"] is False  # the new owner is unmuted
    assert (await history(node, carol, cid))[-1]["body"] == {
        "system": {"event": "owner_changed", "by": owner.user_id, "user_id": bob.user_id}}

    assert await refused(node, owner, "DELETE", g) == (403, "forbidden")  # the old owner may no longer dissolve
    assert await refused(node, owner, "POST", f"{g}/transfer", {"user_id": carol.user_id}) == (403, "forbidden")
    assert await refused(node, owner, "DELETE", f"{g}/members/{bob.user_id}") == (403, "forbidden")
    await ok(node, owner, "DELETE", f"{g}/members/{carol.user_id}")  # still an admin
    await ok(node, bob, "DELETE", f"{g}/members/{owner.user_id}")  # the new owner outranks the old one
    assert set(await members(node, bob, gid)) == {bob.user_id}


# ------------------------------------------------------------------------------------------------ group settings


async def test_rename_puts_a_notice_in_the_timeline(node: Node) -> None:
    owner, bob = await users(node, 2)
    async with online(node, owner, bob) as (a, b):
        group = await create_group(node, owner, bob, name="before")
        gid, cid = group["group_id"], group["conversation_id"]
        renamed = await ok(node, owner, "PATCH", f"/v1/groups/{gid}", {"name": "  after  "})
        assert renamed["name"] == "after"
        for conn in (a, b):
            (_, notice) = await receives(conn, cid, [1, 2])
            assert notice.body == {"system": {"event": "renamed", "by": owner.user_id, "name": "after"}}
        assert await refused(node, bob, "PATCH", f"/v1/groups/{gid}", {"name": "mine"}) == (403, "forbidden")
        both = await ok(node, owner, "PATCH", f"/v1/groups/{gid}", {"muted_all": True, "name": "both"})
        assert (both["name"], both["muted_all"]) == ("both", True)
        assert [event_of(m) for m in await receives(b, cid, [3, 4])] == ["renamed", "group_muted"]
        await ok(node, owner, "PATCH", f"/v1/groups/{gid}", {"muted_all": False, "name": "after"})
        await receives(b, cid, [5, 6])
        for bad in ({"name": " "}, {"name": "x" * 101}, {"name": 5}, {}):
            assert await refused(node, owner, "PATCH", f"/v1/groups/{gid}", bad) == (400, "bad_request")
        assert await rest(b, cid) == []
    assert (await ok(node, bob, "GET", f"/v1/groups/{gid}"))["name"] == "after"
    conversations = (await ok(node, bob, "GET", "/v1/conversations"))["conversations"]
    assert [(c["conversation_id"], c["kind"], c["name"], c["group_id"]) for c in conversations] == [
        (cid, "group", "after", gid)]


@pytest.mark.parametrize("first", TRANSPORTS)
async def test_muted_member_cannot_send_until_unmuted(node: Node, first: str) -> None:
    owner, bob, carol = await users(node, 3)
    async with online(node, owner, carol, first=first) as (a, c):
        group = await create_group(node, owner, bob, carol)
        gid, cid = group["group_id"], group["conversation_id"]
        g = f"/v1/groups/{gid}"
        await receives(a, cid, [1])
        assert await refused(node, bob, "POST", f"{g}/members/{carol.user_id}/mute", {"muted": True}) == (
            403, "forbidden")
        await ok(node, owner, "POST", f"{g}/members/{carol.user_id}/mute", {"muted": True})
        (notice,) = await frames(a, cid, 1)
        assert notice.body == {"system": {"event": "muted", "by": owner.user_id, "user_ids": [carol.user_id]}}
        assert (await members(node, carol, gid))[carol.user_id]["muted"] is True

        assert await socket_error(gsend(c, gid, "let me speak")) == ("forbidden", "you are muted in this group")
        assert await refused(node, carol, "POST", "/v1/messages", {
            "group_id": gid, "client_msg_id": "m1", "body": {"text": "please"}}) == (403, "forbidden")
        assert await rest(a, cid) == []

        await ok(node, owner, "POST", f"{g}/members/{bob.user_id}/role", {"role": "admin"})
        assert await refused(node, bob, "POST", f"{g}/members/{owner.user_id}/mute", {"muted": True}) == (
            403, "forbidden")  # an admin mutes only those ranked below
        await ok(node, bob, "POST", f"{g}/members/{carol.user_id}/mute", {"muted": False})
        ack = await gsend(c, gid, "thank you")
        (_, unmuted, message) = await frames(a, cid, 3)
        assert (event_of(unmuted), unmuted.sender) == ("unmuted", bob.user_id)
        assert (message.seq, message.body) == (ack.seq, {"text": "thank you"})
    assert [event_of(m) for m in await history(node, owner, cid)] == [
        "created", "muted", "role_changed", "unmuted", None]


@pytest.mark.parametrize("first", TRANSPORTS)
async def test_mute_all_lets_only_owner_and_admins_speak(node: Node, first: str) -> None:
    owner, bob, carol = await users(node, 3)
    async with online(node, owner, bob, carol, first=first) as (a, b, c):
        group = await create_group(node, owner, bob, carol)
        gid, cid = group["group_id"], group["conversation_id"]
        g = f"/v1/groups/{gid}"
        await ok(node, owner, "POST", f"{g}/members/{bob.user_id}/role", {"role": "admin"})
        assert await refused(node, carol, "PATCH", g, {"muted_all": True}) == (403, "forbidden")
        muted = await ok(node, bob, "PATCH", g, {"muted_all": True})
        assert muted["muted_all"] is True
        assert await socket_error(gsend(c, gid, "hello?")) == ("forbidden", "you are muted in this group")
        assert await refused(node, carol, "POST", "/v1/messages", {
            "group_id": gid, "client_msg_id": "m1", "body": {"text": "hello?"}}) == (403, "forbidden")
        await gsend(a, gid, "owner speaks")
        await gsend(b, gid, "admin speaks")
        await ok(node, owner, "PATCH", g, {"muted_all": False})
        await gsend(c, gid, "member speaks again")
        got = await frames(c, cid, 6)  # not its own message: the sending connection has it from the ack
        assert [event_of(m) or m.body["text"] for m in got] == [
            "created", "role_changed", "group_muted", "owner speaks", "admin speaks", "group_unmuted"]
        assert await rest(c, cid) == []
    assert (await ok(node, carol, "GET", g))["muted_all"] is False
    assert len(await history(node, carol, cid)) == 7


@pytest.mark.parametrize("first", TRANSPORTS)
async def test_dissolved_group_is_read_only(node: Node, first: str) -> None:
    owner, bob = await users(node, 2)
    async with online(node, owner, bob, first=first) as (a, b):
        group = await create_group(node, owner, bob)
        gid, cid = group["group_id"], group["conversation_id"]
        await gsend(b, gid, "keep me")
        assert await refused(node, bob, "DELETE", f"/v1/groups/{gid}") == (403, "forbidden")
        dissolved = await ok(node, owner, "DELETE", f"/v1/groups/{gid}")
        assert dissolved["dissolved"] is True
        for conn, seqs in ((a, [1, 2, 3]), (b, [1, 3])):
            assert event_of((await receives(conn, cid, seqs))[-1]) == "dissolved"

        for conn in (a, b):
            assert await socket_error(gsend(conn, gid, "anyone?")) == ("forbidden", "the group was dissolved")
        assert await refused(node, owner, "POST", "/v1/messages", {
            "group_id": gid, "client_msg_id": "late", "body": {"text": "anyone?"}}) == (403, "forbidden")
        for method, path, body in [("PATCH", "", {"name": "again"}), ("POST", "/members", {"user_ids": [1]}),
                                   ("POST", "/leave", None), ("DELETE", "", None)]:
            assert await refused(node, owner, method, f"/v1/groups/{gid}{path}", body) == (403, "forbidden")

        assert seqs_of((await b.history(cid)).msgs) == [1, 2, 3]  # members still read it
        recall = f.Recall(conversation_id=cid, seq=2, client_msg_id="r1")
        assert await socket_error(b.request(recall)) == ("forbidden", "the group was dissolved")
        await b.request(f.Delete(conversation_id=cid, seq=2))  # deleting for oneself still works
    assert seqs_of(await search(node, owner, "keep")) == [2]
    assert (await history(node, bob, cid))[1]["body"] == {"deleted": True}
    assert {m["user_id"] for m in (await ok(node, bob, "GET", f"/v1/conversations/{cid}/receipts"))["members"]} == {
        owner.user_id, bob.user_id}
    assert [event_of(m) or m["body"]["text"] for m in await history(node, owner, cid)] == [
        "created", "keep me", "dissolved"]
    assert (await ok(node, bob, "GET", f"/v1/groups/{gid}"))["dissolved"] is True


@pytest.fixture
async def small_node(tmp_path: Path) -> AsyncIterator[Node]:
    async with started(tmp_path, max_group_members=5) as node:
        yield node


async def test_group_size_limit(small_node: Node) -> None:
    node = small_node
    owner, *others = await users(node, 6)
    assert await refused(node, owner, "POST", "/v1/groups", {
        "name": "six", "members": [u.user_id for u in others]}) == (400, "bad_request")
    five = await create_group(node, owner, *others[:4], others[0], name="five")  # a repeated id counts once
    assert five["member_count"] == 5
    assert await refused(node, owner, "POST", f"/v1/groups/{five['group_id']}/members", {
        "user_ids": [others[4].user_id]}) == (400, "bad_request")

    group = await create_group(node, owner, *others[:3])
    g = f"/v1/groups/{group['group_id']}/members"
    assert await refused(node, owner, "POST", g, {"user_ids": [others[3].user_id, others[4].user_id]}) == (
        400, "bad_request")
    assert (await ok(node, owner, "POST", g, {"user_ids": [others[3].user_id]}))["member_count"] == 5
    assert await refused(node, owner, "POST", g, {"user_ids": [others[4].user_id]}) == (400, "bad_request")
    assert [event_of(m) for m in await history(node, owner, group["conversation_id"])] == [
        "created", "members_added"]


# ------------------------------------------------------------------------------------------------ notices


async def test_system_notices_arrive_in_seq_order_live_and_through_sync(node: Node) -> None:
    owner, bob, carol, dave, watcher = await users(node, 5)
    async with online(node, watcher) as (live,):
        group = await create_group(node, owner, bob, carol, watcher)
        gid, cid = group["group_id"], group["conversation_id"]
        g = f"/v1/groups/{gid}"
        steps: list[tuple[Login, str, str, Any]] = [
            (owner, "POST", f"{g}/members", {"user_ids": [dave.user_id]}),
            (owner, "POST", f"{g}/members/{bob.user_id}/role", {"role": "admin"}),
            (bob, "POST", f"{g}/members/{carol.user_id}/mute", {"muted": True}),
            (bob, "POST", f"{g}/members/{carol.user_id}/mute", {"muted": False}),
            (owner, "PATCH", g, {"muted_all": True}),
            (owner, "PATCH", g, {"muted_all": False}),
            (bob, "PATCH", g, {"name": "renamed"}),
            (bob, "DELETE", f"{g}/members/{carol.user_id}", None),
            (dave, "POST", f"{g}/leave", None),
            (owner, "POST", f"{g}/transfer", {"user_id": bob.user_id}),
            (bob, "DELETE", g, None),
        ]
        for who, method, path, body in steps:
            await ok(node, who, method, path, body)
        got = await frames(live, cid, len(steps) + 1)
        assert await rest(live, cid) == []
    expected = ["created", "members_added", "role_changed", "muted", "unmuted", "group_muted", "group_unmuted",
                "renamed", "members_removed", "member_left", "owner_changed", "dissolved"]
    assert [(m.seq, event_of(m)) for m in got] == list(enumerate(expected, start=1))
    assert [m.sender for m in got] == [owner.user_id] + [who.user_id for who, *_ in steps]
    assert all(m.client_msg_id.startswith("~") for m in got)  # server-made ids, never a client's

    async with online(node, watcher, first="tcp") as (second_device,):
        assert await second_device.sync_all(limit=5) == got
    assert [(m["seq"], event_of(m)) for m in await history(node, bob, cid)] == list(enumerate(expected, start=1))


# ------------------------------------------------------------------------------------------------ HTTP reads


async def test_group_list_details_and_members(node: Node) -> None:
    owner, bob, carol = await users(node, 3)
    created = await create_group(node, owner, bob, name="first")
    assert created["invited"] == []  # bob's default (group_add "everyone") lets anyone add him
    first = {key: value for key, value in created.items() if key != "invited"}
    second = await create_group(node, bob, carol, name="second")
    alone = await create_group(node, carol, name="alone")
    assert (alone["member_count"], alone["owner_id"]) == (1, carol.user_id)

    def ids(listing: dict[str, Any]) -> list[int]:
        return [g["group_id"] for g in listing["groups"]]

    assert ids(await ok(node, owner, "GET", "/v1/groups")) == [first["group_id"]]
    assert ids(await ok(node, bob, "GET", "/v1/groups")) == [first["group_id"], second["group_id"]]
    assert ids(await ok(node, carol, "GET", "/v1/groups")) == [second["group_id"], alone["group_id"]]
    assert (await ok(node, bob, "GET", "/v1/groups"))["groups"][0] == first
    assert await ok(node, bob, "GET", f"/v1/groups/{first['group_id']}") == first
    assert set(first) == {"group_id", "conversation_id", "name", "owner_id", "muted_all", "dissolved", "created_at",
                          "member_count"}

    listed = (await ok(node, bob, "GET", f"/v1/groups/{second['group_id']}/members"))["members"]
    usernames = [m.pop("username") for m in listed]  # each member's handle (tests/api checks it matches the user)
    assert all(isinstance(name, str) and name.startswith("u") for name in usernames)
    expected: list[dict[str, Any]] = [
        {"user_id": bob.user_id, "role": "owner", "muted": False, "joined_seq": 0},
        {"user_id": carol.user_id, "role": "member", "muted": False, "joined_seq": 0},
    ]
    assert listed == sorted(expected, key=lambda m: m["user_id"])


async def test_create_group_rejects_bad_input(node: Node) -> None:
    owner, bob = await users(node, 2)
    for body, expected in [
        ({"members": [bob.user_id]}, (400, "bad_request")),  # no name
        ({"name": "", "members": [bob.user_id]}, (400, "bad_request")),
        ({"name": "x", "members": bob.user_id}, (400, "bad_request")),
        ({"name": "x", "members": [True]}, (400, "bad_request")),
        ({"name": "x", "members": [bob.user_id + 1000]}, (404, "user_not_found")),
    ]:
        assert await refused(node, owner, "POST", "/v1/groups", body) == expected
    assert (await ok(node, owner, "GET", "/v1/groups"))["groups"] == []
