"""Message kinds, recall, edit and delete-for-me over real sockets and HTTP, live, on a second device, and by sync.

Recall and edit append an event message to the conversation (delivered like any message) and change how the original
reads; delete-for-me hides a message for one user only and notes it in that user's own timeline ``u:<id>``.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pica.client import Login, PicaConnection
from pica.client.connection import RequestFailed
from pica.protocol import frames as f
from tests.conftest import Node, api, api_error, connect, new_user, started, uploaded

WAIT = 5.0  # upper bound for any single server reaction; the tests finish far sooner


# ------------------------------------------------------------------------------------------------- helpers











async def refused(request: Any) -> str:
    """The error code a socket request fails with."""
    with pytest.raises(RequestFailed) as failed:
        await request
    return failed.value.code


def recall(conn: PicaConnection, conversation_id: str, seq: int, client_msg_id: str | None = None) -> Any:
    return conn.request(f.Recall(conversation_id=conversation_id, seq=seq,
                                 client_msg_id=client_msg_id or uuid.uuid4().hex))


def edit(conn: PicaConnection, conversation_id: str, seq: int, text: str) -> Any:
    return conn.request(f.Edit(conversation_id=conversation_id, seq=seq, text=text, client_msg_id=uuid.uuid4().hex))


async def delete(conn: PicaConnection, conversation_id: str, seq: int) -> None:
    assert isinstance(await conn.request(f.Delete(conversation_id=conversation_id, seq=seq)), f.Done)


def message_path(conversation_id: str, seq: int | str, action: str = "") -> str:
    return f"/v1/conversations/{conversation_id}/messages/{seq}" + (f"/{action}" if action else "")


async def bodies(node: Node, who: Login, conversation_id: str) -> dict[int, dict[str, Any]]:
    """{seq: body} of a whole conversation as ``who`` reads it over HTTP."""
    page = await api(node, who, "GET", f"/v1/conversations/{conversation_id}/messages")
    return {m["seq"]: m["body"] for m in page["messages"]}


async def synced_bodies(node: Node, who: Login) -> dict[tuple[str, int], dict[str, Any]]:
    """Everything a brand-new device of ``who`` gets by sync: {(conversation, seq): body}."""
    fresh = await connect(node.url, who, "tcp", node.tcp_port, device=f"new-{uuid.uuid4().hex[:6]}")
    async with fresh:
        return {(m.conversation_id, m.seq): m.body for m in await fresh.sync_all()}


async def next_in(conn: PicaConnection, conversation_id: str) -> f.Msg:
    """The next message handed out in ``conversation_id`` (messages of other conversations are skipped)."""
    while (msg := await conn.next_message(WAIT)).conversation_id != conversation_id:
        pass
    return msg


# ------------------------------------------------------------------------------------------------- message kinds

async def every_kind(node: Node, sender: Login) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Bodies of every kind as a client sends them, and as everyone reads them: a file or image reference is filled
    in with what the server found when it was uploaded."""
    report = await uploaded(node, sender, b"%PDF-1.4 numbers", "report.pdf")
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (9, 9, 9)).save(out, "PNG")
    cat = await uploaded(node, sender, out.getvalue(), "cat.png")
    sent: list[dict[str, Any]] = [
        {"text": "hi @bob", "mentions": [1]},
        {"file": {"id": report}, "text": "the report"},
        {"image": {"id": cat, "name": "ignored.gif", "size": 1}},
        {"custom": {"card": {"title": "poll", "options": ["a", "b"]}}, "type": "poll"},
        {"text": "with metadata", "reply_to": 1, "lang": "en"},
    ]
    read: list[dict[str, Any]] = [dict(body) for body in sent]
    read[1]["file"] = {"id": report, "name": "report.pdf", "mime": "application/pdf", "size": 16}
    read[2] = {"image": {"id": cat, "name": "cat.png", "mime": "image/png", "size": len(out.getvalue()),
                         "width": 64, "height": 48, "thumbnails": [96, 320, 800]}}
    return sent, read


@pytest.mark.parametrize("transport", ["ws", "ws-msgpack", "tcp"])
async def test_every_message_kind_round_trips(node: Node, transport: str) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    sent, read = await every_kind(node, alice)
    a = await connect(node.url, alice, transport, node.tcp_port)
    b = await connect(node.url, bob, transport, node.tcp_port)
    async with a, b:
        (conversation_id,) = {(await a.send(bob.user_id, body)).conversation_id for body in sent}
        received = [without_placeholder((await b.next_message(WAIT)).body) for _ in sent]
        assert received == read
        assert [without_placeholder(m.body) for m in (await b.history(conversation_id)).msgs] == read
        for bad in ({"text": "x", "custom": 1}, {"system": {"event": "x"}}, {"image": {"name": "i"}}):
            assert await refused(a.send(bob.user_id, bad)) == "bad_request"
    assert [without_placeholder(body) for body in (await bodies(node, bob, conversation_id)).values()] == read


def without_placeholder(body: dict[str, Any]) -> dict[str, Any]:
    """An image's blurhash is the server's to compute: checked for presence, then left out of the comparison."""
    if "image" not in body:
        return body
    image = dict(body["image"])
    assert isinstance(image.pop("placeholder"), str)
    return {**body, "image": image}


