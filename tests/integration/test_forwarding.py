"""Forwarding, pins, drafts and per-conversation settings over real sockets and HTTP (docs/protocol.md section 29):
each user with two devices, live and by sync after reconnecting; and the refusals (a conversation the caller is not
in, a group where they are not an admin, what cannot be forwarded, a destination they may not send to)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pica.client import Login, PicaConnection, PicaHttp
from pica.config import ConversationsConfig
from pica.protocol import frames as f
from pica.protocol.ids import direct_conversation_id
from tests.conftest import Node, api, api_error, connect, make_config, new_user, running, uploaded
from tests.integration.test_groups import create_group, frames, history, http_send, ok, rest

WAIT = 5.0


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = dataclasses.replace(make_config(tmp_path),
                                 conversations=ConversationsConfig(max_pins=3, max_forward_copies=6))
    async with running(config) as started:
        yield started


async def devices(node: Node, who: Login) -> tuple[PicaConnection, PicaConnection]:
    """Two devices of one user, one on each transport."""
    return (await connect(node.url, who, "ws", device=f"phone-{uuid.uuid4().hex[:4]}"),
            await connect(node.url, who, "tcp", node.tcp_port, device=f"laptop-{uuid.uuid4().hex[:4]}"))


async def say(node: Node, who: Login, to: int, body: dict[str, Any]) -> dict[str, Any]:
    sent: dict[str, Any] = await api(node, who, "POST", "/v1/messages",
                                     json={"to": to, "client_msg_id": uuid.uuid4().hex, "body": body})
    return sent


async def forward(node: Node, who: Login, conversation_id: str, seqs: list[int], *, to: list[int] | None = None,
                  group_ids: list[int] | None = None, client_msg_id: str | None = None) -> list[dict[str, Any]]:
    answer = await api(node, who, "POST", "/v1/forward", json={
        "conversation_id": conversation_id, "seqs": seqs, "to": to or [], "group_ids": group_ids or [],
        "client_msg_id": client_msg_id or uuid.uuid4().hex})
    copies: list[dict[str, Any]] = answer["copies"]
    return copies


async def state_frame(conn: PicaConnection, conversation_id: str) -> f.ConversationState:
    (frame,) = await frames(conn, conversation_id, 1, f.ConversationState)
    assert isinstance(frame, f.ConversationState)
    return frame


async def listed(node: Node, who: Login, conversation_id: str) -> dict[str, Any]:
    page = await api(node, who, "GET", "/v1/conversations")
    (found,) = [c for c in page["conversations"] if c["conversation_id"] == conversation_id]
    return dict(found)


# ------------------------------------------------------------------------------------------------- forwarding


async def test_forwarded_copies_reach_users_and_groups_name_the_author_and_reference_the_same_file(
        node: Node) -> None:
    alice, bob, carol, dave = [await new_user(node.url, n) for n in ("alice", "bob", "carol", "dave")]
    file_id = await uploaded(node, bob, b"%PDF-1.4 minutes", "minutes.pdf")
    await say(node, bob, alice.user_id, {"text": "the minutes", "mentions": [alice.user_id], "reply_to": 1})
    first = await say(node, bob, alice.user_id, {"file": {"id": file_id}, "text": "here"})
    source = first["conversation_id"]
    group = await create_group(node, alice, dave)
    phone, laptop = await devices(node, alice)
    carol_phone = await connect(node.url, carol, "ws")
    async with phone, laptop, carol_phone:
        forward_id = uuid.uuid4().hex
        copies = await forward(node, alice, source, [2, 1], to=[carol.user_id], group_ids=[group["group_id"]],
                               client_msg_id=forward_id)
        # Destination by destination, each by seq; each copy acked after its commit, under its own key.
        assert [(c.get("to"), c.get("group_id"), c["source_seq"]) for c in copies] == [
            (carol.user_id, None, 1), (carol.user_id, None, 2), (None, group["group_id"], 1),
            (None, group["group_id"], 2)]
        assert [c["client_msg_id"] for c in copies] == [f"{forward_id}/{n}" for n in range(4)]
        assert all(c["ack"]["duplicate"] is False for c in copies)
        to_carol = direct_conversation_id(alice.user_id, carol.user_id)
        got = await frames(carol_phone, to_carol, 2)
        bob_said = await history(node, alice, source)
        assert [m.body for m in got] == [
            {"text": "the minutes", "forwarded": {"sender": bob.user_id, "ts": bob_said[0]["ts"]}},
            {**bob_said[1]["body"], "forwarded": {"sender": bob.user_id, "ts": bob_said[1]["ts"]}}]
        assert got[1].body["file"]["id"] == file_id  # the same file, not a copy of it
        assert [m.sender for m in got] == [alice.user_id, alice.user_id]
        for device in (phone, laptop):  # both of the forwarder's devices see what was sent
            assert len(await frames(device, to_carol, 2)) == 2
            assert len(await frames(device, group["conversation_id"], 2)) == 2
        # Carol reads the file through the copy: the reference was written as for any send.
        async with PicaHttp(node.url, token=carol.token) as http:
            assert await http.download(file_id) == b"%PDF-1.4 minutes"

        # A retry of the whole forward (its answer lost) stores nothing new and is answered with the same acks.
        again = await forward(node, alice, source, [1, 2], to=[carol.user_id], group_ids=[group["group_id"]],
                              client_msg_id=forward_id)
        assert [c["ack"]["seq"] for c in again] == [c["ack"]["seq"] for c in copies]
        assert all(c["ack"]["duplicate"] for c in again)
    # Dave's new device finds the copies in the group by sync.
    fresh = await connect(node.url, dave, "tcp", node.tcp_port, device="new")
    async with fresh:
        synced = [m for m in await fresh.sync_all() if m.conversation_id == group["conversation_id"]]
        assert [m.body.get("forwarded") for m in synced][-2:] == [
            {"sender": bob.user_id, "ts": bob_said[0]["ts"]}, {"sender": bob.user_id, "ts": bob_said[1]["ts"]}]


async def test_a_copy_of_a_copy_names_the_first_author_and_clients_cannot_forge_the_mark(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url, n) for n in ("alice", "bob", "carol")]
    said = await say(node, alice, bob.user_id, {"text": "original"})
    (copy,) = await forward(node, bob, said["conversation_id"], [said["seq"]], to=[carol.user_id])
    (again,) = await forward(node, carol, copy["ack"]["conversation_id"], [copy["ack"]["seq"]], to=[bob.user_id])
    (read,) = [m for m in await history(node, bob, again["ack"]["conversation_id"]) if m["seq"] == again["ack"]["seq"]]
    assert read["body"] == {"text": "original", "forwarded": {"sender": alice.user_id, "ts": said["ts"]}}
    assert await api_error(node, alice, "POST", "/v1/messages", json={
        "to": bob.user_id, "client_msg_id": "forged",
        "body": {"text": "trust me", "forwarded": {"sender": carol.user_id, "ts": 1}}}) == (400, "bad_request")


async def test_forward_refusals(node: Node) -> None:
    alice, bob, carol, mallory = [await new_user(node.url, n) for n in ("alice", "bob", "carol", "mallory")]
    said = await say(node, alice, bob.user_id, {"text": "one"})
    source = said["conversation_id"]
    group = await create_group(node, carol, bob)
    # From a conversation the caller is not in: as if it did not exist.
    assert await api_error(node, mallory, "POST", "/v1/forward", json={
        "conversation_id": source, "seqs": [1], "to": [mallory.user_id], "client_msg_id": "x"}) == (
        404, "conversation_not_found")
    # From a group the caller is not in, and its creation notice, which no one may forward.
    assert await api_error(node, alice, "POST", "/v1/forward", json={
        "conversation_id": group["conversation_id"], "seqs": [1], "to": [bob.user_id], "client_msg_id": "y"}) == (
        404, "conversation_not_found")
    assert await api_error(node, bob, "POST", "/v1/forward", json={
        "conversation_id": group["conversation_id"], "seqs": [1], "to": [alice.user_id], "client_msg_id": "z"}) == (
        403, "forbidden")
    assert await api_error(node, bob, "POST", "/v1/forward", json={
        "conversation_id": source, "seqs": [9], "to": [carol.user_id], "client_msg_id": "w"}) == (
        404, "message_not_found")
    # A recalled message, and one the caller deleted for themself.
    await ok(node, alice, "POST", f"/v1/conversations/{source}/messages/1/recall", {"client_msg_id": "r1"})
    assert await api_error(node, bob, "POST", "/v1/forward", json={
        "conversation_id": source, "seqs": [1], "to": [carol.user_id], "client_msg_id": "v"}) == (403, "forbidden")
    kept = await say(node, alice, bob.user_id, {"text": "two"})
    await ok(node, bob, "DELETE", f"/v1/conversations/{source}/messages/{kept['seq']}")
    assert await api_error(node, bob, "POST", "/v1/forward", json={
        "conversation_id": source, "seqs": [kept["seq"]], "to": [carol.user_id], "client_msg_id": "u"}) == (
        403, "forbidden")
    # Too many copies at once (max_forward_copies = 6 here), none sent.
    assert await api_error(node, alice, "POST", "/v1/forward", json={
        "conversation_id": source, "seqs": [kept["seq"]], "to": [1, 2, 3, 4, 5, 6, 7], "client_msg_id": "t"}) == (
        400, "bad_request")
    # Every send rule applies per copy: Mallory blocked Alice, and Alice is not in Carol's group; the copy to Carol
    # goes through all the same.
    await ok(node, mallory, "PUT", f"/v1/blocks/{alice.user_id}")
    copies = await forward(node, alice, source, [kept["seq"]], to=[mallory.user_id, carol.user_id],
                           group_ids=[group["group_id"]])
    assert [c.get("error", {}).get("code") for c in copies] == ["forbidden", None, "forbidden"]
    assert copies[1]["ack"]["conversation_id"] == direct_conversation_id(alice.user_id, carol.user_id)
    assert [m["body"]["text"] for m in await history(node, carol, copies[1]["ack"]["conversation_id"])] == ["two"]


# ------------------------------------------------------------------------------------------------- pins


async def test_pins_in_a_direct_conversation_reach_both_devices_live_and_by_sync(node: Node) -> None:
    alice, bob = [await new_user(node.url, n) for n in ("alice", "bob")]
    said = await say(node, alice, bob.user_id, {"text": "the address is 12 Elm St"})
    conversation = said["conversation_id"]
    phone, laptop = await devices(node, bob)
    async with phone, laptop:
        change = await api(node, alice, "PUT", f"/v1/conversations/{conversation}/pins/{said['seq']}")
        assert change["pinned"] is True
        assert change["notice"]["body"] == {"system": {"event": "pinned", "seq": said["seq"], "by": alice.user_id}}
        for device in (phone, laptop):
            (notice,) = await frames(device, conversation, 1)
            assert notice.body == change["notice"]["body"] and notice.seq == change["notice"]["seq"]
        # Pinning it again changes nothing and appends nothing.
        assert (await api(node, bob, "PUT", f"/v1/conversations/{conversation}/pins/{said['seq']}"))["notice"] is None
        assert await rest(phone, conversation) == []
        pins = (await api(node, bob, "GET", f"/v1/conversations/{conversation}/pins"))["pins"]
        assert [(p["message"]["body"]["text"], p["pinned_by"]) for p in pins] == [
            ("the address is 12 Elm St", alice.user_id)]
    # Bob, reconnecting, gets the unpin made meanwhile by sync.
    unpinned = await api(node, alice, "DELETE", f"/v1/conversations/{conversation}/pins/{said['seq']}")
    fresh = await connect(node.url, bob, "tcp", node.tcp_port, device="back")
    async with fresh:
        synced = [m for m in await fresh.sync_all() if m.conversation_id == conversation]
        assert [m.body.get("system", {}).get("event") for m in synced] == [None, "pinned", "unpinned"]
        assert synced[-1].seq == unpinned["notice"]["seq"]
    assert (await api(node, bob, "GET", f"/v1/conversations/{conversation}/pins"))["pins"] == []


async def test_in_a_group_only_admins_pin_and_the_number_of_pins_is_limited(node: Node) -> None:
    owner, member, outsider = [await new_user(node.url, n) for n in ("owner", "member", "outsider")]
    group = await create_group(node, owner, member)
    gid, conversation = group["group_id"], group["conversation_id"]
    seqs = [(await http_send(node, member, gid, f"note {n}"))["seq"] for n in range(4)]
    path = f"/v1/conversations/{conversation}/pins"
    assert await api_error(node, member, "PUT", f"{path}/{seqs[0]}") == (403, "forbidden")
    assert await api_error(node, outsider, "PUT", f"{path}/{seqs[0]}") == (404, "conversation_not_found")
    assert await api_error(node, outsider, "GET", path) == (404, "conversation_not_found")
    await ok(node, owner, "POST", f"/v1/groups/{gid}/members/{member.user_id}/role", {"role": "admin"})
    phone = await connect(node.url, owner, "ws")
    async with phone:
        for seq in seqs[:3]:
            await api(node, member, "PUT", f"{path}/{seq}")
        notices = await frames(phone, conversation, 3)
        assert [n.body["system"]["seq"] for n in notices] == seqs[:3]
    assert await api_error(node, member, "PUT", f"{path}/{seqs[3]}") == (409, "too_many_pins")
    assert [p["message"]["seq"] for p in (await api(node, owner, "GET", path))["pins"]] == seqs[2::-1]


# ------------------------------------------------------------------------------------------------- drafts, settings


async def test_a_draft_follows_its_user_to_their_other_devices(node: Node) -> None:
    alice, bob, mallory = [await new_user(node.url, n) for n in ("alice", "bob", "mallory")]
    said = await say(node, bob, alice.user_id, {"text": "lunch?"})
    conversation = said["conversation_id"]
    phone, laptop = await devices(node, alice)
    async with phone, laptop:
        saved = await api(node, alice, "PUT", f"/v1/conversations/{conversation}/draft", json={"text": "sure, at 1"})
        assert saved["draft"] == "sure, at 1"
        for device in (phone, laptop):
            frame = await state_frame(device, conversation)
            assert (frame.draft, frame.draft_ts) == ("sure, at 1", saved["draft_ts"])
        assert (await listed(node, alice, conversation))["settings"]["draft"] == "sure, at 1"
        assert "settings" not in await listed(node, bob, conversation)  # a draft is its writer's alone
    # A device that was away finds it in the conversation list, then sees it cleared live.
    fresh = await connect(node.url, alice, "tcp", node.tcp_port, device="tablet")
    async with fresh:
        assert (await listed(node, alice, conversation))["settings"]["draft"] == "sure, at 1"
        await api(node, alice, "DELETE", f"/v1/conversations/{conversation}/draft")
        assert (await state_frame(fresh, conversation)).draft == ""
    assert await api_error(node, alice, "PUT", f"/v1/conversations/{conversation}/draft",
                           json={"text": "x" * 4001}) == (400, "bad_request")
    assert await api_error(node, mallory, "PUT", f"/v1/conversations/{conversation}/draft",
                           json={"text": "hi"}) == (404, "conversation_not_found")


async def test_list_settings_pin_archive_mark_unread_and_mute_reach_every_device(node: Node) -> None:
    alice, bob = [await new_user(node.url, n) for n in ("alice", "bob")]
    conversation = (await say(node, bob, alice.user_id, {"text": "ping"}))["conversation_id"]
    path = f"/v1/conversations/{conversation}/settings"
    phone, laptop = await devices(node, alice)
    async with phone, laptop:
        changed = await api(node, alice, "PATCH", path, json={"pinned": True, "archived": True,
                                                               "marked_unread": True, "muted_until": 2**42})
        assert changed["pinned_at"] > 0 and changed["archived"] and changed["marked_unread"]
        assert changed["muted_until"] == 2**42 and changed["level"] == "all"
        frame = await state_frame(laptop, conversation)
        assert (frame.pinned_at, frame.archived, frame.marked_unread, frame.muted_until) == (
            changed["pinned_at"], True, True, 2**42)
        await state_frame(phone, conversation)
        # Only what is named changes; a mute until a time already past unmutes.
        after = await api(node, alice, "PATCH", path, json={"marked_unread": False, "muted_until": 1})
        assert (after["pinned_at"], after["archived"], after["marked_unread"], after["muted_until"]) == (
            changed["pinned_at"], True, False, None)
        for device in (phone, laptop):
            assert (await state_frame(device, conversation)).muted_until is None
        # The notification route's mute shows in the list and reaches the devices the same way.
        await api(node, alice, "PUT", f"/v1/conversations/{conversation}/notifications",
                  json={"level": "mentions", "mute_until": 5})
        assert (await state_frame(laptop, conversation)).level == "mentions"
    settings = (await listed(node, alice, conversation))["settings"]
    assert (settings["archived"], settings["muted_until"], settings["level"]) == (True, 5, "mentions")
    assert await api_error(node, alice, "PATCH", path, json={"archived": "yes"}) == (400, "bad_request")
    assert await api_error(node, alice, "PUT", f"/v1/conversations/{conversation}/draft",
                           json={"text": ""}) == (400, "bad_request")
    assert await api_error(node, bob, "PATCH", "/v1/conversations/d:1:999999/settings",
                           json={"archived": True}) == (404, "conversation_not_found")


async def test_draft_saves_are_rate_limited(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), conversations=ConversationsConfig(drafts_per_user="2/min"))
    async with running(config) as node:
        alice, bob = [await new_user(node.url, n) for n in ("alice", "bob")]
        conversation = (await say(node, bob, alice.user_id, {"text": "hi"}))["conversation_id"]
        for text in ("h", "he"):
            await api(node, alice, "PUT", f"/v1/conversations/{conversation}/draft", json={"text": text})
        assert await api_error(node, alice, "PUT", f"/v1/conversations/{conversation}/draft",
                               json={"text": "hel"}) == (429, "rate_limited")
