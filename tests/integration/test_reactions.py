"""Reactions, replies, threads and mentions over real sockets and HTTP (docs/protocol.md section 28): each user on
two devices, live and by sync after a reconnect, and the refusals for people outside the conversation."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest

from pica.client import Login, PicaClient, PicaConnection
from pica.client.connection import RequestFailed
from pica.config import AnnotationsConfig
from pica.protocol import frames as f
from tests.conftest import Node, api, api_error, connect, make_config, new_user, running

WAIT = 5.0  # upper bound for any single server reaction; the tests finish far sooner


async def refused(request: Any) -> str:
    with pytest.raises(RequestFailed) as failed:
        await request
    return failed.value.code


def react(conn: PicaConnection, conversation_id: str, seq: int, emoji: str, *, remove: bool = False) -> Any:
    return conn.request(f.React(conversation_id=conversation_id, seq=seq, emoji=emoji, remove=remove,
                                client_msg_id=uuid.uuid4().hex))


async def next_in(conn: PicaConnection, conversation_id: str) -> f.Msg:
    while (msg := await conn.next_message(WAIT)).conversation_id != conversation_id:
        pass
    return msg


async def bodies(node: Node, who: Login, conversation_id: str) -> dict[int, dict[str, Any]]:
    page = await api(node, who, "GET", f"/v1/conversations/{conversation_id}/messages")
    return {m["seq"]: m["body"] for m in page["messages"]}


async def synced(node: Node, who: Login, device: str) -> dict[int, dict[str, Any]]:
    """What a device of ``who`` that was away gets when it connects again and syncs: {seq: body}."""
    async with await connect(node.url, who, "tcp", node.tcp_port, device=device) as back:
        return {m.seq: m.body for m in await back.sync_all()}


async def group_of(node: Node, owner: Login, *members: Login) -> str:
    group = await api(node, owner, "POST", "/v1/groups", json={"name": "team", "members": [m.user_id for m in members]})
    return str(group["conversation_id"])


async def test_a_reaction_reaches_every_device_and_a_device_that_was_away_syncs_it(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    phone, laptop = await connect(node.url, alice, device="phone"), await connect(node.url, alice, device="laptop")
    b_phone = await connect(node.url, bob, "tcp", node.tcp_port, device="phone")
    b_desk = await connect(node.url, bob, "ws-msgpack", device="desk")
    async with phone, laptop, b_phone, b_desk:
        sent = await phone.send(bob.user_id, {"text": "lunch at noon?"})
        conversation = sent.conversation_id
        assert (await next_in(b_phone, conversation)).seq == sent.seq
        ack = await react(b_phone, conversation, sent.seq, "👍")
        assert (ack.seq, ack.duplicate) == (sent.seq + 1, False)
        for conn in (phone, laptop):
            if conn is laptop:
                assert (await next_in(conn, conversation)).seq == sent.seq
            event = await next_in(conn, conversation)
            assert (event.seq, event.sender, event.body) == (
                ack.seq, bob.user_id, {"reaction": {"seq": sent.seq, "emoji": "👍", "add": True}})
        await laptop.close()  # alice's laptop is away for what follows

        await react(phone, conversation, sent.seq, "👍")
        await react(phone, conversation, sent.seq, "🍕")
        await react(b_phone, conversation, sent.seq, "👍", remove=True)
        seen = [(await next_in(b_desk, conversation)).body for _ in range(5)]  # bob's other device, live
        assert [b.get("reaction", {}).get("emoji") for b in seen] == [None, "👍", "👍", "🍕", "👍"]
        assert seen[-1]["reaction"]["add"] is False
        assert await refused(react(b_phone, conversation, sent.seq, "👍", remove=True)) == "conflict"
        assert await refused(react(b_phone, conversation, sent.seq, " ")) == "bad_request"
        assert await refused(react(b_phone, conversation, ack.seq, "🍕")) == "forbidden"  # an event

        expected = {"text": "lunch at noon?", "reactions": {"👍": [alice.user_id], "🍕": [alice.user_id]}}
        assert (await bodies(node, bob, conversation))[sent.seq] == expected
        away = await synced(node, alice, "laptop")
        assert away[sent.seq] == expected
        assert [away[s]["reaction"]["emoji"] for s in range(sent.seq + 1, sent.seq + 5)] == ["👍", "👍", "🍕", "👍"]
        listed = (await api(node, alice, "GET", "/v1/conversations"))["conversations"][0]
        assert listed["last_message"]["seq"] == sent.seq  # a reaction does not stand for the conversation

    http = await api(node, bob, "POST", f"/v1/conversations/{conversation}/messages/{sent.seq}/reactions",
                     json={"client_msg_id": "h1", "emoji": "🎉"})
    assert http["seq"] == sent.seq + 5


async def test_only_members_may_react_or_reply(node: Node) -> None:
    alice, bob, mallory = [await new_user(node.url, name) for name in ("alice", "bob", "mallory")]
    group = await group_of(node, alice, bob)
    a, m = await connect(node.url, alice), await connect(node.url, mallory)
    async with a, m:
        direct = await a.send(bob.user_id, {"text": "private"})
        in_group = await a.request(f.Send(group_id=int(group[2:]), client_msg_id="g1", body={"text": "team only"}))
        assert await refused(react(m, direct.conversation_id, direct.seq, "👀")) == "conversation_not_found"
        assert await refused(react(m, group, in_group.seq, "👀")) == "conversation_not_found"
        assert await refused(m.request(f.Send(group_id=int(group[2:]), client_msg_id="m1",
                                              body={"text": "re", "reply": {"seq": in_group.seq}}))) == "forbidden"
        # A reply in mallory's own 1:1 with alice cannot quote a message of alice's conversation with bob.
        assert await refused(m.send(alice.user_id, {"text": "re", "reply": {"seq": direct.seq}})) == \
            "message_not_found"
        assert await refused(m.request(f.Thread(conversation_id=group, root=in_group.seq))) == \
            "conversation_not_found"
    assert await api_error(node, mallory, "GET", f"/v1/conversations/{group}/threads") == (404,
                                                                                           "conversation_not_found")


async def test_a_reply_quotes_the_truth_keeps_it_through_an_edit_and_reads_recalled_after_a_recall(
        node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    phone, laptop = await connect(node.url, alice, device="phone"), await connect(node.url, alice, device="laptop")
    b = await connect(node.url, bob, "tcp", node.tcp_port)
    async with phone, laptop, b:
        original = await phone.send(bob.user_id, {"text": "the code is 4711"})
        conversation = original.conversation_id
        reply = await b.send(alice.user_id, {"text": "got it", "reply": {"seq": original.seq, "text": "forged"}})
        quote = {"seq": original.seq, "sender": alice.user_id, "kind": "text", "text": "the code is 4711"}
        for conn in (phone, laptop):
            while (msg := await next_in(conn, conversation)).seq != reply.seq:
                pass
            assert msg.body == {"text": "got it", "reply": quote}
        assert await refused(b.send(alice.user_id, {"text": "x", "reply": {"seq": 99}})) == "message_not_found"
        assert await refused(b.send(alice.user_id, {"text": "x", "reply": 1})) == "bad_request"

        await phone.request(f.Edit(conversation_id=conversation, seq=original.seq, text="the code is 0000",
                                   client_msg_id="e1"))
        assert (await bodies(node, bob, conversation))[reply.seq]["reply"] == quote  # a snapshot

        await phone.request(f.Recall(conversation_id=conversation, seq=original.seq, client_msg_id="c1"))
        recalled = {"text": "got it", "reply": {"seq": original.seq, "sender": alice.user_id, "recalled": True}}
        assert (await bodies(node, bob, conversation))[reply.seq] == recalled
        away = await synced(node, bob, "tablet")
        assert away[reply.seq] == recalled
        assert "4711" not in repr(away) and "0000" not in repr(away)


async def test_a_thread_under_a_group_message(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url, name) for name in ("alice", "bob", "carol")]
    group = await group_of(node, alice, bob, carol)
    group_id = int(group[2:])
    a_phone, a_laptop = await connect(node.url, alice, device="phone"), await connect(node.url, alice, device="lap")
    b, c = await connect(node.url, bob), await connect(node.url, carol, "tcp", node.tcp_port)
    async with a_phone, a_laptop, b, c:
        root = await a_phone.request(f.Send(group_id=group_id, client_msg_id="root", body={"text": "Q3 plan"}))
        first = await b.request(f.Send(group_id=group_id, client_msg_id="t1",
                                       body={"text": "more tests", "thread": {"root": root.seq}}))
        for conn in (a_phone, a_laptop):
            while (msg := await next_in(conn, group)).seq != first.seq:
                pass
            assert msg.body == {"text": "more tests", "thread": {"root": root.seq}}
        second = await c.request(f.Send(group_id=group_id, client_msg_id="t2",
                                        body={"text": "+1", "thread": {"root": root.seq}, "mentions": [alice.user_id]}))

        page = await a_laptop.request(f.Thread(conversation_id=group, root=root.seq, limit=1, id=None))
        assert isinstance(page, f.ThreadPage)
        assert ([m.seq for m in page.msgs], page.more) == ([first.seq], True)
        rest = await a_laptop.request(f.Thread(conversation_id=group, root=root.seq, after=first.seq))
        assert ([m.seq for m in rest.msgs], rest.more) == ([second.seq], False)

        threads = (await api(node, alice, "GET", f"/v1/conversations/{group}/threads"))["threads"]
        assert threads == [{"root": root.seq, "count": 2, "last_seq": second.seq, "read_seq": root.seq, "unread": 2}]
        await api(node, alice, "POST", f"/v1/conversations/{group}/threads/{root.seq}/read", json={"seq": second.seq})
        assert (await api(node, alice, "GET", f"/v1/conversations/{group}/threads"))["threads"][0]["unread"] == 0
        assert (await api(node, bob, "GET", f"/v1/conversations/{group}/threads"))["threads"][0]["unread"] == 1

        info = (await bodies(node, carol, group))[root.seq]["thread_info"]
        assert (info["count"], info["last_seq"]) == (2, second.seq)
        away = await synced(node, bob, "tablet")  # a device of bob's that was away catches up by sync
        assert away[root.seq]["thread_info"]["count"] == 2
        assert [away[s]["thread"] for s in (first.seq, second.seq)] == [{"root": root.seq}] * 2
        assert await refused(b.request(f.Send(group_id=group_id, client_msg_id="t3",
                                              body={"text": "x", "thread": {"root": first.seq}}))) == "bad_request"
        direct = await a_phone.send(bob.user_id, {"text": "1:1"})
        assert await refused(b.send(alice.user_id, {"text": "x", "thread": {"root": direct.seq}})) == "forbidden"


async def test_mentions_count_apart_and_at_all_is_for_admins_in_large_groups(tmp_path: Path) -> None:
    config = dataclasses.replace(make_config(tmp_path), annotations=AnnotationsConfig(mention_all_members=2))
    async with running(config) as node:
        alice, bob, carol = [await new_user(node.url, name) for name in ("alice", "bob", "carol")]
        group = await group_of(node, alice, bob, carol)
        group_id = int(group[2:])
        a, b = await connect(node.url, alice), await connect(node.url, bob)
        async with a, b:
            everyone = {"text": "@all standup", "mention_all": True}
            assert await refused(b.request(f.Send(group_id=group_id, client_msg_id="b1", body=everyone))) == \
                "forbidden"
            await a.request(f.Send(group_id=group_id, client_msg_id="a1", body=everyone))
            await a.request(f.Send(group_id=group_id, client_msg_id="a2", body={"text": "hi"}))
            await a.request(f.Send(group_id=group_id, client_msg_id="a3",
                                   body={"text": "@bob look", "mentions": [bob.user_id]}))

        def line(items: dict[str, Any]) -> tuple[int, int]:
            [c] = [c for c in items["conversations"] if c["conversation_id"] == group]
            return c["unread"], c["unread_mentions"]

        assert line(await api(node, bob, "GET", "/v1/conversations")) == (4, 2)  # with the "created" notice
        assert line(await api(node, carol, "GET", "/v1/conversations")) == (4, 1)
        assert line(await api(node, alice, "GET", "/v1/conversations")) == (0, 0)


async def test_the_sdk_reacts_replies_and_pages_a_thread(node: Node) -> None:
    alice_login, bob_login = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    group = await group_of(node, alice_login, bob_login)
    async with PicaClient(node.url, token=alice_login.token) as alice, \
            PicaClient(node.url, token=bob_login.token, transport="tcp", tcp_port=node.tcp_port) as bob:
        root = await alice.send_to(group, {"text": "release?"})
        reply = await bob.reply(group, root.seq, "after lunch")
        await bob.send_in_thread(group, root.seq, "in the thread", mentions=[alice_login.user_id])
        await alice.react(group, reply.seq, "✅")
        page = await bob.thread(group, root.seq)
        assert [m.body["text"] for m in page.msgs] == ["in the thread"]
        assert [t["unread"] for t in await alice.threads(group)] == [1]
        await alice.mark_thread_read(group, root.seq, page.msgs[-1].seq)
        assert [t["unread"] for t in await alice.threads(group)] == [0]
        read = (await alice.history(group)).msgs
        by_seq = {m.seq: m.body for m in read}
        assert by_seq[reply.seq]["reactions"] == {"✅": [alice_login.user_id]}
        assert by_seq[reply.seq]["reply"]["text"] == "release?"