# ------------------------------------------------------------------------------------------------- recall


async def test_recall_reaches_the_peer_and_my_other_device_and_reads_as_recalled(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    phone, laptop = await connect(node.url, alice, device="phone"), await connect(node.url, alice, device="laptop")
    b = await connect(node.url, bob, "tcp", node.tcp_port)
    async with phone, laptop, b:
        sent = await phone.send(bob.user_id, {"text": "oops, wrong chat"})
        conversation_id = sent.conversation_id
        ack = await recall(phone, conversation_id, sent.seq, "recall-1")
        assert (ack.seq, ack.duplicate) == (2, False)
        for conn in (b, laptop):
            assert (await next_in(conn, conversation_id)).seq == 1
            event = await next_in(conn, conversation_id)
            assert (event.seq, event.sender, event.client_msg_id, event.body) == (
                2, alice.user_id, "recall-1", {"recall": {"seq": 1}})

        expected = {1: {"recalled": True}, 2: {"recall": {"seq": 1}}}
        assert await bodies(node, bob, conversation_id) == expected
        assert await bodies(node, alice, conversation_id) == expected
        assert await synced_bodies(node, bob) == {(conversation_id, s): body for s, body in expected.items()}

        again = await recall(phone, conversation_id, 1, "recall-1")  # a retry of the same request
        assert (again.seq, again.duplicate) == (2, True)
        assert await refused(recall(laptop, conversation_id, 1)) == "forbidden"  # recalled already
        assert await refused(recall(phone, conversation_id, 2)) == "forbidden"  # an event is not a message
    assert (await api(node, bob, "GET", f"/v1/conversations/{conversation_id}/messages"))["messages"][-1]["seq"] == 2


async def test_only_the_author_may_recall_and_http_recall_is_delivered_live(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url, p) for p in ("alice", "bob", "carol")]
    b = await connect(node.url, bob)
    async with b:
        sent = await api(node, alice, "POST", "/v1/messages",
                         json={"to": bob.user_id, "client_msg_id": "m1", "body": {"text": "mine"}})
        conversation_id = sent["conversation_id"]
        assert (await b.next_message(WAIT)).seq == 1
        path = message_path(conversation_id, 1, "recall")

        assert await api_error(node, bob, "POST", path, json={"client_msg_id": "r"}) == (403, "forbidden")
        assert await refused(recall(b, conversation_id, 1)) == "forbidden"
        assert await api_error(node, carol, "POST", path, json={"client_msg_id": "r"}) == (
            404, "conversation_not_found")
        assert await api_error(node, alice, "POST", message_path(conversation_id, 9, "recall"),
                               json={"client_msg_id": "r"}) == (404, "message_not_found")
        for bad_path, body in [(message_path(conversation_id, "abc", "recall"), {"client_msg_id": "r"}),
                               (path, {}), (path, {"client_msg_id": "~server-only"})]:
            assert await api_error(node, alice, "POST", bad_path, json=body) == (400, "bad_request")
        assert await bodies(node, bob, conversation_id) == {1: {"text": "mine"}}  # all of that changed nothing

        ack = await api(node, alice, "POST", path, json={"client_msg_id": "r"})
        assert (ack["seq"], ack["duplicate"]) == (2, False)
        event = await b.next_message(WAIT)
        assert (event.seq, event.body) == (2, {"recall": {"seq": 1}})
    assert (await bodies(node, bob, conversation_id))[1] == {"recalled": True}


async def test_recall_only_within_the_window(tmp_path: Path) -> None:
    async with started(tmp_path, recall_window=0.2) as node:
        alice, bob = await new_user(node.url), await new_user(node.url)
        a = await connect(node.url, alice)
        async with a:
            quick = await a.send(bob.user_id, {"text": "recalled at once"})
            assert (await recall(a, quick.conversation_id, quick.seq)).seq == 2
            late = await a.send(bob.user_id, {"text": "recalled too late"})
            await asyncio.sleep(0.3)
            assert await refused(recall(a, late.conversation_id, late.seq)) == "forbidden"
        assert await bodies(node, bob, late.conversation_id) == {
            1: {"recalled": True}, 2: {"recall": {"seq": 1}}, 3: {"text": "recalled too late"}}


# ------------------------------------------------------------------------------------------------- edit


