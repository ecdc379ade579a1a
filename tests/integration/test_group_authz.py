"""Negative authorization for groups: a user who never was a member, and one who was removed, can do nothing with the
group on any path (socket or HTTP): not send, sync, read history, search, read or write receipts, list members, see
the group, type, recall, edit or delete. Every refusal is byte-identical to the one for a group that does not exist.
A client-supplied sender or time is ignored."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest

from pica.client import Login, PicaConnection
from pica.protocol import frames as f
from pica.protocol.framing import frame_bytes
from tests.conftest import Node, connect
from tests.integration.test_groups import (
    TRANSPORTS,
    create_group,
    frames,
    history,
    http_send,
    ok,
    online,
    refused,
    rest,
    search,
    seqs_of,
    socket_error,
    users,
)

WORDS = ("alpha", "bravo", "charlie")


@dataclass
class Scene:
    """A group of ``owner`` and ``member``; ``intruder`` never joined it, or was in it and has been removed."""

    owner: Login
    member: Login
    intruder: Login
    group_id: int
    conversation_id: str
    authored: int
    """Seq of "bravo": the intruder's own message when they were a member, else the member's."""
    last_seq: int
    removed: bool = False

    @property
    def missing_group(self) -> int:
        return self.group_id + 1000

    @property
    def missing_conversation(self) -> str:
        return f"g:{self.missing_group}"


@pytest.fixture(params=["non_member", "removed"])
async def scene(node: Node, request: pytest.FixtureRequest) -> Scene:
    owner, member, intruder = await users(node, 3)
    removed = request.param == "removed"
    async with online(node, owner) as (watch,):
        group = await create_group(node, owner, member, *([intruder] if removed else []))  # seq 1
        gid = group["group_id"]
        await http_send(node, owner, gid, "alpha")  # 2
        authored = await http_send(node, intruder if removed else member, gid, "bravo")  # 3
        if removed:
            await ok(node, owner, "DELETE", f"/v1/groups/{gid}/members/{intruder.user_id}")  # 4
        last = await http_send(node, owner, gid, "charlie")
        # Every live delivery of the setup is over: connections the tests open now see only what they cause.
        assert seqs_of(await frames(watch, group["conversation_id"], last["seq"])) == list(range(1, last["seq"] + 1))
    return Scene(owner, member, intruder, gid, group["conversation_id"], authored["seq"], last["seq"], removed)


async def timeline_unchanged(node: Node, scene: Scene) -> None:
    stored = await history(node, scene.owner, scene.conversation_id)
    assert seqs_of(stored) == list(range(1, scene.last_seq + 1))
    assert stored[scene.authored - 1]["body"] == {"text": "bravo"}


# ------------------------------------------------------------------------------------------------ writes


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cannot_send(node: Node, scene: Scene, transport: str) -> None:
    async with online(node, scene.member) as (m,), online(node, scene.intruder, first=transport) as (x,):
        request = x.request(f.Send(group_id=scene.group_id, client_msg_id="x1", body={"text": "let me in"}))
        assert (await socket_error(request))[0] == "forbidden"
        assert await refused(node, scene.intruder, "POST", "/v1/messages", {
            "group_id": scene.group_id, "client_msg_id": "x2", "body": {"text": "let me in"}}) == (403, "forbidden")
        assert await rest(m, scene.conversation_id) == []
    await timeline_unchanged(node, scene)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cannot_recall_edit_or_delete(node: Node, scene: Scene, transport: str) -> None:
    cid, seq = scene.conversation_id, scene.authored
    async with online(node, scene.intruder, first=transport) as (x,):
        for frame in (f.Recall(conversation_id=cid, seq=seq, client_msg_id="r1"),
                      f.Edit(conversation_id=cid, seq=seq, text="rewritten", client_msg_id="e1"),
                      f.Delete(conversation_id=cid, seq=seq)):
            assert (await socket_error(x.request(frame)))[0] == "conversation_not_found"
        # Not even a "deleted" record of their own: only, for the removed, the notice of their removal.
        own = [m.body["system"]["event"] for m in await x.sync_all()]
        assert own == (["removed_from_group"] if scene.removed else [])
    c = f"/v1/conversations/{cid}/messages/{seq}"
    for method, path, body in [("POST", f"{c}/recall", {"client_msg_id": "r2"}),
                               ("POST", f"{c}/edit", {"client_msg_id": "e2", "text": "rewritten"}),
                               ("DELETE", c, None)]:
        assert await refused(node, scene.intruder, method, path, body) == (404, "conversation_not_found")
    await timeline_unchanged(node, scene)
    assert seqs_of(await search(node, scene.owner, "bravo")) == [seq]


async def test_cannot_change_the_group(node: Node, scene: Scene) -> None:
    g, intruder, member = f"/v1/groups/{scene.group_id}", scene.intruder.user_id, scene.member.user_id
    for method, path, body in [
        ("POST", f"{g}/members", {"user_ids": [intruder]}),  # adding oneself back
        ("DELETE", f"{g}/members/{member}", None),
        ("DELETE", f"{g}/members/{intruder}", None),
        ("POST", f"{g}/leave", None),
        ("PATCH", g, {"name": "mine now"}),
        ("PATCH", g, {"muted_all": True}),
        ("POST", f"{g}/members/{member}/role", {"role": "admin"}),
        ("POST", f"{g}/members/{member}/mute", {"muted": True}),
        ("POST", f"{g}/transfer", {"user_id": intruder}),
        ("DELETE", g, None),
    ]:
        assert await refused(node, scene.intruder, method, path, body) == (404, "group_not_found"), (method, path)
    await timeline_unchanged(node, scene)
    group = await ok(node, scene.owner, "GET", g)
    assert (group["name"], group["owner_id"], group["member_count"], group["muted_all"], group["dissolved"]) == (
        "team", scene.owner.user_id, 2, False, False)


# ------------------------------------------------------------------------------------------------ reads


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sync_returns_nothing_from_the_group(node: Node, scene: Scene, transport: str) -> None:
    cid = scene.conversation_id
    async with online(node, scene.intruder, first=transport) as (x,):
        for cursors in ({}, {cid: 0}, {cid: 1}, {cid: scene.last_seq - 1}):
            page = await x.sync(cursors)
            assert [m for m in page.msgs if m.conversation_id == cid] == [] and not page.more


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cannot_read_history(node: Node, scene: Scene, transport: str) -> None:
    cid = scene.conversation_id
    async with online(node, scene.intruder, first=transport) as (x,):
        for bounds in ({}, {"after": 0}, {"before": scene.last_seq + 1}, {"after": 1, "limit": 1}):
            assert (await socket_error(x.history(cid, **bounds)))[0] == "conversation_not_found"
    for params in ({}, {"after_seq": 0}, {"before_seq": 3}):
        assert await refused(node, scene.intruder, "GET", f"/v1/conversations/{cid}/messages", params=params) == (
            404, "conversation_not_found")


async def test_search_finds_nothing_from_the_group(node: Node, scene: Scene) -> None:
    for word in WORDS:
        assert await search(node, scene.intruder, word) == []
        assert await search(node, scene.intruder, word, conversation_id=scene.conversation_id) == []
    assert seqs_of(await search(node, scene.member, "alpha")) == [2]  # the words are there, for members


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cannot_read_or_write_receipts(node: Node, scene: Scene, transport: str) -> None:
    cid = scene.conversation_id
    before = await ok(node, scene.owner, "GET", f"/v1/conversations/{cid}/receipts")
    async with online(node, scene.intruder, first=transport) as (x,):
        assert (await socket_error(x.request(f.Read(conversation_id=cid, seq=scene.last_seq))))[0] == (
            "conversation_not_found")
        await x.ack_received(cid, scene.last_seq)  # recv has no answer: it must be ignored
        await x.ping()
    assert await refused(node, scene.intruder, "GET", f"/v1/conversations/{cid}/receipts") == (
        404, "conversation_not_found")
    assert await refused(node, scene.intruder, "POST", f"/v1/conversations/{cid}/read", {"seq": 1}) == (
        404, "conversation_not_found")
    after = await ok(node, scene.owner, "GET", f"/v1/conversations/{cid}/receipts")
    assert after == before
    assert {m["user_id"] for m in after["members"]} == {scene.owner.user_id, scene.member.user_id}


async def test_cannot_see_the_group_or_its_members(node: Node, scene: Scene) -> None:
    g = f"/v1/groups/{scene.group_id}"
    assert await refused(node, scene.intruder, "GET", g) == (404, "group_not_found")
    assert await refused(node, scene.intruder, "GET", f"{g}/members") == (404, "group_not_found")
    assert (await ok(node, scene.intruder, "GET", "/v1/groups"))["groups"] == []
    conversations = (await ok(node, scene.intruder, "GET", "/v1/conversations"))["conversations"]
    assert [c for c in conversations if c["conversation_id"] == scene.conversation_id] == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_typing_is_refused_and_reaches_no_one(node: Node, scene: Scene, transport: str) -> None:
    cid = scene.conversation_id
    async with online(node, scene.intruder, scene.member, scene.owner, first=transport) as (x, m, o):
        await x._wire.write(f.Typing(conversation_id=cid))  # typing has no id: the error comes without a ref
        error = await x.next_event(f.Error, timeout=5.0)
        assert (error.code, error.ref) == ("conversation_not_found", None)
        for conn in (m, o):
            assert await rest(conn, cid, f.Typing) == []
        await m._wire.write(f.Typing(conversation_id=cid))  # a member typing reaches the owner, not the intruder
        (typing,) = await frames(o, cid, 1, f.Typing)
        assert typing.user_id == scene.member.user_id
        assert await rest(x, cid, f.Typing) == []


# ------------------------------------------------------------------------------------------------ no leaks


def probes(group_id: int, conversation_id: str, user_id: int, seq: int) -> list[tuple[str, str, Any]]:
    g, c = f"/v1/groups/{group_id}", f"/v1/conversations/{conversation_id}"
    return [
        ("GET", g, None), ("GET", f"{g}/members", None), ("POST", f"{g}/members", {"user_ids": [user_id]}),
        ("PATCH", g, {"name": "x"}), ("PATCH", g, {"muted_all": True}), ("DELETE", g, None),
        ("POST", f"{g}/leave", None), ("POST", f"{g}/transfer", {"user_id": user_id}),
        ("POST", f"{g}/members/{user_id}/role", {"role": "admin"}),
        ("POST", f"{g}/members/{user_id}/mute", {"muted": True}), ("DELETE", f"{g}/members/{user_id}", None),
        ("POST", "/v1/messages", {"group_id": group_id, "client_msg_id": uuid.uuid4().hex, "body": {"text": "x"}}),
        ("GET", f"{c}/messages", None), ("GET", f"{c}/receipts", None), ("POST", f"{c}/read", {"seq": seq}),
        ("POST", f"{c}/messages/{seq}/recall", {"client_msg_id": uuid.uuid4().hex}),
        ("POST", f"{c}/messages/{seq}/edit", {"client_msg_id": uuid.uuid4().hex, "text": "x"}),
        ("DELETE", f"{c}/messages/{seq}", None),
    ]


async def raw(node: Node, who: Login, method: str, path: str, json: Any) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.request(
        method, node.url + path, json=json, headers={"Authorization": f"Bearer {who.token}"}
    ) as resp:
        return resp.status, await resp.read()


async def test_http_refusals_match_those_for_a_group_that_does_not_exist(node: Node, scene: Scene) -> None:
    real = probes(scene.group_id, scene.conversation_id, scene.member.user_id, scene.authored)
    missing = probes(scene.missing_group, scene.missing_conversation, scene.member.user_id, scene.authored)
    for (method, path, body), (_, other_path, other_body) in zip(real, missing, strict=True):
        answer = await raw(node, scene.intruder, method, path, body)
        assert answer[0] >= 400, (method, path, answer)
        assert answer == await raw(node, scene.intruder, method, other_path, other_body), (method, path)
    await timeline_unchanged(node, scene)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_socket_refusals_match_those_for_a_group_that_does_not_exist(node: Node, scene: Scene,
                                                                          transport: str) -> None:
    def requests(group_id: int, cid: str, seq: int) -> list[Any]:
        return [f.Send(group_id=group_id, client_msg_id=uuid.uuid4().hex, body={"text": "x"}),
                f.History(conversation_id=cid), f.Read(conversation_id=cid, seq=seq),
                f.Recall(conversation_id=cid, seq=seq, client_msg_id=uuid.uuid4().hex),
                f.Edit(conversation_id=cid, seq=seq, text="x", client_msg_id=uuid.uuid4().hex),
                f.Delete(conversation_id=cid, seq=seq)]

    async def typing_error(x: PicaConnection, cid: str) -> tuple[str, str]:
        await x._wire.write(f.Typing(conversation_id=cid))
        error = await x.next_event(f.Error, timeout=5.0)
        return error.code, error.message

    async with online(node, scene.intruder, first=transport) as (x,):
        real = requests(scene.group_id, scene.conversation_id, scene.authored)
        missing = requests(scene.missing_group, scene.missing_conversation, scene.authored)
        for one, other in zip(real, missing, strict=True):
            assert await socket_error(x.request(one)) == await socket_error(x.request(other)), type(one).__name__
        assert await typing_error(x, scene.conversation_id) == await typing_error(x, scene.missing_conversation)
    await timeline_unchanged(node, scene)


# ------------------------------------------------------------------------------------------------ forged fields


def raw_send(transport: str, frame: dict[str, Any]) -> bytes | str:
    if transport == "tcp":
        return frame_bytes(msgspec.msgpack.encode(frame))
    return msgspec.json.encode(frame).decode()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_client_supplied_sender_and_time_are_ignored(node: Node, transport: str) -> None:
    owner, bob = await users(node, 2)
    group = await create_group(node, owner, bob)
    gid, cid = group["group_id"], group["conversation_id"]
    started = int(time.time() * 1000)
    forged = {"sender": owner.user_id, "ts": 1}
    over_http = await http_send(node, bob, gid, "over http", client_msg_id="h1", **forged)
    x = await connect(node.url, bob, transport, node.tcp_port)
    async with x:
        await x.write_raw(raw_send(transport, {"t": "send", "id": 77, "group_id": gid, "client_msg_id": "s1",
                                               "body": {"text": "over the socket"}, **forged}))
        over_socket = await x.next_event(f.Sent)
        assert (over_socket.ref, over_socket.conversation_id, over_socket.duplicate) == (77, cid, False)
        # and in a 1:1 conversation
        await x.write_raw(raw_send(transport, {"t": "send", "id": 78, "to": owner.user_id, "client_msg_id": "s2",
                                               "body": {"text": "direct"}, **forged}))
        direct = await x.next_event(f.Sent)
    finished = int(time.time() * 1000)
    stored = {m["client_msg_id"]: m for m in await history(node, owner, cid)}
    stored.update({m["client_msg_id"]: m for m in await history(node, owner, direct.conversation_id)})
    for client_msg_id, ts in (("h1", over_http["ts"]), ("s1", over_socket.ts), ("s2", direct.ts)):
        message = stored[client_msg_id]
        assert (message["sender"], message["ts"]) == (bob.user_id, ts), client_msg_id
        assert started <= ts <= finished
    async with online(node, owner) as (o,):
        assert {(m.client_msg_id, m.sender) for m in await o.sync_all() if m.sender != owner.user_id} == {
            ("h1", bob.user_id), ("s1", bob.user_id), ("s2", bob.user_id)}


async def test_removed_member_keeps_no_live_feed(node: Node) -> None:
    """The removed member's open connection gets the notice of the removal and nothing after it, not even typing."""
    owner, bob, carol = await users(node, 3)
    async with online(node, owner, bob, carol) as (a, b, c):
        group = await create_group(node, owner, bob, carol)
        gid, cid = group["group_id"], group["conversation_id"]
        await frames(b, cid, 1)
        await ok(node, owner, "DELETE", f"/v1/groups/{gid}/members/{bob.user_id}")
        (notice,) = await frames(b, cid, 1)
        assert notice.body["system"]["event"] == "members_removed"
        await a._wire.write(f.Typing(conversation_id=cid))
        await http_send(node, owner, gid, "not for bob")
        await ok(node, owner, "PATCH", f"/v1/groups/{gid}", {"name": "bobless"})
        seen = await frames(c, cid, 5, (f.Msg, f.Typing))
        assert seqs_of([m for m in seen if isinstance(m, f.Msg)]) == [1, 2, 3, 4]  # created, removed, sent, renamed
        assert [t.user_id for t in seen if isinstance(t, f.Typing)] == [owner.user_id]
        assert await rest(b, cid) == []
        assert await rest(b, cid, f.Typing) == []