async def test_edit_by_the_author_of_a_text_message(node: Node) -> None:
    alice, bob = await new_user(node.url, "alice"), await new_user(node.url, "bob")
    phone, laptop = await connect(node.url, alice, device="phone"), await connect(node.url, alice, device="laptop")
    b = await connect(node.url, bob)
    async with phone, laptop, b:
        text = await phone.send(bob.user_id, {"text": "helo wrld", "mentions": [bob.user_id]})
        conversation_id = text.conversation_id
        image = await phone.send(bob.user_id, {"image": {"id": await uploaded(node, alice, b"GIF89a", "a.gif")}})

        ack = await edit(phone, conversation_id, text.seq, "hello world")
        assert ack.seq == 3
        for conn in (b, laptop):
            await next_in(conn, conversation_id)
            await next_in(conn, conversation_id)
            event = await next_in(conn, conversation_id)
            assert (event.seq, event.sender, event.body) == (3, alice.user_id,
                                                             {"edit": {"seq": 1, "text": "hello world"}})
        original = (await bodies(node, bob, conversation_id))[1]
        assert original == {"text": "hello world", "mentions": [bob.user_id], "edited": original["edited"]}
        assert original["edited"] >= text.ts

        assert await refused(edit(b, conversation_id, text.seq, "not yours")) == "forbidden"
        assert await refused(edit(phone, conversation_id, image.seq, "an image has no text")) == "bad_request"
        assert await refused(edit(phone, conversation_id, ack.seq, "an event")) == "forbidden"
        assert await refused(edit(phone, conversation_id, text.seq, "   ")) == "bad_request"

        over_http = await api(node, alice, "POST", message_path(conversation_id, 1, "edit"),
                              json={"client_msg_id": "e2", "text": "hello, world"})
        assert over_http["seq"] == 4
        assert (await next_in(b, conversation_id)).body == {"edit": {"seq": 1, "text": "hello, world"}}
        await recall(phone, conversation_id, text.seq)
        assert await refused(edit(phone, conversation_id, text.seq, "too late")) == "forbidden"

    synced = await synced_bodies(node, bob)
    assert [synced[(conversation_id, s)] for s in (1, 3, 4)] == [  # the recall took the edits' text too
        {"recalled": True}, {"edit": {"seq": 1, "recalled": True}}, {"edit": {"seq": 1, "recalled": True}}]


async def test_offline_peer_catches_up_on_edits_and_recalls_by_sync(node: Node) -> None:
    alice, bob = await new_user(node.url), await new_user(node.url)
    a = await connect(node.url, alice)
    async with a:
        first = await a.send(bob.user_id, {"text": "draft"})
        second = await a.send(bob.user_id, {"text": "never mind"})
        await edit(a, first.conversation_id, first.seq, "final")
        await recall(a, second.conversation_id, second.seq)
    b = await connect(node.url, bob)
    async with b:
        got = await b.sync_all()
    assert [(m.seq, m.body) for m in got] == [
        (1, {"text": "final", "edited": got[0].body["edited"]}),
        (2, {"recalled": True}),
        (3, {"edit": {"seq": 1, "text": "final"}}),
        (4, {"recall": {"seq": 2}}),
    ]


# ------------------------------------------------------------------------------------------------- delete for me


async def test_delete_for_me_hides_a_message_on_all_my_devices_only(node: Node) -> None:
    alice, bob, carol = [await new_user(node.url, p) for p in ("alice", "bob", "carol")]
    own = f"u:{alice.user_id}"
    phone, laptop = await connect(node.url, alice, device="phone"), await connect(node.url, alice, device="laptop")
    b = await connect(node.url, bob)
    async with phone, laptop, b:
        conversation_id = (await b.send(alice.user_id, {"text": "one"})).conversation_id
        await b.send(alice.user_id, {"text": "two"})

        await delete(phone, conversation_id, 1)
        notice = await next_in(laptop, own)
        assert (notice.seq, notice.sender, notice.body) == (
            1, alice.user_id, {"system": {"event": "deleted", "conversation_id": conversation_id, "seq": 1}})
        assert notice.client_msg_id.startswith("~")
        assert await bodies(node, alice, conversation_id) == {1: {"deleted": True}, 2: {"text": "two"}}
        assert await bodies(node, bob, conversation_id) == {1: {"text": "one"}, 2: {"text": "two"}}

        assert await api(node, alice, "DELETE", message_path(conversation_id, 2)) == {"ok": True}
        assert (await next_in(laptop, own)).seq == 2
        # the phone missed notice 1 (it asked for it); notice 2 shows the gap, and sync fills it
        assert [(await next_in(phone, own)).seq for _ in range(2)] == [1, 2]

        await delete(laptop, conversation_id, 1)  # again: nothing new
        assert await refused(delete(laptop, conversation_id, 3)) == "message_not_found"
        assert await api_error(node, carol, "DELETE", message_path(conversation_id, 1)) == (
            404, "conversation_not_found")
        assert await api_error(node, alice, "DELETE", message_path(conversation_id, 0)) == (400, "bad_request")

    synced = await synced_bodies(node, alice)
    assert synced == {
        (conversation_id, 1): {"deleted": True},
        (conversation_id, 2): {"deleted": True},
        (own, 1): {"system": {"event": "deleted", "conversation_id": conversation_id, "seq": 1}},
        (own, 2): {"system": {"event": "deleted", "conversation_id": conversation_id, "seq": 2}},
    }
    assert await synced_bodies(node, bob) == {(conversation_id, 1): {"text": "one"},
                                             (conversation_id, 2): {"text": "two"}}
    listed = (await api(node, alice, "GET", "/v1/conversations"))["conversations"]
    assert [(c["conversation_id"], c["last_message"]) for c in listed] == [
        (conversation_id, None)]  # both deleted for alice: nothing left to stand for the conversation
